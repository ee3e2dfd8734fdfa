"""The Fine-tune view with a real `gpt2-desktop train` process on the TINY model and a small text: the curves get
points, the result is listed and answers; pause saves a checkpoint, a new view (the app started again) offers the
run with its own settings, and resume continues from the checkpoint; Start beside a paused run, Cancel and quitting
mid-run ask first; a binary or empty file is refused where it is added; export writes a .gguf in f16 or q8_0."""

from __future__ import annotations

import json
import re

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog, QMessageBox

from app.finetune.runs import finished_runs, runs_dir, unfinished_runs
from app.finetune.view import EXPORT_GGUF, FinetuneView

SMALL = ["--context", "32", "--batch-size", "2", "--eval-batches", "1"]


@pytest.fixture
def data_dir(dirs):
    return dirs / "data"


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "letters.txt"
    paragraphs = [f"Dear friend, this is letter number {n}. The garden is green and the river runs slowly by the "
                  f"old mill, where the miller sings of bread and rain.\n\n" for n in range(120)]
    path.write_text("".join(paragraphs), encoding="utf-8")
    return path


class Answers:
    """QMessageBox.question answered as a person would, each question kept (with its default button)."""

    def __init__(self, monkeypatch, answer=QMessageBox.Yes):
        self.asked, self.answer = [], answer
        monkeypatch.setattr(QMessageBox, "question", self._question)

    def _question(self, _parent, title, text, _buttons=None, default=None):
        self.asked.append((title, text, default))
        return self.answer


def make_view(qtbot, tiny_model_dir, steps: int) -> FinetuneView:
    view = FinetuneView()
    qtbot.addWidget(view, before_close_func=lambda widget: widget.shutdown())  # no process outlives its test
    view.add_base(str(tiny_model_dir), "tiny")
    view.steps.setValue(steps)
    view.extra_args = list(SMALL)
    return view


