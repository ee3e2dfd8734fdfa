"""Load one model folder onto a device in a precision: config, tokenizer, weights, end-of-text ids.

The folder comes from engine.store.local (which turns what a person typed into a folder); the
weights' form comes from engine.core.precisions and engine.core.forms.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from engine.core import native, precisions
from engine.core.adapters import read_adapter
from engine.core.checkpoint import build_model, check_finite, read_state_dict, transposed_copies
from engine.core.config import GPTConfig
from engine.core.device import resolve_device
from engine.core.forms import build_reduced_model, projection_names, use_row_layout, use_transposed_head
from engine.core.hugepages import move_to_huge_pages
from engine.core.layout import checked_folder, weight_files
from engine.core.model import GPT
from engine.core.prepared import load_prepared, merged_folder
from engine.core.tokenizer import GPT2Tokenizer
from engine.errors import ModelLoadError


@dataclass
class LoadedModel:
    name: str
    folder: Path
    config: GPTConfig
    model: GPT
    tokenizer: GPT2Tokenizer
    device: str
    eos_ids: frozenset[int]
    precision: str = "float32"  # of the weights: a name from engine.core.precisions
    prepared_path: Path | None = None  # the saved reduced-precision copy it was read from
    prepared_now: bool = False  # that copy was made during this load
    adapter: Path | None = None  # the LoRA adapter merged into the base's weights
    note: str | None = None  # something a person should know about this load (a copy that could not be kept)

    @property
    def context_window(self) -> int:
        """How many tokens the model sees at once (config.json's n_positions)."""
        return self.config.n_positions


def _float32_rows(config: GPTConfig, files: list[Path]) -> GPT:
    """A float32 model whose projections are [out, in] copies (see forms.use_row_layout). The model
    is built on a memory map whose projection pages are never touched, so they are not resident
    beside the copies."""
    net = build_model(config, read_state_dict(files), torch.float32, "cpu")
    rows = transposed_copies(files, {f"{name}.weight" for name in projection_names(net.config)})
    return use_row_layout(net, rows)


def load_folder(folder: Path, name: str | None = None, device: str = "auto", precision: str = "auto",
                adapter: Path | None = None) -> LoadedModel:
    """Load a GPT-2 model folder onto a device in a weight precision, ready to generate; with a LoRA
    adapter (a folder in PEFT's format), from the base's merged copy (see prepared.merged_folder)."""
    if adapter is not None:
        lora = read_adapter(adapter)
        base = checked_folder(folder)  # a broken base is named as such, before the adapter is checked against it
        merged = merged_folder(folder, base.files, lora)
        loaded = load_folder(merged, f"{name or folder.name} + {lora.name}", device, precision)
        loaded.folder, loaded.adapter = folder, lora.folder
        return loaded
    checked = checked_folder(folder)
    config, tokenizer, files = checked.config, checked.tokenizer, checked.files
    device = resolve_device(device)
    precision = precisions.resolve(precision, device)
    prepared = None
    if device == "cpu" and precisions.get(precision).prepared:
        prepared = load_prepared(folder, config, files, precision)
        try:
            net = build_reduced_model(prepared.config, prepared.tensors, precision)
        except ModelLoadError:
            if prepared.built or prepared.path is None:
                raise
            prepared.path.unlink(missing_ok=True)  # a saved copy that does not fit: make it again
            prepared = load_prepared(folder, config, files, precision)
            net = build_reduced_model(prepared.config, prepared.tensors, precision)
    elif device == "cpu" and precision == "float32" and native.available():
        net = _float32_rows(config, files)
    else:
        net = build_model(config, read_state_dict(files), getattr(torch, precisions.get(precision).torch_dtype), device)
        if device == "cpu":
            use_transposed_head(net)
    if device == "cpu" and native.available():
        if prepared is not None:
            prepared.tensors.clear()  # the model holds what it uses: let each mapped original go once copied
        move_to_huge_pages(net)  # the compiled step streams its weights from 2 MiB pages faster
    return LoadedModel(
        name=name or folder.name,
        folder=folder,
        config=net.config,
        model=net,
        tokenizer=tokenizer,
        device=device,
        eos_ids=checked.eos_ids,
        precision=precision,
        prepared_path=prepared.path if prepared else None,
        prepared_now=prepared.built if prepared else False,
        note=prepared.note if prepared else None,
    )


def not_a_number(loaded: LoadedModel) -> ModelLoadError:
    """The error for a model whose output is NaN or infinite, for the code that ran it to raise. The damaged
    weight is named if the folder's files hold one: they are read to find it now, when the output is already
    wrong, and not on every load."""
    try:
        check_finite(weight_files(loaded.folder))
    except ModelLoadError as exc:
        return exc
    cause = "its weights are finite, so a value overflowed on the way"
    if loaded.precision != "float32":
        cause += f" in {loaded.precision} (try --dtype float32)"
    if loaded.adapter is not None:
        cause += f", or the adapter {loaded.adapter} is damaged"
    return ModelLoadError(f"The output of {loaded.name} is not a number (NaN or infinite): {cause}.")
