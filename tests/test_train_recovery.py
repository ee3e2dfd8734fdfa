"""A training run that was killed, damaged or ran out of disk: it resumes from the newest complete
checkpoint whatever state a checkpoint swap was cut in, bit-identically; a damaged file is named in one
line; a full disk is said in one line with the folder and its free space, and leaves no partial files."""

from __future__ import annotations

import json
import shutil

import pytest

from engine.errors import StorageError, TrainingError
from engine.tooling.train import TrainSettings, train
from tests.helpers import cli, fill_disk, small_disk
from tests.helpers import story_text

FAST = dict(context_window=32, batch_size=4, eval_every=5, eval_batches=1, checkpoint_every=5, warmup=2, lr=1e-2,
            min_lr=1e-3, lora=2)
quiet = dict(say=lambda message: None)


def settings(tmp_path, tiny_model_dir, steps=20) -> TrainSettings:
    text = tmp_path / "mine.txt"
    if not text.exists():
        text.write_text(story_text(200, seed=5), encoding="utf-8")
    return TrainSettings(data=str(text), init=str(tiny_model_dir), steps=steps, **FAST)


def log_steps(run) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def checkpoints_at(tmp_path_factory, tiny_model_dir):
    """One run's checkpoints at steps 5, 10 and 15, kept aside, and its folder at step 5 to build states from."""
    tmp = tmp_path_factory.mktemp("straight")
    run = tmp / "run"
    kept = {}
    train(run, settings(tmp, tiny_model_dir), pause_at=5, **quiet)
    kept[5] = shutil.copytree(run, tmp / "at5")
    for step in (10, 15):
        train(run, None, resume=True, pause_at=step, **quiet)
        kept[step] = shutil.copytree(run / "checkpoint", tmp / f"checkpoint{step}")
    return kept


# the states a checkpoint swap can be cut in: (folder name -> step of the checkpoint put there), and the
# step a resume must go on from
SWAP_STATES = {
    "writing the new one (no state.json yet)": ({"checkpoint": 5, "checkpoint.partial": "10-incomplete"}, 5),
    "written, before the first rename": ({"checkpoint": 5, "checkpoint.partial": 10}, 10),
    "between the two renames": ({"checkpoint.old": 5, "checkpoint.partial": 10}, 10),
    "renamed, the old one not yet deleted": ({"checkpoint.old": 5, "checkpoint": 10}, 10),
    "only the old one left": ({"checkpoint.old": 5}, 5),
}


@pytest.mark.parametrize("state", list(SWAP_STATES), ids=list(SWAP_STATES))
def test_a_kill_at_any_moment_of_the_swap_resumes_from_the_newest_complete_checkpoint(
        tmp_path, checkpoints_at, state):
    folders, expected = SWAP_STATES[state]
    run = shutil.copytree(checkpoints_at[5], tmp_path / "run")
    shutil.rmtree(run / "checkpoint")
    for name, step in folders.items():
        if step == "10-incomplete":
            shutil.copytree(checkpoints_at[10], run / name)
            (run / name / "state.json").unlink()
        else:
            shutil.copytree(checkpoints_at[5] / "checkpoint" if step == 5 else checkpoints_at[step], run / name)
    said = []
    train(run, None, resume=True, pause_at=15, say=said.append)
    assert f"resuming at step {expected}" in said
    # the run went on exactly as the uninterrupted one did
    assert (run / "checkpoint" / "model.safetensors").read_bytes() == \
        (checkpoints_at[15] / "model.safetensors").read_bytes()
    assert sorted(p.name for p in run.iterdir() if p.name.startswith("checkpoint")) == ["checkpoint"]
    steps = log_steps(run)
    assert steps == sorted(set(steps)) and steps[-1] == 15  # no step twice in the log


def test_the_log_holds_each_step_once_after_a_resume(tmp_path, tiny_model_dir):
    run = tmp_path / "run"
    train(run, settings(tmp_path, tiny_model_dir), pause_at=5, **quiet)
    checkpoint5 = shutil.copytree(run / "checkpoint", tmp_path / "checkpoint5")
    train(run, None, resume=True, pause_at=10, **quiet)
    shutil.rmtree(run / "checkpoint")
    shutil.copytree(checkpoint5, run / "checkpoint")  # killed after logging step 10, before its checkpoint
    assert log_steps(run) == [5, 10]
    train(run, None, resume=True, pause_at=15, **quiet)
    assert log_steps(run) == [5, 10, 15]