def test_training_shows_curves_and_the_result_is_listed_and_answers(qtbot, data_dir, tiny_model_dir, text_file,
                                                                    monkeypatch):
    view = make_view(qtbot, tiny_model_dir, steps=20)
    view.name.setText("my letters")
    view.add_paths([text_file])
    assert "tokens of text" in view.estimate.text()
    with qtbot.waitSignal(view.models_changed, timeout=180000):
        view.start_button.click()
        assert view.state == "training" and not view.start_button.isEnabled() and view.pause_button.isEnabled()
        assert "thread" in view.status.text() and not re.search(r"\b1 threads", view.status.text())
    assert view.state == "finished", view.status.text()
    assert len(view.chart.train_points) >= 5 and view.chart.val_points  # logged every 2 steps, evaluated too
    assert view.chart.train_points[-1][0] == 20 and "tokens/s" in view.progress.text()
    assert "left" not in view.progress.text() and "took" in view.progress.text()  # not "about 1 s left"
    assert [run.model_name for run in finished_runs()] == ["tiny + my letters"]
    assert view.use_button.isEnabled()
    qtbot.waitUntil(lambda: "After:" in view.samples.text(), timeout=120000)  # the base's, then the result's
    before, after = view.samples.text().splitlines()[1:]
    assert before.startswith("Before: …") and after.startswith("After: …") and "could not" not in after, after

    assert view.export_button.isEnabled()
    with qtbot.waitSignal(view.exported, timeout=120000) as exported:
        view.export_to(data_dir.parent / "exported")
    assert exported.args[1], view.status.text()
    assert (data_dir.parent / "exported" / "config.json").is_file() and "Exported to" in view.status.text()
    import gguf

    for kind, gguf_type in EXPORT_GGUF.items():  # a name without .gguf gets it; 16 or 8 bits as chosen
        chosen = data_dir.parent / f"letters-{gguf_type}"
        monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *args, c=chosen, k=kind: (str(c), k))
        with qtbot.waitSignal(view.exported, timeout=120000) as exported:
            view.export_button.click()
        assert exported.args == [str(chosen) + ".gguf", True], view.status.text()
        reader = gguf.GGUFReader(str(chosen) + ".gguf")
        file_type = int(reader.fields["general.file_type"].parts[-1][0])
        assert file_type == {"f16": gguf.LlamaFileType.MOSTLY_F16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[gguf_type]

    from app.models.view import ModelsView

    models = ModelsView()
    qtbot.addWidget(models)
    assert models.row_of("tiny + my letters") is not None
    models.shutdown()

    from app.engine_link.worker import EngineWorker

    worker = EngineWorker()
    loaded, failed, done = [], [], []
    worker.loaded.connect(loaded.append)
    worker.load_failed.connect(failed.append)
    worker.finished.connect(lambda _id, d: done.append(d))
    worker.failed.connect(lambda _id, message: failed.append(message))
    worker.load("tiny + my letters", "cpu", "float32", 1)
    assert loaded and not failed, failed
    worker.generate(1, "Dear friend", {"max_new_tokens": 3, "temperature": 0.0}, {})
    assert not failed and len(done) == 1 and len(done[0].token_ids) == 3


def test_full_fine_tuning_gives_a_whole_model(qtbot, data_dir, tiny_model_dir, text_file):
    view = make_view(qtbot, tiny_model_dir, steps=4)
    view.mode.setCurrentIndex(view.mode.findData("full"))
    assert not view.rank.isEnabled()
    view.name.setText("all weights")
    view.add_paths([text_file, text_file.parent])  # several: gathered into the run's input/ folder
    with qtbot.waitSignal(view.models_changed, timeout=180000):
        view.start_button.click()
    run = finished_runs()[0]
    assert run.model_name == "tiny + all weights" and not run.lora and (run.folder / "model" / "config.json").is_file()
    assert len(list((run.folder / "input").glob("*.txt"))) == 2

    from app.finetune.runs import resolve

    assert resolve("tiny + all weights") == (None, None, run.folder / "model") and resolve("tiny") is None


def paused_run(qtbot, tiny_model_dir, text_file, name="my letters") -> FinetuneView:
    view = make_view(qtbot, tiny_model_dir, steps=100000)
    view.name.setText(name)
    view.rank.setValue(4)
    view.add_paths([text_file])
    view.start_button.click()
    qtbot.waitUntil(lambda: len(view.chart.train_points) >= 1, timeout=120000)
    view.pause_button.click()
    qtbot.waitUntil(lambda: view.state == "paused", timeout=60000)
    return view


def test_pause_then_resume_after_a_restart_continues_from_the_checkpoint(qtbot, data_dir, tiny_model_dir,
                                                                         text_file, monkeypatch):
    view = paused_run(qtbot, tiny_model_dir, text_file)
    paused_at = view.run.last_step()
    assert paused_at >= view.chart.train_points[-1][0] and view.resume_button.isEnabled()
    assert f"Paused at step {paused_at}" in view.status.text()

    again = FinetuneView()  # the app started again: it offers the unfinished run, with its own settings
    qtbot.addWidget(again, before_close_func=lambda widget: widget.shutdown())
    assert [run.folder for run in unfinished_runs()] == [view.run.folder]
    assert again.state == "paused" and again.run.folder == view.run.folder and again.resume_button.isEnabled()
    assert again.chart.train_points == view.chart.train_points  # the curve so far, from its log
    assert (again.name.text(), again.steps.value(), again.rank.value(), again.mode.currentData(), again.paths,
            again.base.currentText()) == ("my letters", 100000, 4, "lora", [text_file], "tiny")
    assert f"paused at step {paused_at} of 100000" in again.resume_offer
    again.resume_button.click()
    qtbot.waitUntil(lambda: again.chart.train_points[-1][0] > paused_at, timeout=120000)
    assert any(f"resuming at step {paused_at}" in line for line in again._errors)
    logged = [json.loads(line)["step"] for line in (again.run.folder / "log.jsonl").read_text().splitlines()]
    assert [step for step, _loss in again.chart.train_points] == logged[:len(again.chart.train_points)]
    folder = again.run.folder
    answers = Answers(monkeypatch, QMessageBox.No)
    again.cancel_button.click()  # asks first, No the default: nothing is deleted
    assert answers.asked[0][2] == QMessageBox.No and "cannot be undone" in answers.asked[0][1]
    assert again.state == "training" and folder.exists()
    answers.answer = QMessageBox.Yes
    again.cancel_button.click()
    assert again.state == "idle" and not folder.exists()


def test_start_beside_a_paused_run_asks_and_keeps_it(qtbot, data_dir, tiny_model_dir, text_file, monkeypatch):
    view = paused_run(qtbot, tiny_model_dir, text_file)
    paused = view.run.folder
    answers = Answers(monkeypatch, QMessageBox.No)
    view.start_button.click()
    assert len(answers.asked) == 1 and answers.asked[0][2] == QMessageBox.No
    assert "is paused at step" in answers.asked[0][1]
    assert view.state == "paused" and view.run.folder == paused and not view.process.processId()
    answers.answer = QMessageBox.Yes
    view.name.setText("second")
    view.start_button.click()
    assert view.state == "training" and view.run.folder != paused and paused.is_dir()
    qtbot.waitUntil(lambda: len(view.chart.train_points) >= 1, timeout=120000)
    view.cancel_button.click()  # the new one goes; the paused one is offered again
    assert view.state == "paused" and view.run.folder == paused and view.resume_button.isEnabled()
    assert [run.folder for run in unfinished_runs()] == [paused]


def test_a_binary_or_empty_file_is_refused_where_it_is_added_and_clear_takes_the_line_away(
        qtbot, data_dir, tiny_model_dir, tmp_path, text_file):
    photo, empty, folder = tmp_path / "photo.txt", tmp_path / "empty.txt", tmp_path / "books"
    photo.write_bytes(b"GIF89a" + bytes(range(256)) * 4)
    empty.write_bytes(b"")
    folder.mkdir()
    (folder / "a.txt").write_text("Some words of a book.\n")
    (folder / "b.txt").write_bytes(b"\x00\x01")
    view = make_view(qtbot, tiny_model_dir, steps=10)
    view.add_paths([photo])
    assert view.paths == [] and "About" not in view.estimate.text()  # not "About 5,000 tokens"
    assert view.status.text() == "Not added: photo.txt looks like a binary file, not text (a zero byte at offset 6)."
    assert view.status.property("error")
    view.add_paths([empty])
    assert view.paths == [] and "times the text" not in view.estimate.text()  # not "819200.0 times the text"
    assert "empty.txt is empty" in view.status.text()
    view.add_paths([folder, text_file])
    assert view.paths == [text_file] and "books/b.txt looks like a binary file" in view.status.text()
    assert "About" in view.estimate.text()
    view.clear_paths()
    assert view.status.text() == "" and not view.status.property("error")
    view.start_button.click()  # nothing to learn from: said, then Clear takes that away too
    assert view.state == "failed" and "Add some text" in view.status.text()
    view.clear_paths()
    assert view.state == "idle" and view.status.text() == "" and not list(runs_dir().glob("*"))


def test_start_needs_text(qtbot, data_dir, tiny_model_dir):
    view = make_view(qtbot, tiny_model_dir, steps=10)
    view.start_button.click()
    assert view.state == "failed" and "Add some text" in view.status.text() and view.process is None


def test_the_window_lists_the_result_uses_it_and_closing_pauses_a_run(qtbot, open_window, tiny_model_dir, text_file,
                                                                      monkeypatch):
    window = open_window()
    qtbot.keyClick(window, Qt.Key_6, Qt.ControlModifier)
    assert window.tabs.currentWidget() is window.finetune
    view = window.finetune
    view.add_base(str(tiny_model_dir), "tiny")
    view.steps.setValue(6)
    view.extra_args = list(SMALL)
    view.name.setText("letters")
    view.add_paths([text_file])
    with qtbot.waitSignal(view.models_changed, timeout=180000):
        view.start_button.click()
    box = window.chat.options.model
    assert box.findData("tiny + letters") >= 0 or box.findText("tiny + letters") >= 0
    view.use_button.click()
    qtbot.waitUntil(lambda: window.model.loaded == "tiny + letters" and window.model_info is not None, timeout=60000)
    assert window.tabs.currentIndex() == 0

    view.steps.setValue(100000)
    view.name.setText("long")
    view.start_button.click()
    qtbot.waitUntil(lambda: len(view.chart.train_points) >= 1, timeout=120000)
    folder = view.run.folder
    answers = Answers(monkeypatch, QMessageBox.No)
    window.close()  # asks first, No the default: the window stays and so does the run
    assert window.isVisible() and view.state == "training" and answers.asked[0][2] == QMessageBox.No
    answers.answer = QMessageBox.Yes
    window.close()  # pauses the run: a checkpoint, and it is offered at the next start
    assert not window.isVisible() and view.process.state() == view.process.ProcessState.NotRunning
    assert [run.folder for run in unfinished_runs()] == [folder] and unfinished_runs()[0].last_step() > 0
    again = open_window()
    assert again.finetune.state == "paused" and again.finetune.run.folder == folder
    assert not again.banner.isHidden()
    assert "Fine-tuning “tiny + long” is paused at step" in again.banner.label.text()
    again.finetune.resume_button.click()  # taken up: the banner goes
    assert again.banner.isHidden() and again.finetune.state == "training"
    again.finetune.pause_button.click()
    qtbot.waitUntil(lambda: again.finetune.state == "paused", timeout=60000)
