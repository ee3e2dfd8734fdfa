"""One entry point for every model: the embedded one, a folder the user picks, a cached download."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

from engine.checkpoint import build_model, read_state_dict, transposed_copies, weight_files
from engine.config import GPTConfig, load_config, read_json
from engine.device import DTYPES, resolve_device, resolve_precision
from engine.errors import ModelLoadError
from engine.model import GPT
from engine.precision import REDUCED, build_reduced_model, projection_names, use_row_layout, use_transposed_head
from engine.prepared import load_prepared
from engine.tokenizer import GPT2Tokenizer


@dataclass
class LoadedModel:
    name: str
    folder: Path
    config: GPTConfig
    model: GPT
    tokenizer: GPT2Tokenizer
    device: str
    dtype: torch.dtype  # of the activations
    eos_ids: frozenset[int]
    precision: str = "float32"  # of the weights: float32, float16, bfloat16 or int8
    prepared_path: Path | None = None  # the saved reduced-precision copy it was read from
    prepared_now: bool = False  # that copy was made during this load

    @property
    def context_window(self) -> int:
        return self.config.n_positions


def embedded_model_folder() -> Path | None:
    """The model shipped inside the package (assets/models/<name>/), if one is installed."""
    models = resources.files("assets") / "models"
    if not models.is_dir():
        return None
    folders = sorted(Path(str(p)) for p in models.iterdir() if p.is_dir() and (p / "config.json").is_file())
    return folders[0] if folders else None


def resolve_model_folder(model: str | Path | None) -> Path:
    if model is None:
        folder = embedded_model_folder()
        if folder is None:
            raise ModelLoadError("No embedded model is installed in this copy of gpt2-desktop; pass --model FOLDER.")
        return folder
    folder = Path(model).expanduser()
    if not folder.exists():
        from engine.hub import find_local

        local = find_local(str(model))
        if local is not None:
            return local.folder
        if str(model).count("/") == 1 and not str(model).startswith(("/", ".", "~")):
            raise ModelLoadError(f"{model} is not downloaded yet; run: gpt2-desktop models download {model}")
        raise ModelLoadError(f"No model folder at {folder}.")
    if not folder.is_dir():
        raise ModelLoadError(f"{folder} is a file; --model takes the folder that holds config.json.")
    return folder


def _eos_ids(folder: Path, config: GPTConfig, tokenizer: GPT2Tokenizer) -> frozenset[int]:
    ids = set()
    if (folder / "generation_config.json").is_file():
        value = read_json(folder / "generation_config.json").get("eos_token_id")
        ids.update(value if isinstance(value, list) else [value])
    ids.add(config.eos_token_id)
    ids.add(tokenizer.eos_id)
    return frozenset(i for i in ids if isinstance(i, int))


def display_name(model: str | Path | None, folder: Path) -> str:
    """A name a person recognises: the repo id of a Hub download, else the folder's name."""
    if model is not None and not Path(model).expanduser().exists():
        return str(model)  # a downloaded model's repo id or an imported folder's name
    if folder.parent.name == "snapshots" and folder.parent.parent.name.startswith("models--"):
        return folder.parent.parent.name[len("models--"):].replace("--", "/")
    return folder.name


def _native_available() -> bool:
    from engine import native  # imported here so that `python -m engine.native build` runs it only once

    return native.available()


def _float32_rows(config: GPTConfig, files: list[Path]) -> GPT:
    """A float32 model whose projections are [out, in] copies (see precision.use_row_layout). The model
    is built on a memory map whose projection pages are never touched, so they are not resident
    beside the copies."""
    net = build_model(config, read_state_dict(files), torch.float32, "cpu")
    rows = transposed_copies(files, {f"{name}.weight" for name in projection_names(net.config)})
    return use_row_layout(net, rows)


def load_model(model: str | Path | None = None, device: str = "auto", dtype: str = "auto") -> LoadedModel:
    """Load a GPT-2 model folder (None: the embedded model) onto a device, ready to generate."""
    folder = resolve_model_folder(model)
    config = load_config(folder)
    tokenizer = GPT2Tokenizer.from_folder(folder)
    if tokenizer.vocab_size > config.vocab_size:
        raise ModelLoadError(
            f"The tokenizer has {tokenizer.vocab_size} tokens but config.json's vocab_size is {config.vocab_size}."
        )
    device = resolve_device(device)
    precision = resolve_precision(dtype, device)
    files = weight_files(folder)
    prepared = None
    if device == "cpu" and precision in REDUCED:
        prepared = load_prepared(folder, config, files, precision)
        try:
            net = build_reduced_model(prepared.config, prepared.tensors, precision)
        except ModelLoadError:
            if prepared.built or prepared.path is None:
                raise
            prepared.path.unlink(missing_ok=True)  # a saved copy that does not fit: make it again
            prepared = load_prepared(folder, config, files, precision)
            net = build_reduced_model(prepared.config, prepared.tensors, precision)
        torch_dtype = torch.float32
    elif device == "cpu" and precision == "float32" and _native_available():
        torch_dtype = torch.float32
        net = _float32_rows(config, files)
    else:
        torch_dtype = DTYPES[precision]
        net = build_model(config, read_state_dict(files), torch_dtype, device)
        if device == "cpu":
            use_transposed_head(net)
    return LoadedModel(
        name=display_name(model, folder),
        folder=folder,
        config=net.config,
        model=net,
        tokenizer=tokenizer,
        device=device,
        dtype=torch_dtype,
        eos_ids=_eos_ids(folder, config, tokenizer),
        precision=precision,
        prepared_path=prepared.path if prepared else None,
        prepared_now=prepared.built if prepared else False,
    )
