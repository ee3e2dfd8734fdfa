"""A first start (app.chat.welcome): typing lands where a person writes, the first-run panel names the model that
answers until dismissed, the edit hint says what is kept."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from app.settings import AppSettings
from engine.store.local import embedded_model_folder
from tests.helpers import type_and_send, wait_idle, wait_loaded


@pytest.mark.parametrize("mode", ["chat", "notebook"])
def test_on_the_very_first_start_typing_lands_where_a_person_writes(qtbot, open_window, mode):
    window = open_window(mode=mode)
    window.activateWindow()
    target = window.chat.composer if mode == "chat" else window.notebook.editor
    qtbot.waitUntil(lambda: window.isActiveWindow(), timeout=5000)
    assert target.hasFocus()
    qtbot.keyClicks(window.focusWidget(), "Hello")
    assert "Hello" in target.toPlainText()


def test_the_first_run_panel_says_what_the_model_is_until_dismissed(qtbot, open_window, dirs):
    window = open_window(model=None)  # the embedded model
    chat = window.chat
    assert chat.welcome_shown()
    text = chat.welcome.label.text()
    assert "7 million parameters" in text and "fairy tale" in text and "offline" in text
    qtbot.mouseClick(chat.welcome.get_gpt2, Qt.LeftButton)
    assert window.tabs.currentWidget() is window.models
    window.tabs.setCurrentIndex(0)
    type_and_send(qtbot, window, "Once upon a time")
    assert not chat.welcome_shown()  # a chat with messages has no room for it
    wait_idle(qtbot, window)
    window.conversations.new_chat()
    assert chat.welcome_shown()  # an empty chat again: shown until dismissed
    qtbot.mouseClick(chat.welcome.dismiss, Qt.LeftButton)
    assert not chat.welcome_shown() and chat.composer.hasFocus()
    assert AppSettings.load(dirs / "config" / "settings.json").welcome_dismissed is True
    window.close()
    again = open_window(welcome_dismissed=True)  # as AppSettings.load gives it
    again.conversations.new_chat()
    assert not again.chat.welcome_shown()


def test_the_welcome_names_the_model_that_answers(qtbot, open_window):
    window = open_window()  # tiny
    text = window.chat.welcome.label.text()
    assert "<b>tiny</b>" in text and "7 million" not in text and "fairy tale" not in text
    window.model.use(None)
    wait_loaded(qtbot, window, embedded_model_folder())
    assert "<b>tales-7m</b>" in window.chat.welcome.label.text() and "7 million" in window.chat.welcome.label.text()


def test_the_edit_hint_says_the_old_message_and_reply_are_kept(qtbot, open_window):
    window = open_window()
    type_and_send(qtbot, window, "First question")
    wait_idle(qtbot, window)
    window.conversations.edit_last()
    hint = window.chat.edit_hint.text()
    assert window.chat.edit_hint.isVisibleTo(window)
    assert "replaces" not in hint and "kept" in hint and "Esc" in hint
