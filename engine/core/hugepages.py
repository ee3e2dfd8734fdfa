"""The decoding step's weights in 2 MiB pages, where Linux gives them on request.

Decoding one token on the CPU streams every weight matrix from memory once. With ordinary 4 KiB
pages a thread crosses a page, and misses the TLB, every 4 KiB; on this project's 2-core test machine
one thread streams 22 GB/s from 4 KiB pages and 32 GB/s from 2 MiB ones. Linux backs anonymous memory
with 2 MiB pages ("transparent huge pages") where /sys/kernel/mm/transparent_hugepage/enabled is
`always`, or `madvise` (the usual default) for memory advised MADV_HUGEPAGE; a memory-mapped file never
gets them. So after loading, the big matrices (memory-mapped from a prepared copy, or copied into row
layout) are copied into one private anonymous mapping advised so, one matrix at a time, each original
freed as its copy is made. Elsewhere (not Linux, or the mapping refused) the model is left as it is.
"""

from __future__ import annotations

import ctypes
import mmap
import sys
from pathlib import Path

import torch
from torch import nn

PAGE = 2 << 20  # bytes in a huge page (x86-64)
MIN_BYTES = 1 << 16  # smaller tensors (biases, layer norms) are only copied out of their files
ATTRIBUTES = ("qweight", "scale", "weight", "weight_t")  # where engine.core.forms and nn modules keep matrices


def supported() -> bool:
    """Linux, with transparent huge pages not switched off (a copy would then buy nothing)."""
    if not (sys.platform.startswith("linux") and hasattr(mmap, "MADV_HUGEPAGE")):
        return False
    try:
        return "[never]" not in Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return False


def huge_bytes(n: int) -> torch.Tensor | None:
    """n bytes (uint8) of private anonymous memory advised MADV_HUGEPAGE, starting on a 2 MiB boundary; None
    where unsupported. The memory lives as long as a view of it does."""
    if not supported():
        return None
    try:
        area = mmap.mmap(-1, n + PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                         prot=mmap.PROT_READ | mmap.PROT_WRITE)
        area.madvise(mmap.MADV_HUGEPAGE)
    except (OSError, ValueError):
        return None
    start = -ctypes.addressof(ctypes.c_char.from_buffer(area)) % PAGE  # the first 2 MiB boundary
    return torch.frombuffer(area, dtype=torch.uint8)[start : start + n]  # holds `area` while it lives


def _matrices(model: nn.Module) -> list[tuple[nn.Module, str, torch.Tensor]]:
    found = []
    for module in model.modules():
        for name in ATTRIBUTES:
            tensor = module._parameters.get(name, module._buffers.get(name, module.__dict__.get(name)))
            if isinstance(tensor, torch.Tensor) and tensor.device.type == "cpu" and tensor.is_contiguous() \
                    and tensor.numel() * tensor.element_size() >= MIN_BYTES:
                found.append((module, name, tensor))
    return found


def _replace(module: nn.Module, name: str, copy: torch.Tensor) -> None:
    if name in module._parameters:
        module._parameters[name] = nn.Parameter(copy, requires_grad=module._parameters[name].requires_grad)
    elif name in module._buffers:
        module._buffers[name] = copy
    else:
        setattr(module, name, copy)


def move_to_huge_pages(model: nn.Module) -> int:
    """Copies the model's big CPU matrices into memory advised MADV_HUGEPAGE (a tensor shared by two modules,
    as a tied embedding and head, stays shared). Returns the bytes moved; 0 where unsupported."""
    if not supported():
        return 0
    users: dict[int, list[tuple[nn.Module, str]]] = {}
    sizes: dict[int, int] = {}
    for module, name, tensor in _matrices(model):
        users.setdefault(id(tensor), []).append((module, name))
        sizes[id(tensor)] = -(-tensor.numel() * tensor.element_size() // 64) * 64
    total = sum(sizes.values())
    if total == 0:
        return 0
    memory = huge_bytes(total)
    if memory is None:
        return 0
    offset = 0
    mapped, madvise = _file_mappings(), ctypes.CDLL(None, use_errno=True).madvise
    for key, places in users.items():
        module, name = places[0]
        original = getattr(module, name)
        copy = memory[offset : offset + sizes[key]][: original.numel() * original.element_size()]
        copy = copy.view(original.dtype).view(original.shape)
        copy.copy_(original)
        offset += sizes[key]
        _drop_file_pages(original, mapped, madvise)
        del original
        for module, name in places:  # every user, so that the original is freed now, not at the end
            _replace(module, name, copy)
    _own_the_rest(model, memory)
    return total


def _file_mappings() -> list[tuple[int, int]]:
    """The address ranges of this process mapped from files (a prepared copy, a checkpoint)."""
    ranges = []
    try:
        for line in Path("/proc/self/maps").read_text().splitlines():
            fields = line.split()
            if len(fields) >= 6 and fields[5].startswith("/") and fields[4] != "0":
                start, end = (int(a, 16) for a in fields[0].split("-"))
                ranges.append((start, end))
    except OSError:
        pass
    return ranges


def _drop_file_pages(tensor: torch.Tensor, mapped: list[tuple[int, int]], madvise) -> None:
    """Once a tensor read from a file mapping is copied, its pages leave this process's resident memory
    (MADV_DONTNEED; the file's pages stay in the page cache): the mapping itself lives until its last tensor
    goes, and without this a model would briefly take twice its size."""
    start, end = tensor.data_ptr(), tensor.data_ptr() + tensor.numel() * tensor.element_size()
    if not any(a <= start and end <= b for a, b in mapped):
        return
    first, last = -(-start // 4096) * 4096, end // 4096 * 4096  # whole pages inside the tensor only
    if last > first:
        madvise(ctypes.c_void_p(first), ctypes.c_size_t(last - first), mmap.MADV_DONTNEED)


def _own_the_rest(model: nn.Module, memory: torch.Tensor) -> None:
    """Copies the model's small tensors (biases, layer norms) out of whatever file they are mapped from: a
    mapping stays open while any tensor from it lives, and every page of it the copies above read would
    stay resident with it."""
    base, end = memory.data_ptr(), memory.data_ptr() + memory.numel()

    def mapped(t) -> bool:
        return isinstance(t, torch.Tensor) and t.device.type == "cpu" and not base <= t.data_ptr() < end

    for module in model.modules():
        for name, tensor in list(module._parameters.items()):
            if mapped(tensor):
                module._parameters[name] = nn.Parameter(tensor.detach().clone(), tensor.requires_grad)
        for name, tensor in list(module._buffers.items()):
            if mapped(tensor):
                module._buffers[name] = tensor.clone()
        for name, tensor in list(module.__dict__.items()):
            if mapped(tensor):
                setattr(module, name, tensor.clone())
