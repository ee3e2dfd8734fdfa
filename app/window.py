"""The main window: conversations on the left, a chat or notebook in the middle, settings in a dock."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QByteArray, QSize, Qt, QThread, QTimer, Signal
from PySide6.QtGui import QAction, QGuiApplication, QKeySequence, QShortcut, QTextCursor
from PySide6.QtWidgets import (QDockWidget, QFileDialog, QFrame, QHBoxLayout, QInputDialog, QLabel, QMainWindow,
                               QMessageBox, QPlainTextEdit, QProgressBar, QPushButton, QSplitter, QStackedWidget,
                               QTabWidget, QVBoxLayout, QWidget)

from app.composer import Composer
from app.history import History
from app.models_view import ModelsView
from app.settings import AppSettings
from app.settings_panel import SettingsPanel
from app.sidebar import Sidebar
from app.tasks import TasksView
from app.transcript import TranscriptView
from app.worker import EngineWorker
from engine.inference.chat import Turn, format_chat
from engine.errors import EngineError
from engine.paths import user_templates_dir
from engine.core.tokenizer import GPT2Tokenizer

TITLE_LENGTH = 48


@dataclass
class ActiveRequest:
    request_id: int
    conversation_id: int | None
    kind: str  # "chat" | "notebook" | "task" | "choice"
    settings: dict
    text: str = ""
    detached: bool = False  # the user moved to another conversation; the reply is still saved


def _title_from(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= TITLE_LENGTH else line[: TITLE_LENGTH - 1] + "…"


class MainWindow(QMainWindow):
    request_load = Signal(str, str, str, int)
    request_generate = Signal(int, str, dict)
    request_choose = Signal(int, str, list, bool)

    def __init__(self, history: History, settings: AppSettings, settings_path: Path,
                 history_problem: str | None = None):
        super().__init__()
        self.history = history
        self.settings = settings
        self.settings_path = settings_path
        self.model_info: dict | None = None
        self.active: ActiveRequest | None = None
        self.current_id: int | None = None
        self.editing_message_id: int | None = None
        self._next_request = 0
        self._hub_checked = False
        self.setWindowTitle("gpt2-desktop")

        self._build_engine_thread()
        self._build_widgets()
        self._build_menus()
        self._restore_layout()
        self.refresh_conversations()
        conversations = self.history.conversations()
        if conversations:
            self.open_conversation(conversations[0].id)
        else:
            self._show_mode(self.settings.mode)
        if history_problem:
            self.show_banner(history_problem + " This session's conversations will not be saved to it.")
        self.load_model()

    # construction

    def _build_engine_thread(self) -> None:
        self.engine_thread = QThread(self)
        self.engine_thread.setObjectName("engine")
        self.worker = EngineWorker()
        self.worker.moveToThread(self.engine_thread)
        self.engine_thread.finished.connect(self.worker.deleteLater)
        self.request_load.connect(self.worker.load)
        self.request_generate.connect(self.worker.generate)
        self.request_choose.connect(self.worker.choose)
        self.worker.chosen.connect(self._on_chosen)
        self.worker.loading.connect(self._on_loading)
        self.worker.loaded.connect(self._on_loaded)
        self.worker.load_failed.connect(self._on_load_failed)
        self.worker.tokens.connect(self._on_tokens)
        self.worker.finished.connect(self._on_finished)
        self.worker.failed.connect(self._on_failed)
        self.engine_thread.start()

    def _build_widgets(self) -> None:
        self.sidebar = Sidebar()
        self.sidebar.selected.connect(self.open_conversation)
        self.sidebar.new_chat.connect(self.new_chat)
        self.sidebar.new_notebook.connect(self.new_notebook)
        self.sidebar.search_changed.connect(lambda _text: self.refresh_conversations())
        self.sidebar.rename_requested.connect(lambda _id: self.ask_rename())
        self.sidebar.delete_requested.connect(lambda _id: self.ask_delete())

        self.banner_text = QLabel(wordWrap=True, textInteractionFlags=Qt.TextSelectableByMouse)
        open_model = QPushButton("Open model folder…")
        open_model.clicked.connect(self.choose_model_folder)
        dismiss = QPushButton("Dismiss")
        dismiss.clicked.connect(lambda: self.banner.hide())
        self.banner = QFrame(frameShape=QFrame.StyledPanel)
        self.banner.setObjectName("banner")
        banner_layout = QHBoxLayout(self.banner)
        banner_layout.addWidget(self.banner_text, 1)
        banner_layout.addWidget(open_model)
        banner_layout.addWidget(dismiss)
        self.banner.hide()

        self.transcript = TranscriptView()
        self.transcript.action.connect(self._on_transcript_action)
        self.composer = Composer()
        self.composer.setMaximumHeight(120)
        self.composer.submitted.connect(self.send)
        self.send_button = QPushButton("Send")
        self.send_button.setMinimumWidth(80)
        self.send_button.clicked.connect(self._send_or_stop)
        self.edit_hint = QLabel("Editing a message: Enter resends it and replaces the reply; Esc cancels.")
        self.edit_hint.hide()
        composer_row = QHBoxLayout()
        composer_row.addWidget(self.composer, 1)
        composer_row.addWidget(self.send_button, 0, Qt.AlignBottom)
        chat_page = QWidget()
        chat_layout = QVBoxLayout(chat_page)
        chat_layout.setContentsMargins(0, 0, 0, 0)
        chat_layout.addWidget(self.transcript, 1)
        chat_layout.addWidget(self.edit_hint)
        chat_layout.addLayout(composer_row)

        self.notebook = QPlainTextEdit()
        self.notebook.setPlaceholderText("Write the beginning of a text; the model continues at the end (Ctrl+Enter).")
        self.notebook.textChanged.connect(self._notebook_edited)
        self.continue_button = QPushButton("Continue")
        self.continue_button.setToolTip("Ctrl+Enter")
        self.continue_button.clicked.connect(self._continue_or_stop)
        notebook_row = QHBoxLayout()
        notebook_row.addWidget(QLabel("Edit anything, then let the model continue from the end."), 1)
        notebook_row.addWidget(self.continue_button)
        notebook_page = QWidget()
        notebook_layout = QVBoxLayout(notebook_page)
        notebook_layout.setContentsMargins(0, 0, 0, 0)
        notebook_layout.addWidget(self.notebook, 1)
        notebook_layout.addLayout(notebook_row)
        self._save_document = QTimer(self, singleShot=True, interval=400)
        self._save_document.timeout.connect(self._store_document)

        self.pages = QStackedWidget()
        self.pages.addWidget(chat_page)
        self.pages.addWidget(notebook_page)
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 6, 6, 6)
        right_layout.addWidget(self.banner)
        right_layout.addWidget(self.pages, 1)
        self.splitter = QSplitter()
        self.splitter.addWidget(self.sidebar)
        self.splitter.addWidget(right)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([240, 760])
        self.tasks = TasksView(user_templates_dir())
        self.tasks.run_generate.connect(self._run_task)
        self.tasks.run_choose.connect(self._run_choice)
        self.tasks.stop_requested.connect(self.stop)
        self.tasks.open_in_notebook.connect(self.notebook_from_text)
        self.tasks.use_in_chat.connect(self.chat_from_text)
        self.tabs = QTabWidget(documentMode=True)
        self.tabs.addTab(self.splitter, "Conversations")
        self.tabs.addTab(self.tasks, "Tasks")
        self.models = ModelsView()
        self.models.use_requested.connect(self.use_model_name)
        self.tabs.addTab(self.models, "Models")
        self.tabs.currentChanged.connect(self._tab_changed)
        self.setCentralWidget(self.tabs)

        import torch

        self.settings_panel = SettingsPanel(self.settings, torch.cuda.is_available(), os.cpu_count() or 1)
        self.settings_panel.sampling_changed.connect(self._store_settings)
        self.settings_panel.device_changed.connect(self._device_changed)
        self.settings_dock = QDockWidget("Settings", self)
        self.settings_dock.setObjectName("settings")
        self.settings_dock.setWidget(self.settings_panel)
        self.addDockWidget(Qt.RightDockWidgetArea, self.settings_dock)
        self.settings_dock.hide()

        bar = self.statusBar()
        self.busy = QProgressBar(maximumWidth=120, textVisible=False)
        self.busy.setRange(0, 0)
        self.busy.hide()
        self.model_label, self.device_label = QLabel("no model"), QLabel("")
        self.speed_label, self.ttft_label, self.context_label = QLabel(""), QLabel(""), QLabel("")
        for widget in (self.busy, self.model_label, self.device_label, self.speed_label, self.ttft_label,
                       self.context_label):
            bar.addPermanentWidget(widget)

    def _build_menus(self) -> None:
        def action(menu, text, slot, shortcut=None) -> QAction:
            act = QAction(text, self)
            if shortcut:
                act.setShortcut(QKeySequence(shortcut))
            act.triggered.connect(slot)
            menu.addAction(act)
            return act

        file_menu = self.menuBar().addMenu("&File")
        action(file_menu, "Open model folder…", self.choose_model_folder, "Ctrl+O")
        action(file_menu, "Use the embedded model", lambda: self.use_model(None))
        file_menu.addSeparator()
        action(file_menu, "Quit", self.close, "Ctrl+Q")
        conv_menu = self.menuBar().addMenu("&Conversation")
        action(conv_menu, "New chat", self.new_chat, "Ctrl+N")
        action(conv_menu, "New notebook", self.new_notebook, "Ctrl+Shift+N")
        action(conv_menu, "Search", self.focus_search, "Ctrl+F")
        action(conv_menu, "Rename…", self.ask_rename, "F2")
        action(conv_menu, "Delete…", self.ask_delete, "Ctrl+Shift+Backspace")
        view_menu = self.menuBar().addMenu("&View")
        action(view_menu, "Conversations", lambda: self.tabs.setCurrentIndex(0), "Ctrl+1")
        action(view_menu, "Tasks", lambda: self.tabs.setCurrentIndex(1), "Ctrl+2")
        action(view_menu, "Models", lambda: self.tabs.setCurrentIndex(2), "Ctrl+3")
        self.settings_action = action(view_menu, "Settings", self.toggle_settings, "Ctrl+,")
        help_menu = self.menuBar().addMenu("&Help")
        action(help_menu, "About gpt2-desktop", self.show_about)
        QShortcut(QKeySequence("Escape"), self, activated=self.escape)
        QShortcut(QKeySequence("Ctrl+Return"), self.notebook, activated=self._continue_or_stop)
        QShortcut(QKeySequence("Ctrl+Return"), self.tasks, activated=self.tasks.run_or_stop)
        QShortcut(QKeySequence("Delete"), self.sidebar.list, activated=self.ask_delete)

    def _restore_layout(self) -> None:
        if self.settings.window_geometry:
            self.restoreGeometry(QByteArray.fromBase64(self.settings.window_geometry.encode()))
        else:
            self.resize(QSize(1100, 720))
        if self.settings.window_state:
            self.restoreState(QByteArray.fromBase64(self.settings.window_state.encode()))
        if self.settings.splitter_state:
            self.splitter.restoreState(QByteArray.fromBase64(self.settings.splitter_state.encode()))

    # model

    def load_model(self) -> None:
        self.model_info = None
        self._update_buttons()
        self.request_load.emit(self.settings.model or "", self.settings.device, self.settings.precision, self.settings.threads)

    def use_model(self, folder: str | None) -> None:
        self.stop()
        self.settings.model = folder
        self._save_settings()
        self.load_model()

    def use_model_name(self, name: str) -> None:
        """From the Models view: a model name ("" for the embedded one) becomes the active model."""
        self.use_model(name or None)
        self.tabs.setCurrentIndex(0)

    def _tab_changed(self, index: int) -> None:
        if self.tabs.widget(index) is self.models and not self._hub_checked:
            self._hub_checked = True
            self.models.check_hub()

    def choose_model_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a GPT-2 model folder")
        if folder:
            self.use_model(folder)

    def _on_loading(self, name: str) -> None:
        self.busy.show()
        self.model_label.setText(f"Loading {name}…")
        self.statusBar().showMessage(f"Loading {name}…")

    def _on_loaded(self, info: dict) -> None:
        self.model_info = info
        self.busy.hide()
        if self.banner_text.property("kind") == "model":
            self.banner.hide()
        self.model_label.setText(info["name"])
        self.models.set_active(self.settings.model or "embedded")
        self.model_label.setToolTip(info["folder"])
        self.device_label.setText(f"{info['device']} · {info['dtype']}")
        self.context_label.setText(f"context — / {info['context_window']}")
        self.statusBar().showMessage(f"Loaded {info['name']}", 3000)
        try:
            self.tasks.set_model(GPT2Tokenizer.from_folder(Path(info["folder"])), info["context_window"])
        except EngineError:
            self.tasks.set_model(None, info["context_window"])
        self._update_buttons()

    def _on_load_failed(self, message: str) -> None:
        self.busy.hide()
        self.model_label.setText("no model")
        self.device_label.setText("")
        self.show_banner(f"The model could not be loaded: {message}", kind="model")
        self._update_buttons()

    def show_banner(self, text: str, kind: str = "info") -> None:
        self.banner_text.setText(text)
        self.banner_text.setProperty("kind", kind)
        self.banner.show()

    # conversations

    def refresh_conversations(self) -> None:
        self.sidebar.show_conversations(self.history.conversations(self.sidebar.search.text()), self.current_id)

    def open_conversation(self, conversation_id: int) -> None:
        if conversation_id == self.current_id:
            return
        self._store_document()
        if self.active is not None and self.active.conversation_id is not None:
            self.active.detached = True
            self.stop()
        self.cancel_edit()
        conv = self.history.conversation(conversation_id)
        if conv is None:
            return
        self.current_id = conv.id
        self.notebook.setReadOnly(False)
        self._show_mode(conv.mode)
        if conv.mode == "chat":
            self.transcript.render(self.history.messages(conv.id))
            self.composer.setFocus()
        else:
            self.notebook.blockSignals(True)
            self.notebook.setPlainText(conv.document)
            self.notebook.blockSignals(False)
            self.notebook.moveCursor(QTextCursor.End)
            self.notebook.setFocus()
        self.refresh_conversations()

    def _show_mode(self, mode: str) -> None:
        self.pages.setCurrentIndex(0 if mode == "chat" else 1)
        self.settings.mode = mode
        self._update_buttons()

    def new_chat(self) -> None:
        self._new_conversation("New chat", "chat")

    def new_notebook(self) -> None:
        self._new_conversation("Notebook", "notebook")

    def _new_conversation(self, title: str, mode: str) -> None:
        self.sidebar.search.clear()
        self.open_conversation(self.history.create_conversation(title, mode))

    def focus_search(self) -> None:
        self.sidebar.search.setFocus()
        self.sidebar.search.selectAll()

    def ask_rename(self) -> None:
        if self.current_id is None:
            return
        conv = self.history.conversation(self.current_id)
        title, ok = QInputDialog.getText(self, "Rename conversation", "Title:", text=conv.title)
        if ok and title.strip():
            self.rename_conversation(self.current_id, title.strip())

    def rename_conversation(self, conversation_id: int, title: str) -> None:
        self.history.rename_conversation(conversation_id, title)
        self.refresh_conversations()

    def ask_delete(self) -> None:
        if self.current_id is None:
            return
        conv = self.history.conversation(self.current_id)
        answer = QMessageBox.question(self, "Delete conversation", f"Delete “{conv.title}” and all its messages?")
        if answer == QMessageBox.Yes:
            self.delete_conversation(self.current_id)

    def delete_conversation(self, conversation_id: int) -> None:
        if self.active is not None and self.active.conversation_id == conversation_id:
            self.stop()
            self.active.detached = True
        self.history.delete_conversation(conversation_id)
        if conversation_id == self.current_id:
            self.current_id = None
            self.transcript.render([])
            remaining = self.history.conversations()
            if remaining:
                self.open_conversation(remaining[0].id)
        self.refresh_conversations()

    # chat

    def _send_or_stop(self) -> None:
        self.stop() if self.active else self.send()

    def _ready(self, say=None) -> bool:
        """Whether a new reply can start now; if not, says why (in the status bar unless `say` is given)."""
        say = say or (lambda text: self.statusBar().showMessage(text, 5000))
        if self.model_info is None:
            say("No model is loaded yet (File > Open model folder…, or the Models tab).")
        elif self.active is not None:
            say("The model is still writing; stop it first (Esc).")
        return self.model_info is not None and self.active is None

    def send(self) -> None:
        text = self.composer.toPlainText().strip()
        if not text or not self._ready():
            return
        if self.current_id is None or self.history.conversation(self.current_id).mode != "chat":
            self.current_id = self.history.create_conversation(_title_from(text), "chat")
            self._show_mode("chat")
        conv = self.history.conversation(self.current_id)
        if self.editing_message_id is not None:
            self.history.truncate_after(self.current_id, self.editing_message_id, new_content=text)
            self.cancel_edit()
        else:
            if conv.title == "New chat" and not self.history.messages(conv.id):
                self.history.rename_conversation(conv.id, _title_from(text))
            self.history.add_message(self.current_id, "user", text)
        self.composer.clear()
        self.refresh_conversations()
        self._start_chat_reply()

    def _start_chat_reply(self) -> None:
        messages = self.history.messages(self.current_id)
        prompt = format_chat([Turn(m.role, m.content) for m in messages], self.model_info["chat_style"])
        self.transcript.render(messages)
        self.transcript.begin_stream()
        settings = {**self.settings.sampling(), "stop": list(prompt.stop)}
        self._start(prompt.text, settings, "chat")

    def _on_transcript_action(self, action: str, message_id: int) -> None:
        messages = self.history.messages(self.current_id) if self.current_id else []
        message = next((m for m in messages if m.id == message_id), None)
        if message is None:
            return
        if action == "copy":
            QGuiApplication.clipboard().setText(message.content)
            self.statusBar().showMessage("Copied", 2000)
        elif action == "regenerate":
            self.regenerate(message_id)
        elif action == "edit":
            self.edit_message(message_id)

    def regenerate(self, message_id: int) -> None:
        """Replace an assistant reply (and anything after it) with a new one."""
        if not self._ready():
            return
        messages = self.history.messages(self.current_id)
        index = next(i for i, m in enumerate(messages) if m.id == message_id)
        if index == 0:
            return
        self.history.truncate_after(self.current_id, messages[index - 1].id)
        self._start_chat_reply()

    def edit_message(self, message_id: int) -> None:
        message = next(m for m in self.history.messages(self.current_id) if m.id == message_id)
        self.editing_message_id = message_id
        self.composer.setPlainText(message.content)
        self.composer.moveCursor(QTextCursor.End)
        self.composer.setFocus()
        self.edit_hint.show()

    def cancel_edit(self) -> None:
        if self.editing_message_id is not None:
            self.editing_message_id = None
            self.composer.clear()
        self.edit_hint.hide()

    # notebook

    def _notebook_edited(self) -> None:
        if self.active is None:
            self._save_document.start()

    def _store_document(self) -> None:
        self._save_document.stop()
        if self.current_id is not None and self.pages.currentIndex() == 1:
            self.history.set_document(self.current_id, self.notebook.toPlainText())

    def _continue_or_stop(self) -> None:
        self.stop() if self.active else self.continue_notebook()

    def continue_notebook(self) -> None:
        if not self._ready():
            return
        if self.current_id is None:
            self.current_id = self.history.create_conversation("Notebook", "notebook")
            self.refresh_conversations()
        self._store_document()
        self.notebook.setReadOnly(True)
        self._notebook_cursor = QTextCursor(self.notebook.document())
        self._notebook_cursor.movePosition(QTextCursor.End)
        self._start(self.notebook.toPlainText(), {**self.settings.sampling(), "stop": []}, "notebook")

    def notebook_from_text(self, text: str) -> None:
        self.tabs.setCurrentIndex(0)
        self.new_notebook()
        self.notebook.setPlainText(text)
        self.notebook.moveCursor(QTextCursor.End)
        self._store_document()

    def chat_from_text(self, text: str) -> None:
        self.tabs.setCurrentIndex(0)
        self.new_chat()
        self.composer.setPlainText(text)
        self.composer.setFocus()

    # tasks

    def _run_task(self, prompt: str, task_settings: dict) -> None:
        if not self._ready(self.tasks.message.setText):
            return
        self.tasks.set_running(True)
        self._start(prompt, {**self.settings.sampling(), **task_settings}, "task")

    def _run_choice(self, context: str, options: list, normalise: bool) -> None:
        if not self._ready(self.tasks.message.setText):
            return
        self.tasks.set_running(True)
        request_id = self._begin("choice", {"normalise": normalise})
        self.request_choose.emit(request_id, context, options, normalise)

    def _on_chosen(self, request_id: int, scores: list) -> None:
        if self.active is None or request_id != self.active.request_id:
            return
        self.active = None
        self.busy.hide()
        self.tasks.set_running(False)
        self.tasks.chart.show_scores(scores)
        self._update_buttons()

    # generation

    def _begin(self, kind: str, settings: dict) -> int:
        """Mark a new engine request as the active one; returns its id."""
        self._next_request += 1
        conversation = self.current_id if kind in ("chat", "notebook") else None
        self.active = ActiveRequest(self._next_request, conversation, kind, settings)
        self.busy.show()
        self._update_buttons()
        return self._next_request

    def _start(self, prompt: str, settings: dict, kind: str) -> None:
        self.request_generate.emit(self._begin(kind, settings), prompt, settings)

    def stop(self) -> None:
        if self.active is not None:
            self.worker.cancel(self.active.request_id)

    def escape(self) -> None:
        if self.active is not None:
            self.stop()
        else:
            self.cancel_edit()

    def _on_tokens(self, request_id: int, text: str, _count: int) -> None:
        active = self.active
        if active is None or request_id != active.request_id:
            return
        active.text += text
        if active.detached:
            return
        if active.kind == "chat":
            self.transcript.append(text)
        elif active.kind == "task":
            self.tasks.append_output(text)
        else:
            self._notebook_cursor.insertText(text)

    def _on_finished(self, request_id: int, done: dict) -> None:
        active = self.active
        if active is None or request_id != active.request_id:
            return
        if active.kind == "task":
            self.tasks.set_running(False)
        else:
            self._save_reply(active, done["text"], done["stop_reason"])
        self.active = None
        self.busy.hide()
        if done["stop_reason"] != "cancelled" or done["tokens_per_second"]:
            self.speed_label.setText(f"{done['tokens_per_second']:.1f} tok/s")
        self.ttft_label.setText(f"first token {done['time_to_first_token_ms']:.0f} ms")
        self.context_label.setText(f"context {done['context_tokens']} / {done['context_window']}")
        if done.get("truncated_prompt_tokens"):
            self.statusBar().showMessage(
                f"The conversation is longer than the model's window: its first {done['truncated_prompt_tokens']} "
                "tokens were left out of the prompt.", 8000)
        self._update_buttons()

    def _save_reply(self, active: ActiveRequest, text: str, stop_reason: str) -> None:
        model = self.model_info["name"] if self.model_info else None
        if self.history.conversation(active.conversation_id) is None:
            return  # deleted meanwhile
        if active.kind == "chat":
            content = text.strip()
            if content or stop_reason != "cancelled":
                self.history.add_message(active.conversation_id, "assistant", content, model=model,
                                         settings=active.settings, stop_reason=stop_reason)
            if not active.detached and self.current_id == active.conversation_id:
                self.transcript.render(self.history.messages(active.conversation_id))
        else:
            if active.detached:
                document = self.history.conversation(active.conversation_id).document + text
            else:
                self.notebook.setReadOnly(False)
                document = self.notebook.toPlainText()
            self.history.add_message(active.conversation_id, "assistant", text, model=model,
                                     settings=active.settings, stop_reason=stop_reason, document=document)
        self.refresh_conversations()

    def _on_failed(self, request_id: int, message: str) -> None:
        if self.active is None or request_id != self.active.request_id:
            return
        self.notebook.setReadOnly(False)
        self.tasks.set_running(False)
        self.active = None
        self.busy.hide()
        self.show_banner(f"Generation failed: {message}")
        if self.current_id is not None and self.pages.currentIndex() == 0:
            self.transcript.render(self.history.messages(self.current_id))
        self._update_buttons()

    def _update_buttons(self) -> None:
        generating = self.active is not None
        ready = self.model_info is not None
        self.send_button.setText("Stop" if generating else "Send")
        self.send_button.setToolTip("Esc" if generating else "Enter")
        self.send_button.setEnabled(generating or ready)
        self.continue_button.setText("Stop" if generating else "Continue")
        self.continue_button.setEnabled(generating or ready)
        self.settings_panel.device.setEnabled(not generating)
        self.settings_panel.precision.setEnabled(not generating)
        self.settings_panel.threads.setEnabled(not generating)

    # settings and lifetime

    def toggle_settings(self) -> None:
        self.settings_dock.setVisible(not self.settings_dock.isVisible())

    def _store_settings(self) -> None:
        self.settings_panel.store(self.settings)
        self._save_settings()

    def _device_changed(self) -> None:
        self._store_settings()
        self.load_model()

    def _save_settings(self) -> None:
        try:
            self.settings.save(self.settings_path)
        except OSError as exc:
            self.statusBar().showMessage(f"Settings could not be saved: {exc.strerror}", 8000)

    def show_about(self) -> None:
        from app.version import version

        QMessageBox.about(self, "About gpt2-desktop",
                          f"<b>gpt2-desktop {version()}</b><p>Runs GPT-2-family language models on this computer.</p>")

    def closeEvent(self, event) -> None:
        """Stop a streaming reply, keep what it wrote, and end the engine thread cleanly."""
        self._store_document()
        active = self.active
        if active is not None:
            self.worker.cancel(active.request_id)
            self.worker.finished.disconnect(self._on_finished)
            if active.kind in ("chat", "notebook"):
                self._save_reply(active, active.text, "cancelled")
            self.active = None
        self.settings.window_geometry = bytes(self.saveGeometry().toBase64()).decode()
        self.settings.window_state = bytes(self.saveState().toBase64()).decode()
        self.settings.splitter_state = bytes(self.splitter.saveState().toBase64()).decode()
        self._save_settings()
        self.models.shutdown()
        self.engine_thread.quit()
        self.engine_thread.wait(5000)
        super().closeEvent(event)
