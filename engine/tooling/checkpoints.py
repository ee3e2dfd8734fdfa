"""A training run's checkpoint: written beside the last one and swapped in, and found again whatever an
interruption left behind.

A checkpoint is a folder of three files: the trained weights (`model.safetensors`: every weight, or a LoRA
run's adapters only), AdamW's moments (`optimizer.safetensors`) and `state.json` (step, tokens seen,
losses). It is written as `checkpoint.partial/`, each file fsynced and `state.json` last, so a folder with
a readable `state.json` and readable tensor files is complete. Then `checkpoint/` is renamed to
`checkpoint.old/` and `checkpoint.partial/` to `checkpoint/`. A process killed at any moment of that leaves
one of these three folders complete; `settle` makes the newest complete one `checkpoint/` again before a
run resumes. Nothing is pickled.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from engine.errors import SettingsError, TrainingError
from engine.files import disk_problem, set_aside
from engine.tooling.export import replace_folder

TENSOR_FILES = ("model.safetensors", "optimizer.safetensors")


@dataclass
class TrainState:
    step: int = 0
    tokens_seen: int = 0
    elapsed_s: float = 0.0
    last_loss: float = float("nan")
    val_loss: float = float("nan")
    val_bpb: float = float("nan")


def _synced(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def save_checkpoint(folder: Path, tensors: dict[str, torch.Tensor], moments: dict[str, torch.Tensor],
                    state: TrainState) -> None:
    """Write a checkpoint into `folder`'s place (`RUN/checkpoint`): a full disk or a crash mid-write leaves
    the last good checkpoint in place, and the run resumes from it."""
    tmp = folder.with_name(folder.name + ".partial")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        save_file(tensors, tmp / "model.safetensors")
        save_file(moments, tmp / "optimizer.safetensors")
        for name in TENSOR_FILES:
            _synced(tmp / name)
        with open(tmp / "state.json", "w", encoding="utf-8") as f:  # last: a folder that has it is complete
            f.write(json.dumps(asdict(state), indent=2))
            f.flush()
            os.fsync(f.fileno())
        replace_folder(tmp, folder)
    except (OSError, SafetensorError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise TrainingError(f"Cannot write a checkpoint at step {state.step}: {disk_problem(folder.parent, exc)}; "
                            f"{last_good(folder)}: free some space and continue with --resume.") from None


def last_good(folder: Path) -> str:
    step = _step(folder)
    return "no checkpoint was saved yet" if step is None else f"the last good checkpoint (step {step}) is kept"


def problem(folder: Path) -> str | None:
    """What makes a checkpoint folder unusable, naming the file ("state.json is missing"), or None."""
    try:
        state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return f"{folder / 'state.json'} is missing"
    except (OSError, ValueError) as exc:
        return f"{folder / 'state.json'} is damaged ({exc})"
    if state_problem(state):
        return f"{folder / 'state.json'} {state_problem(state)}"
    for name in TENSOR_FILES:
        path = folder / name
        if not path.is_file():
            return f"{path} is missing"
        try:
            with safe_open(str(path), framework="pt") as f:
                f.keys()
        except (OSError, SafetensorError) as exc:
            return f"{path} is truncated or damaged ({exc})"
    return None


def state_problem(state) -> str | None:
    """Why a parsed state.json does not describe a TrainState, or None."""
    if not isinstance(state, dict):
        return "is not a JSON object"
    known = {f.name: f for f in fields(TrainState)}
    for key, value in state.items():
        if key not in known:
            return f"has an unknown field {key!r}"
        wanted = int if known[key].type in (int, "int") else float
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (wanted is int and not isinstance(value, int)):
            return f"has {key} = {value!r}, which is not {'an integer' if wanted is int else 'a number'}"
    if "step" not in state or state["step"] < 0:
        return "has no step (or a negative one)"
    return None


def _step(folder: Path) -> int | None:
    """The step a complete, readable checkpoint folder holds; None for anything else."""
    if not folder.is_dir() or problem(folder) is not None:
        return None
    return json.loads((folder / "state.json").read_text(encoding="utf-8"))["step"]


def settle(folder: Path, say) -> bool:
    """Make `folder` (`RUN/checkpoint`) the newest complete checkpoint among it, `checkpoint.partial` and
    `checkpoint.old`, whichever state an interrupted save left them in; True when there is one. A damaged
    `checkpoint` with nothing complete beside it is a TrainingError naming the damaged file."""
    partial, old = folder.with_name(folder.name + ".partial"), folder.with_name(folder.name + ".old")
    candidates = [p for p in (folder, partial, old) if p.is_dir()]
    steps = {p: _step(p) for p in candidates}
    complete = [p for p in candidates if steps[p] is not None]
    if not complete:
        for leftover in (partial, old):
            shutil.rmtree(leftover, ignore_errors=True)
        if folder.is_dir():
            raise TrainingError(f"Cannot resume from the checkpoint: {problem(folder)}. Move {folder} away to "
                                "start this run again from step 0, or start a new run with another --out.")
        return False
    best = max(complete, key=lambda p: (steps[p], p == folder))  # equal steps: the one already in place
    for other in candidates:
        if other == best:
            continue
        if other == folder and steps[other] is None:  # damaged by something else than a save: kept aside
            say(f"the checkpoint in {folder} is damaged ({problem(folder)}); kept as {set_aside(folder).name}")
        else:
            shutil.rmtree(other)
    if best != folder:
        os.replace(best, folder)
        say(f"the last save of a checkpoint was interrupted; going on from the complete one at step {steps[best]} "
            f"(it was {best.name}/)")
    return True


def load_checkpoint(folder: Path, params: dict[str, torch.nn.Parameter], opt: torch.optim.Optimizer) -> TrainState:
    """Put a checkpoint's weights into the trained `params` and its moments into `opt`; its TrainState."""
    device = next(iter(params.values())).device
    weights = load_file(folder / "model.safetensors")
    if set(weights) != set(params):
        raise SettingsError(f"The checkpoint in {folder} does not match this run's model; "
                            "start a new run with another --out.")
    try:
        with torch.no_grad():
            for name, tensor in weights.items():
                params[name].copy_(tensor)
        for key, value in load_file(folder / "optimizer.safetensors").items():
            name, slot = key.split("::")
            opt.state[params[name]][slot] = value if slot == "step" else value.to(device)
    except (RuntimeError, ValueError, KeyError) as exc:
        raise TrainingError(f"The checkpoint in {folder} does not fit this run's model ({exc}); start a new run "
                            "with another --out.") from None
    return TrainState(**json.loads((folder / "state.json").read_text(encoding="utf-8")))
