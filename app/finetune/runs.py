"""The Fine-tune view's runs, kept in `<data dir>/runs/NAME/`: each is a `gpt2-desktop train --out` folder plus
`window.json` (what the view started it with: its base, how it shows, its command). A finished run is a model of
its own, named "BASE + NAME" (e.g. "tales-7m + my letters"): the Models view and the chat's model choice list it,
and the worker loads it through `resolve` (an adapter onto its base, or a fully fine-tuned model's folder).
No Qt, no torch."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from engine.files import write_atomic
from engine.paths import data_dir
from engine.core.prepared_names import copies_of, merged_copies
from engine.store.local import EMBEDDED_ALIAS, embedded_name, remove_merged

SEPARATOR = " + "


def runs_dir() -> Path:
    return data_dir() / "runs"


@dataclass(frozen=True)
class TrainingRun:
    folder: Path
    name: str  # as the person gave it ("my letters")
    base: str  # the base as the engine loads it ("tales-7m", a repo id, or a folder; older runs: "embedded")
    base_shown: str  # the base as the window shows it ("tales-7m")
    lora: bool
    steps: int
    args: tuple[str, ...]  # the `train` arguments that started it (without --threads)

    @property
    def model_name(self) -> str:
        """"BASE + NAME", the base by its one name (the embedded model is "tales-7m", never "embedded")."""
        base = embedded_name() if self.base_shown == EMBEDDED_ALIAS else self.base_shown
        return f"{base}{SEPARATOR}{self.name}"

    @property
    def result(self) -> Path:
        return self.folder / ("adapter" if self.lora else "model")

    @property
    def finished(self) -> bool:
        return (self.result / ("adapter_config.json" if self.lora else "config.json")).is_file()

    @property
    def resumable(self) -> bool:
        """Started by `train` far enough to continue with --resume (else it starts again from its arguments)."""
        return (self.folder / "settings.json").is_file()

    def _checkpoints(self) -> list[Path]:
        """Its checkpoint, and what an interrupted save left beside it (`train --resume` picks the newest)."""
        return [self.folder / name for name in ("checkpoint", "checkpoint.partial", "checkpoint.old")]

    @property
    def has_checkpoint(self) -> bool:
        return any(folder.is_dir() for folder in self._checkpoints())

    def last_step(self) -> int:
        steps = [0]
        for folder in self._checkpoints():
            try:
                step = json.loads((folder / "state.json").read_text())["step"]
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if isinstance(step, int):
                steps.append(step)
        return max(steps)


def folder_name(name: str) -> str:
    """A run's folder name from the name the person gave it."""
    cleaned = re.sub(r"[^\w.-]+", "-", name.strip()).strip("-.")
    return cleaned or "run"


def new_run_folder(name: str) -> Path:
    base = runs_dir() / folder_name(name)
    folder, n = base, 2
    while folder.exists():
        folder, n = base.with_name(f"{base.name}-{n}"), n + 1
    return folder


def write_run(run: TrainingRun) -> None:
    run.folder.mkdir(parents=True, exist_ok=True)
    meta = {"name": run.name, "base": run.base, "base_shown": run.base_shown, "lora": run.lora, "steps": run.steps,
            "args": list(run.args)}
    write_atomic(run.folder / "window.json", json.dumps(meta, indent=2))


def read_run(folder: Path) -> TrainingRun | None:
    try:
        meta = json.loads((folder / "window.json").read_text())
        return TrainingRun(folder=folder, name=meta["name"], base=meta["base"], base_shown=meta["base_shown"],
                           lora=bool(meta["lora"]), steps=int(meta["steps"]), args=tuple(meta["args"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def all_runs() -> list[TrainingRun]:
    root = runs_dir()
    if not root.is_dir():
        return []
    return [run for folder in sorted(root.iterdir()) if folder.is_dir() and (run := read_run(folder)) is not None]


def finished_runs() -> list[TrainingRun]:
    return [run for run in all_runs() if run.finished]


def unfinished_runs() -> list[TrainingRun]:
    return [run for run in all_runs() if not run.finished]


def made_to_run(run: TrainingRun) -> list[Path]:
    """The copies made to run a result (kept in `<data dir>/prepared/`): an adapter merged into its base, and the
    reduced-precision copies of that or of a fully fine-tuned model."""
    return [*merged_copies(run.result), *copies_of(run.result)]


def remove_run(run: TrainingRun) -> None:
    """Delete a run's folder and the copies made to run its result."""
    made = made_to_run(run)
    remove_merged([p for p in made if p.is_dir()])
    for copy in made:
        if copy.is_file():
            copy.unlink(missing_ok=True)
    shutil.rmtree(run.folder, ignore_errors=True)


def resolve(model: str | None) -> tuple[str | None, Path | None, Path | None] | None:
    """A fine-tuned model's name → (base to load, adapter folder, model folder); None when it names no run."""
    if not model or SEPARATOR not in model:
        return None
    for run in finished_runs():
        if run.model_name == model:
            if run.lora:
                return run.base, run.result, None
            return None, None, run.result
    return None
