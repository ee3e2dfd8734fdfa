"""Models on this computer: the embedded one, the Hugging Face cache, converted and imported folders.

A name a person types (`--model`, the Models view) becomes a folder here; `engine.core.loader`
then loads that folder. The Hugging Face cache is read where `huggingface_hub` keeps it
(HF_HUB_CACHE / HF_HOME, read at call time), so models other tools downloaded are found.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from engine.core.config import load_config
from engine.core.layout import checked_folder
from engine.core.prepared_names import copies_of, merged_copies
from engine.errors import HubError, ModelLoadError
from engine.files import set_aside, write_atomic
from engine.paths import data_dir

CACHE_PREFIX = "models--"  # the Hugging Face cache names a repo's folder models--<owner>--<name>
EMBEDDED_ALIAS = "embedded"  # what --model took for the embedded model before it went by its own name; still taken


@dataclass(frozen=True)
class LocalModel:
    name: str  # what --model accepts: a repo id, an imported folder's name, the embedded model's ("tales-7m")
    kind: str  # "embedded" | "downloaded" | "converted" | "imported"
    folder: Path
    size_bytes: int


def cache_dir() -> Path:
    from huggingface_hub import constants

    explicit = os.environ.get("HF_HUB_CACHE")
    if explicit:
        return Path(explicit)
    home = os.environ.get("HF_HOME")
    return Path(home) / "hub" if home else Path(constants.HF_HUB_CACHE)


def cache_folder_name(repo_id: str) -> str:
    return CACHE_PREFIX + repo_id.replace("/", "--")


def repo_id_of_cache_folder(name: str) -> str | None:
    """`models--openai-community--gpt2` -> `openai-community/gpt2`; None for any other folder name."""
    return name[len(CACHE_PREFIX):].replace("--", "/") if name.startswith(CACHE_PREFIX) else None


def models_dir() -> Path:
    """Converted models and the list of imported folders, in the user's data folder."""
    return data_dir() / "models"


def _registry() -> Path:
    return models_dir() / "imported.json"


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def embedded_model_folder() -> Path | None:
    """The model shipped inside the package (assets/models/<name>/), if one is installed."""
    models = resources.files("assets") / "models"
    if not models.is_dir():
        return None
    folders = sorted(Path(str(p)) for p in models.iterdir() if p.is_dir() and (p / "config.json").is_file())
    return folders[0] if folders else None


def embedded_name() -> str:
    """The embedded model's one name, as its folder and its model card call it ("tales-7m"): in `models list`,
    the window, reply headings and the names of models fine-tuned from it."""
    folder = embedded_model_folder()
    return folder.name if folder is not None else EMBEDDED_ALIAS


def is_embedded(name: str | None) -> bool:
    """Whether `name` is the embedded model: its own name or the older alias "embedded" (None: the default)."""
    return name is None or name in (EMBEDDED_ALIAS, embedded_name())


def check_folder(folder: Path) -> None:
    """Everything the loader checks (engine.core.layout.checked_folder: the files, the weights' names, shapes
    and dtypes), and the weights' values: a folder this accepts is one that loads and runs."""
    from engine.core.checkpoint import check_finite  # imports torch, which listing models does not need

    check_finite(checked_folder(folder).files)


def _cached_repos() -> list[LocalModel]:
    root = cache_dir()
    models = []
    for repo_dir in sorted(root.glob(CACHE_PREFIX + "*")) if root.is_dir() else []:
        ref = repo_dir / "refs" / "main"
        snapshots = sorted((repo_dir / "snapshots").glob("*"), key=lambda p: p.stat().st_mtime)
        snapshot = repo_dir / "snapshots" / ref.read_text().strip() if ref.is_file() else (snapshots[-1] if snapshots else None)
        if snapshot is None or not _is_gpt2_folder(snapshot):
            continue
        models.append(LocalModel(repo_id_of_cache_folder(repo_dir.name), "downloaded", snapshot,
                                 folder_size(repo_dir / "blobs")))
    return models


def _is_gpt2_folder(folder: Path) -> bool:
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return False
    has_weights = (folder / "model.safetensors").exists() or (folder / "model.safetensors.index.json").exists()
    return config.get("model_type", "gpt2") == "gpt2" and has_weights


