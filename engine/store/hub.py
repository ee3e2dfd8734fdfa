"""Models on the Hugging Face Hub: the catalog, downloads into the Hub's cache, pickle conversion.

`huggingface_hub` does the downloading and caching, so models other tools downloaded are found
and the other way round (engine.store.local lists them). Its endpoint follows HF_ENDPOINT (a mirror works) and its cache follows
HF_HUB_CACHE / HF_HOME, read at call time.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from engine.core.config import shown
from engine.errors import DownloadCancelled, HubError, HubOffline, first_line
from engine.files import give_usual_mode
from engine.store.local import cache_dir, check_folder, models_dir

TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "merges.txt")
PICKLE_WEIGHTS = "pytorch_model.bin"


@dataclass(frozen=True)
class CatalogEntry:
    repo_id: str
    parameters: str
    download_bytes: int  # float32 safetensors plus tokenizer, as published on the Hub
    description: str


CATALOG = (
    CatalogEntry("openai-community/gpt2", "124M", 550_000_000,
                 "GPT-2 small: the original. Quick on any laptop; good for prose and experiments."),
    CatalogEntry("openai-community/gpt2-medium", "355M", 1_525_000_000,
                 "GPT-2 medium: noticeably better prose, about 3x slower than small."),
    CatalogEntry("openai-community/gpt2-large", "774M", 3_250_000_000,
                 "GPT-2 large: better still; wants 4 GB of memory free."),
    CatalogEntry("openai-community/gpt2-xl", "1.5B", 6_435_000_000,
                 "GPT-2 XL: the strongest GPT-2 for prose; slow on a CPU, best on a GPU."),
    CatalogEntry("distilbert/distilgpt2", "82M", 355_000_000,
                 "DistilGPT-2: half the layers of GPT-2 small, the fastest; a little weaker."),
    CatalogEntry("microsoft/DialoGPT-small", "124M", 352_000_000,
                 "DialoGPT small: GPT-2 trained on Reddit conversations; for chat."),
    CatalogEntry("microsoft/DialoGPT-medium", "355M", 865_000_000,
                 "DialoGPT medium: better chat replies; the usual choice for chat."),
    CatalogEntry("microsoft/DialoGPT-large", "774M", 1_755_000_000,
                 "DialoGPT large: the best DialoGPT; slow on a CPU."),
)


def resolve_repo_id(name: str) -> str:
    """A catalog model's short name ("gpt2", "DialoGPT-medium") as its repo id; anything else as it is."""
    name = name.strip()
    if "/" not in name:
        for entry in CATALOG:
            if entry.repo_id.split("/")[1].lower() == name.lower():
                return entry.repo_id
    return name


def check_repo_id(repo_id: str) -> str:
    """`repo_id` if it can name a repo on the Hub (huggingface_hub's own rules), before anything is asked of it."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise HubError(f"{shown(repo_id, width=100)} is not a Hub repo id (owner/name, such as openai-community/gpt2; "
                       "see: gpt2-desktop models list).") from None
    return repo_id


@dataclass(frozen=True)
class DownloadProgress:
    filename: str
    done_bytes: int
    total_bytes: int
    bytes_per_second: float

    @property
    def eta_seconds(self) -> float | None:
        left = self.total_bytes - self.done_bytes
        return left / self.bytes_per_second if self.bytes_per_second > 0 else None


def endpoint() -> str:
    from huggingface_hub import constants

    return os.environ.get("HF_ENDPOINT", constants.ENDPOINT).rstrip("/")


def _offline_or_raise(exc: Exception, repo_id: str):
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    if isinstance(exc, GatedRepoError):
        raise HubError(f"{repo_id} is gated on the Hub and needs a login; it cannot be downloaded here.") from None
    if isinstance(exc, RepositoryNotFoundError):
        raise HubError(f"There is no model {repo_id!r} on the Hub ({endpoint()}). Check the name.") from None
    if isinstance(exc, HfHubHTTPError):
        raise HubError(f"The Hub answered with an error for {repo_id}: {exc}".splitlines()[0]) from None
    raise HubOffline(
        f"The Hugging Face Hub ({endpoint()}) cannot be reached — are you offline? "
        "Models already on this computer keep working."
    ) from None


def remote_files(repo_id: str) -> dict[str, int]:
    """The repo's files and their sizes."""
    from huggingface_hub import HfApi

    try:
        info = HfApi(endpoint=endpoint()).model_info(repo_id, files_metadata=True, timeout=15)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a HubError with a plain message
        _offline_or_raise(exc, repo_id)
    return {s.rfilename: s.size or 0 for s in info.siblings or []}


def files_to_fetch(repo_id: str, files: dict[str, int]) -> list[str]:
    """Only what the engine reads: config, generation config, safetensors (or a pickle to convert), tokenizer."""
    if "config.json" not in files:
        raise HubError(f"{repo_id} has no config.json; it is not a model in the Hugging Face layout.")
    wanted = ["config.json"] + [f for f in ("generation_config.json", *TOKENIZER_FILES) if f in files]
    if "tokenizer.json" not in files and not {"vocab.json", "merges.txt"} <= set(files):
        raise HubError(f"{repo_id} has no tokenizer (tokenizer.json, or vocab.json and merges.txt).")
    if "model.safetensors" in files:
        return wanted + ["model.safetensors"]
    if "model.safetensors.index.json" in files:
        shards = sorted(f for f in files if f.startswith("model-") and f.endswith(".safetensors"))
        return wanted + ["model.safetensors.index.json"] + shards
    if PICKLE_WEIGHTS in files:
        return wanted + [PICKLE_WEIGHTS]
    raise HubError(f"{repo_id} has no weights this app can use (model.safetensors or {PICKLE_WEIGHTS}).")


