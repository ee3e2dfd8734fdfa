"""The Tasks tab (app.tasks.view, app.tasks.template_editor): a template generates and streams, a choose
template shows each option's probability, errors are said, templates are imported and exported and open in
the notebook."""


from PySide6.QtCore import Qt

from tests.helpers import wait_idle


def test_tasks_generate_template_streams_output(qtbot, open_window):
    window = open_window()
    window.tabs.setCurrentIndex(1)
    tasks = window.tasks
    tasks.select_by_name("Summarise")
    assert list(tasks.fields) == ["article"]
    tasks.set_values({"article": "The fox ran into the wood and hid from the hunters."})
    finished = []
    window.requests.finished.connect(lambda _request, done: finished.append(done))
    qtbot.mouseClick(tasks.run_button, Qt.LeftButton)
    assert tasks.run_button.text() == "Stop"
    wait_idle(qtbot, window)
    assert tasks.run_button.text() == "Run"
    done = finished[-1]
    assert done.token_ids and done.prompt_tokens > 10
    assert tasks.output.toPlainText() == done.text
    assert window.history.conversations() == []  # tasks do not write to the chat history
    assert f"after {len(done.token_ids)} token" in tasks.message.text()  # how it ended is said
    tasks.select_by_name("Translate")
    assert tasks.output.toPlainText() == ""  # the answer was Summarise's, not Translate's


def test_an_empty_task_answer_says_what_happened(qtbot, open_window):
    window = open_window()
    tasks = window.tasks
    tasks.select_by_name("Summarise")
    tasks.set_values({"article": "The fox ran into the wood."})
    finished = []
    window.requests.finished.connect(lambda _request, done: finished.append(done))
    # Every text stops at once: the answer is empty, as when a model's first token is the stop sequence.
    window.tasks.run_generate.disconnect()
    window.tasks.run_generate.connect(lambda prompt, settings: window.replies.run_task(
        prompt, {**settings, "temperature": 0.0,
                 "stop": list("abcdefghijklmnopqrstuvwxyz0123456789.,;:!?'\" \n-ABCDEFGHIJKLMNOPQRSTUVWXYZ")}))
    tasks.run_or_stop()
    wait_idle(qtbot, window)
    assert finished[-1].stop_reason == "stop" and tasks.output.toPlainText().strip() == ""
    assert "wrote nothing to show" in tasks.message.text() and "stop sequence" in tasks.message.text()


def test_tasks_choose_template_shows_probabilities(qtbot, open_window, tiny):
    from engine.inference.scoring import choose

    window = open_window()
    window.tabs.setCurrentIndex(1)
    tasks = window.tasks
    tasks.select_by_name("Multiple choice")
    tasks.set_values({"context": "The glass fell and", "options": "broke\nsang a song\nflew away"})
    tasks.run_or_stop()
    wait_idle(qtbot, window)
    probs = tasks.chart.probabilities()
    assert len(probs) == 3 and abs(sum(probs) - 1) < 0.01
    scores, best = choose(tiny, "The glass fell and", [" broke", " sang a song", " flew away"])
    assert [round(s.prob, 3) for s in scores] == [round(p, 3) for p in probs]
    assert tasks.chart.rows[best][0].text().startswith("★")


def test_tasks_render_errors_are_shown(qtbot, open_window):
    window = open_window()
    tasks = window.tasks
    tasks.select_by_name("Multiple choice")
    tasks.set_values({"context": "Hello", "options": ""})
    tasks.run_or_stop()
    assert "at least one option" in tasks.message.text()
    assert window.active is None


def test_template_editor_import_export_round_trip(qtbot, open_window, dirs, tmp_path):
    from app.tasks.template_editor import TemplateEditor
    from engine.inference.templates import NEW_TEMPLATE, read_template

    window = open_window()
    tasks = window.tasks
    editor = TemplateEditor(NEW_TEMPLATE.replace("My template", "Headline"), tasks.user_folder, None,
                            tasks.tokenizer, tasks.context_window)
    qtbot.addWidget(editor)
    assert "/ 128 tokens" in editor.status.text()
    assert editor.preview.toPlainText() == "A short example value.\n\nTL;DR:"
    editor.source.setPlainText("name = 'Broken'\nprompt = '{nothing}'")
    assert not editor.update_preview() and "nothing" in editor.status.text()
    editor.source.setPlainText(NEW_TEMPLATE.replace("My template", "Headline"))
    editor.save()
    tasks.reload(select="Headline")
    assert tasks.template.name == "Headline" and not tasks.template.builtin
    exported = tmp_path / "headline.toml"
    tasks.export_template(exported)
    tasks.delete_template(tasks.template)
    assert "Headline" not in tasks.templates
    imported = tasks.import_template(exported)
    assert imported.name == "Headline" and tasks.template.name == "Headline"
    assert read_template(exported).prompt == imported.prompt
    bad = tmp_path / "bad.toml"
    bad.write_text("name = 'x'")
    assert tasks.import_template(bad) is None and "could not be imported" in tasks.message.text()


def test_template_opens_in_notebook(qtbot, open_window):
    window = open_window()
    window.tasks.select_by_name("Translate")
    window.tasks.open_in_notebook.emit("English: hi\nFrench:")
    assert window.tabs.currentIndex() == 0 and window.pages.currentIndex() == 1
    assert window.notebook.editor.toPlainText() == "English: hi\nFrench:"
    assert window.history.conversation(window.conversations.current_id).document == "English: hi\nFrench:"