def _imported() -> list[Path]:
    try:
        paths = json.loads(_registry().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(paths, list):
        return []
    return [Path(p) for p in paths if isinstance(p, str)]


def _write_registry(folders: list[Path]) -> None:
    """imported.json, written atomically; one that cannot be read is kept aside first, never overwritten."""
    path = _registry()
    if path.exists():
        try:
            ok = isinstance(json.loads(path.read_text(encoding="utf-8")), list)
        except (OSError, ValueError):
            ok = False
        if not ok:
            set_aside(path)
    write_atomic(path, json.dumps([str(p) for p in folders], indent=2), what="the list of imported models")


def local_models() -> list[LocalModel]:
    models = []
    embedded = embedded_model_folder()
    if embedded is not None:
        models.append(LocalModel(embedded.name, "embedded", embedded, folder_size(embedded)))
    models += _cached_repos()
    converted_dir = models_dir()
    for folder in sorted(converted_dir.glob("*--*")) if converted_dir.is_dir() else []:
        if folder.is_dir() and not folder.name.endswith(".partial") and _is_gpt2_folder(folder):
            models.append(LocalModel(folder.name.replace("--", "/", 1), "converted", folder, folder_size(folder)))
    for folder in _imported():
        if folder.is_dir():
            models.append(LocalModel(folder.name, "imported", folder, folder_size(folder)))
    return models


def find_local(name: str) -> LocalModel | None:
    """The model on this computer that goes by `name` ("embedded" is the embedded model's older name)."""
    if name == EMBEDDED_ALIAS:
        name = embedded_name()
    matches = [m for m in local_models() if m.name == name]
    return matches[0] if matches else None


def import_folder(path: Path) -> LocalModel:
    """Check a folder like the loader would, then list it (the files stay where they are)."""
    folder = Path(path).expanduser().resolve()
    if not folder.is_dir():
        raise HubError(f"{folder} is not a folder.")
    check_folder(folder)
    _write_registry([p for p in _imported() if p != folder] + [folder])
    return LocalModel(folder.name, "imported", folder, folder_size(folder))


def prepared_copies(model: LocalModel) -> list[Path]:
    """The reduced-precision copies prepared from a model (engine.core.prepared)."""
    return copies_of(model.folder)


def parameter_count(folder: Path) -> int | None:
    try:
        return load_config(folder).parameters
    except (ModelLoadError, OSError):
        return None


def remove_model(name: str) -> LocalModel:
    """Delete a downloaded or converted model, or forget an imported folder (its files are left alone); either
    way its prepared reduced-precision copies are deleted, and the copies merged with an adapter on it."""
    model = find_local(name)
    if model is None:
        raise HubError(f"No model named {name!r} on this computer (see: gpt2-desktop models list).")
    if model.kind == "embedded":
        raise HubError(f"{model.name} is the embedded model: it is part of the app and cannot be removed.")
    copies = prepared_copies(model)  # named after the folder's path: found before the folder goes
    merged = merged_copies(model.folder)
    if model.kind == "downloaded":
        shutil.rmtree(cache_dir() / cache_folder_name(name))
    elif model.kind == "converted":
        shutil.rmtree(model.folder)
    else:
        _write_registry([p for p in _imported() if p != model.folder])
    for copy in copies:
        copy.unlink(missing_ok=True)
    remove_merged(merged)
    return model


def remove_merged(folders: list[Path]) -> None:
    """Delete merged copies (engine.core.prepared_names.merged_copies) and the reduced copies made from them."""
    for folder in folders:
        for copy in copies_of(folder):
            copy.unlink(missing_ok=True)
        shutil.rmtree(folder, ignore_errors=True)


def resolve_model(model: str | Path | None) -> tuple[Path, str]:
    """The folder for `model` (a folder, a model's name, None for the embedded model) and the name a person
    recognises it by: the repo id of a Hub download, the name a model on this computer is listed by (the
    embedded model's own for "embedded"), else the folder's name."""
    if model is None:
        folder = embedded_model_folder()
        if folder is None:
            raise ModelLoadError("No embedded model is installed in this copy of gpt2-desktop; pass --model FOLDER.")
        return folder, folder.name
    folder = Path(model).expanduser()
    if not folder.exists():
        local = find_local(str(model))
        if local is not None:
            return local.folder, local.name
        if str(model).count("/") == 1 and not str(model).startswith(("/", ".", "~")):
            raise ModelLoadError(f"{model} is not downloaded yet; run: gpt2-desktop models download {model}")
        if os.sep not in str(model) and "/" not in str(model) and not str(model).startswith((".", "~")):
            raise ModelLoadError(f"No model named {model} is on this computer (nor a folder of that name here).")
        raise ModelLoadError(f"No model folder at {folder}.")
    if not folder.is_dir():
        raise ModelLoadError(f"{folder} is a file; --model takes the folder that holds config.json.")
    if folder.parent.name == "snapshots":
        repo_id = repo_id_of_cache_folder(folder.parent.parent.name)
        if repo_id:
            return folder, repo_id
    return folder, folder.name


def resolve_base(model: str | Path | None, adapter: Path) -> tuple[Path, str]:
    """The base model for a LoRA adapter: `model` when given, else the one its adapter_config.json names
    (base_model_name_or_path), else the embedded model. A named base that is not here is said so."""
    from engine.core.adapters import read_adapter  # imports torch, which listing models does not need

    if model is not None:
        return resolve_model(model)
    base = read_adapter(adapter).config.base_model
    try:
        return resolve_model(base or None)
    except ModelLoadError as exc:
        if not base:
            raise
        raise ModelLoadError(f"The adapter's base model {base} (base_model_name_or_path in its adapter_config.json) "
                             f"is not on this computer ({exc}); pass --model with the base it was trained on.") from None