# damaged runs: one line naming the file, through the command line

def _damage_state(run):
    (run / "checkpoint" / "state.json").write_text('{"step": 5, ')


def _truncate_weights(run):
    path = run / "checkpoint" / "model.safetensors"
    path.write_bytes(path.read_bytes()[:100])


def _lose_optimizer(run):
    (run / "checkpoint" / "optimizer.safetensors").unlink()


def _truncate_data(run):
    path = run / "data" / "train.safetensors"
    path.write_bytes(path.read_bytes()[:-7])


def _unknown_setting(run):
    raw = json.loads((run / "settings.json").read_text())
    (run / "settings.json").write_text(json.dumps({**raw, "learning_speed": 3}))


def _steps_many(run):
    raw = json.loads((run / "settings.json").read_text())
    (run / "settings.json").write_text(json.dumps({**raw, "steps": "many"}))


def _settings_cut(run):
    (run / "settings.json").write_text('{"data": ')


def _state_wrong_type(run):
    raw = json.loads((run / "checkpoint" / "state.json").read_text())
    (run / "checkpoint" / "state.json").write_text(json.dumps({**raw, "step": "five"}))


DAMAGES = {
    "broken state.json": (_damage_state, "checkpoint/state.json is damaged"),
    "state.json with a step that is not a number": (_state_wrong_type, "checkpoint/state.json has step = 'five'"),
    "truncated checkpoint weights": (_truncate_weights, "checkpoint/model.safetensors is truncated or damaged"),
    "missing optimizer file": (_lose_optimizer, "checkpoint/optimizer.safetensors is missing"),
    "truncated data file": (_truncate_data, "data/train.safetensors is damaged"),
    "unknown key in settings.json": (_unknown_setting, "settings.json has an unknown setting 'learning_speed'"),
    "steps: many": (_steps_many, 'settings.json has steps = "many", which is not an integer'),
    "cut-off settings.json": (_settings_cut, "settings.json is damaged"),
}


@pytest.fixture(scope="module")
def run_at_5(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("damaged")
    train(tmp / "run", settings(tmp, tiny_model_dir), pause_at=5, **quiet)
    return tmp / "run"


@pytest.mark.parametrize("damage", list(DAMAGES), ids=list(DAMAGES))
def test_a_damaged_run_is_named_in_one_line(tmp_path, run_at_5, damage):
    spoil, said = DAMAGES[damage]
    run = shutil.copytree(run_at_5, tmp_path / "run")
    spoil(run)
    done = cli("train", "--out", str(run), "--resume")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert said in lines[0], lines[0]


# full disks

def test_a_full_disk_while_preparing_the_data_leaves_no_run_behind(tmp_path, tiny_model_dir):
    s = settings(tmp_path, tiny_model_dir)
    with small_disk(tmp_path / "disk", "512k") as disk:  # smaller than the run's tokenizer.json
        with pytest.raises(StorageError) as caught:
            train(disk / "run", s, **quiet)
        assert f"the disk holding {disk / 'run'} is full" in str(caught.value) and "free" in str(caught.value)
        assert list(disk.iterdir()) == []


def test_a_full_disk_while_training_keeps_the_last_good_checkpoint(tmp_path, tiny_model_dir):
    s = settings(tmp_path, tiny_model_dir, steps=15)
    with small_disk(tmp_path / "disk", "8m") as disk:
        run = disk / "run"
        train(run, s, pause_at=5, **quiet)
        fill_disk(disk)
        with pytest.raises(TrainingError) as caught:
            train(run, None, resume=True, **quiet)
        message = str(caught.value)
        assert f"the disk holding {run} is full" in message and "(step 5) is kept" in message, message
        assert "--resume" in message and "\n" not in message
        assert json.loads((run / "checkpoint" / "state.json").read_text())["step"] == 5
        assert not list(run.glob("*.partial")) and not list(run.glob("*.old"))
        (disk / ".filler").unlink()
        adapter = train(run, None, resume=True, **quiet)
        assert (adapter / "adapter_model.safetensors").is_file()
        assert not list(run.glob("*.partial")) and not list(run.glob("*.old"))
        assert log_steps(run) == [5, 10, 15]