class _ProgressBar:
    """Stands in for tqdm inside huggingface_hub: reports bytes and raises when the user cancels."""

    def __init__(self, report: Callable[[int], None], cancel: threading.Event | None):
        self.report, self.cancel = report, cancel

    def make(self):
        from huggingface_hub.utils import tqdm

        outer = self

        class Bar(tqdm):
            def __init__(self, *args, **kwargs):
                kwargs["disable"] = True
                super().__init__(*args, **kwargs)

            def update(self, n=1):
                if outer.cancel is not None and outer.cancel.is_set():
                    raise DownloadCancelled("The download was cancelled; what was complete is kept for next time.")
                outer.report(n or 0)

        return Bar


def _verify_blob(path: Path, filename: str) -> None:
    """A large file's cache name is its SHA-256 (the Hub's ETag): check the bytes against it."""
    blob = path.resolve()
    if len(blob.name) != 64 or not all(c in "0123456789abcdef" for c in blob.name):
        return
    digest = hashlib.sha256()
    with blob.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != blob.name:
        blob.unlink(missing_ok=True)
        path.unlink(missing_ok=True)
        raise HubError(f"{filename} arrived corrupted (its checksum does not match the Hub's); it was removed. "
                       "Download again.")


def download_model(repo_id: str, progress: Callable[[DownloadProgress], None] | None = None,
                   cancel: threading.Event | None = None) -> Path:
    """Fetch what the engine needs into the Hugging Face cache; returns a folder `load_model` takes.

    Files already complete in the cache are not fetched again, so a cancelled or failed download
    picks up where it stopped (file by file; a dropped connection is resumed within the file).
    """
    from huggingface_hub import hf_hub_download

    repo_id = check_repo_id(resolve_repo_id(repo_id))
    files = remote_files(repo_id)
    wanted = files_to_fetch(repo_id, files)
    total = sum(files[f] for f in wanted)
    free = shutil.disk_usage(_existing_parent(cache_dir())).free
    if total > free:
        raise HubError(f"{repo_id} needs {total / 1e9:.2f} GB but only {free / 1e9:.2f} GB is free on the disk "
                       f"holding {cache_dir()}.")
    done, started, current = 0, time.monotonic(), [""]
    fetched: set[str] = set()  # files that came over the network in this call (only those are re-hashed)

    def report(n: int) -> None:
        nonlocal done
        done += n
        fetched.add(current[0])
        if progress is not None:
            elapsed = max(1e-6, time.monotonic() - started)
            progress(DownloadProgress(current[0], done, total, done / elapsed))

    bar = _ProgressBar(report, cancel).make()
    folder = None
    for filename in wanted:
        current[0] = filename
        if cancel is not None and cancel.is_set():
            raise DownloadCancelled("The download was cancelled; what was complete is kept for next time.")
        try:
            path = Path(hf_hub_download(repo_id, filename, endpoint=endpoint(), cache_dir=cache_dir(),
                                        tqdm_class=bar, etag_timeout=15))
        except HubError:
            raise
        except Exception as exc:  # noqa: BLE001
            if isinstance(exc, OSError) and "Consistency check failed" in str(exc):
                raise HubError(f"{filename} arrived truncated; download again.") from None
            _offline_or_raise(exc, repo_id)
        if filename in fetched:
            _verify_blob(path, filename)
        folder = path.parent
    if PICKLE_WEIGHTS in wanted:
        folder = convert_pickle(folder, repo_id)
    check_folder(folder)
    return folder


def _existing_parent(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def convert_pickle(snapshot: Path, repo_id: str) -> Path:
    """Turn a pickle checkpoint into safetensors once, with `weights_only=True` (no code runs)."""
    import torch
    from safetensors.torch import save_file

    target = models_dir() / repo_id.replace("/", "--")
    if (target / "model.safetensors").is_file():
        return target
    try:
        state = torch.load(snapshot / PICKLE_WEIGHTS, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # it names something other than tensors, which could run code
        named = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f" ({named.group(1)})" if named else ""
        raise HubError(f"{repo_id}'s {PICKLE_WEIGHTS} holds more than tensors{what}, and unpickling that could run "
                       "code; it was not converted.") from None
    except Exception as exc:  # noqa: BLE001 - a broken pickle is refused
        raise HubError(f"{repo_id}'s {PICKLE_WEIGHTS} could not be read ({first_line(exc)}); it was not "
                       "converted.") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise HubError(f"{repo_id}'s {PICKLE_WEIGHTS} does not hold a plain dictionary of tensors; it was not converted.")
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    seen: dict[int, str] = {}
    tensors = {}
    for name, tensor in state.items():  # tied weights share storage; safetensors wants each stored once
        if tensor.data_ptr() in seen:
            continue
        seen[tensor.data_ptr()] = name
        tensors[name] = tensor.contiguous()
    save_file(tensors, tmp / "model.safetensors", metadata={"format": "pt", "converted_from": PICKLE_WEIGHTS})
    give_usual_mode(tmp / "model.safetensors")
    for name in ("config.json", "generation_config.json", *TOKENIZER_FILES):
        if (snapshot / name).is_file():
            shutil.copyfile(snapshot / name, tmp / name)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    return target


def hub_reachable(timeout: float = 5.0) -> bool:
    """Whether the Hub's server answers at all (any HTTP status counts; only a dead line does not)."""
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(urllib.request.Request(endpoint() + "/api/models/openai-community/gpt2",
                                                      method="HEAD"), timeout=timeout)
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError, ValueError):
        return False
    return True
