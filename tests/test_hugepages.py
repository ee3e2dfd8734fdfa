"""The decoding step's weights are moved into memory advised for 2 MiB pages (engine.core.hugepages)."""

import re

import pytest
import torch

from engine import load_model
from engine.core import hugepages, native

pytestmark = pytest.mark.skipif(not (hugepages.supported() and native.available()),
                                reason="Linux with the compiled step only")


def _flags_of(address: int) -> set[str]:
    """The VmFlags of the mapping of this process that holds `address`."""
    inside = False
    for line in open("/proc/self/smaps"):
        span = re.match(r"^([0-9a-f]+)-([0-9a-f]+) ", line)
        if span:
            inside = int(span.group(1), 16) <= address < int(span.group(2), 16)
        elif inside and line.startswith("VmFlags:"):
            return set(line.split()[1:])
    raise AssertionError(f"no mapping holds {address:#x}")


@pytest.mark.parametrize("mode", ["float32", "int8", "int4"])
def test_the_big_matrices_sit_in_huge_page_memory_and_the_tied_head_stays_shared(mode):
    loaded = load_model(None, device="cpu", precision=mode)
    model = loaded.model
    if mode == "float32":
        head, block = model.wte.weight, model.h[0].mlp.c_fc.weight
    else:
        head, block = model.head.qweight, model.h[0].mlp.c_fc.qweight
        assert model.wte.weight.data_ptr() == head.data_ptr()  # one copy serves both
    for tensor in (head, block):
        assert "hg" in _flags_of(tensor.data_ptr()), mode  # MADV_HUGEPAGE
    # Nothing is left mapped from this model's files: a mapping lives as long as any tensor from it.
    files = [str(loaded.prepared_path or ""), str(loaded.folder.resolve())]
    mapped = [line for line in open("/proc/self/maps") if any(f and f in line for f in files)]
    assert not mapped, mapped


def test_a_model_without_big_matrices_is_left_alone():
    model = torch.nn.Linear(4, 4)
    before = model.weight.data_ptr()
    assert hugepages.move_to_huge_pages(model) == 0
    assert model.weight.data_ptr() == before
