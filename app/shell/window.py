"""The main window: conversations on the left, a chat or notebook in the middle, settings in a dock.

`MainWindow` builds the pages, lays them out and connects them: to the open conversation
(app.chat.conversations), to the engine's answers (app.shell.replies), to the model in use
(app.shell.model_in_use) and to the menus (app.shell.actions' table). What it keeps itself is the window's
own: the tabs and dock, the saved layout, the text size and colouring, and writing the settings file.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from PySide6.QtCore import QByteArray, QSize, Qt
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (QDockWidget, QFrame, QMainWindow, QMessageBox, QScrollArea, QSplitter,
                               QStackedWidget, QTabWidget, QVBoxLayout, QWidget)

from app.chat.conversations import ConversationController
from app.chat.dialogs import ConversationDialogs
from app.chat.page import ChatPage
from app.chat.sidebar import Sidebar
from app.engine_link.requests import ActiveRequest, RequestController
from app.engine_link.worker import ModelInfo
from app.finetune.view import FinetuneView
from app.history.store import History
from app.models.view import ModelsView
from app.notice import NOT_SAVED
from app.notebook.page import NotebookPage
from app.probe.analysis_view import AnalysisView
from app.probe.probabilities import COLOUR_BLIND, GLTR, PROBABILITY, RANKS, Colouring
from app.server.panel import ServerPanel
from app.settings import AppSettings
from app.shell.actions import build_menus
from app.shell.appearance import apply_font, next_size, sized_font
from app.shell.banner import Banner
from app.shell.model_in_use import ModelInUse
from app.shell.replies import Replies
from app.shell.settings_panel import SettingsPanel
from app.shell.status_bar import StatusBar
from app.tasks.view import TasksView
from engine.core.device import cuda_available
from engine.core.tokenizer import GPT2Tokenizer
from engine.errors import EngineError, StorageError
from engine.paths import user_templates_dir

CHAT_MIN_WIDTH = 400  # the chat column, so that the window works from 800x500 up with the settings shown
DOCK_WIDTH = (150, 300)  # the settings dock's narrowest and widest (its fields shrink to fit)


class MainWindow(QMainWindow):
    def __init__(self, history: History, settings: AppSettings, settings_path: Path | None,
                 history_problem: str | None = None, settings_problem: str | None = None):
        """`settings_path` None: the settings are not saved this session (a file there could not be used, nor
        moved aside). `history_problem`, `settings_problem`: why the history is one in memory, what was wrong
        with the settings file (app.main: history.open_history, AppSettings.open), for the banner."""
        super().__init__()
        self.history = history
        self.settings = settings
        self.settings_path = settings_path
        self._hub_checked = False
        self.setWindowTitle("gpt2-desktop")
        self.requests = RequestController(self)
        self._build_widgets()
        self.chat.set_welcome(not self.settings.welcome_dismissed)
        if self.settings.text_size:
            apply_font(self, sized_font(self.settings.text_size))
        self._connect()
        self._build_menus()
        self._restore_layout()
        self.colouring_changed(save=False)
        if history_problem:
            self.banner.show_message(history_problem + NOT_SAVED, kind="history")
        if settings_problem:
            self.banner.show_message(settings_problem, kind="settings")
        self.conversations.refresh()
        self.conversations.start(self.settings.mode)  # a person opens the app and types: it lands in the message box
        self.model.start()  # the open conversation's own model, else the one used last
        if self.finetune.resume_offer and self.banner.isHidden():  # the app was closed mid-training
            self.banner.show_message(self.finetune.resume_offer, kind="finetune")  # said until the run is taken up
        self.finetune.offer_taken.connect(lambda: self.banner.hide_kind("finetune"))

    @property
    def model_info(self) -> ModelInfo | None:
        """The loaded model; None while one is loading or when none could be."""
        return self.requests.model

    @property
    def active(self) -> ActiveRequest | None:
        """The request the engine is answering, if any."""
        return self.requests.active

    # construction

    def _build_widgets(self) -> None:
        self.sidebar, self.banner = Sidebar(), Banner()
        self.chat, self.notebook, self.pages = ChatPage(), NotebookPage(), QStackedWidget()
        self.pages.addWidget(self.chat)
        self.pages.addWidget(self.notebook)
        self.conversations = ConversationController(self.history, self.settings, self.requests, self.sidebar,
                                                    self.chat, self.notebook, self.pages, self)
        self.pages.setMinimumWidth(CHAT_MIN_WIDTH)  # the dock and the list give way first
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 6, 4, 6)
        right_layout.addWidget(self.banner)
        right_layout.addWidget(self.pages, 1)
        self.splitter = QSplitter()
        self.splitter.addWidget(self.sidebar)
        self.splitter.addWidget(right)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setHandleWidth(4)  # (with larger text every pixel counts at 800 wide)
        self.splitter.setCollapsible(1, False)
        self.splitter.setSizes([240, 760])
        self.tasks = TasksView(user_templates_dir())
        self.models = ModelsView()
        self.models.set_servers(self.settings.servers)
        self.tabs = QTabWidget(documentMode=True)
        self.tabs.addTab(self.splitter, "Conversations")
        self.tabs.addTab(self.tasks, "Tasks")
        self.tabs.addTab(self.models, "Models")
        self.server = ServerPanel()
        self.tabs.addTab(self.server, "Server")
        self.analysis = AnalysisView()
        self.tabs.addTab(self.analysis, "Analyse")
        self.finetune = FinetuneView()
        self.tabs.addTab(self.finetune, "Fine-tune")
        self.setCentralWidget(self.tabs)

        self.settings_panel = SettingsPanel(self.settings, cuda_available(), os.cpu_count() or 1)
        self.settings_dock = QDockWidget("Settings", self)
        self.settings_dock.setObjectName("settings")
        scroll = QScrollArea(widgetResizable=True, frameShape=QFrame.NoFrame)  # a low window scrolls the fields
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        scroll.setWidget(self.settings_panel)
        scroll.setMinimumWidth(DOCK_WIDTH[0])
        scroll.setMaximumWidth(DOCK_WIDTH[1])
        self.settings_dock.setWidget(scroll)
        self.addDockWidget(Qt.RightDockWidgetArea, self.settings_dock)
        self.settings_dock.hide()
        self.status_bar = StatusBar()
        self.setStatusBar(self.status_bar)
        self.model = ModelInUse(self.settings, self.requests, self.models, self._save_settings, self)
        self.model.names.connect(self.chat.set_model_choices)  # before the pages' own signals are connected
        self.model.names.connect(self.notebook.set_model_choices)
        self.model.list_names()
        self.replies = Replies(self.requests, self.settings, self.conversations, self.chat, self.notebook, self.tasks,
                               self.analysis, self.status_bar, self)
        self.dialogs = ConversationDialogs(self.history, self.conversations, self.settings, self._save_settings, self)

    def _connect(self) -> None:
        conversations, requests, model, replies = self.conversations, self.requests, self.model, self.replies
        requests.loading.connect(self.status_bar.show_loading)
        requests.loaded.connect(model.on_loaded)
        requests.load_failed.connect(model.on_load_failed)
        for room in (conversations, model, replies, self.dialogs):
            room.problem.connect(self.banner.report)  # every room's failures reach the banner this one way
        for room in (conversations, model, self.dialogs):
            room.status.connect(self.status_bar.showMessage)
        model.ready.connect(self._model_ready)
        model.kept.connect(self._model_kept)
        model.changed.connect(self._update_buttons)
        replies.changed.connect(self._update_buttons)
        replies.ended.connect(model.reply_ended)
        conversations.changed.connect(self._conversation_changed)
        conversations.model_wanted.connect(model.conversation_model)
        self.sidebar.selected.connect(self._selected_in_list)
        self.sidebar.typed.connect(self._typed_in_list)
        self.sidebar.new_chat.connect(conversations.new_chat)
        self.sidebar.new_notebook.connect(conversations.new_notebook)
        self.sidebar.search_changed.connect(lambda _text: conversations.refresh())
        self.sidebar.rename_requested.connect(self.dialogs.ask_rename)
        self.sidebar.delete_requested.connect(self.dialogs.ask_delete)
        self.banner.open_model_requested.connect(model.choose_folder)
        self.chat.send_requested.connect(conversations.send)
        self.chat.stop_requested.connect(requests.stop)
        self.chat.message_action.connect(conversations.message_action)
        self.chat.edit_last_requested.connect(conversations.edit_last)
        self.chat.alternative_picked.connect(conversations.pick_alternative)
        self.notebook.alternative_picked.connect(conversations.pick_notebook_alternative)
        self.chat.draft_due.connect(conversations.store_draft)
        self.chat.count_due.connect(conversations.count_draft)
        self.chat.model_chosen.connect(conversations.choose_model)
        self.chat.preset_chosen.connect(conversations.choose_preset)
        self.chat.preamble_changed.connect(conversations.store_preamble)
        self.notebook.model_chosen.connect(lambda name: conversations.choose_model(name, "notebook"))
        self.notebook.preset_chosen.connect(lambda name: conversations.choose_preset(name, "notebook"))
        self.chat.models_requested.connect(lambda: self.tabs.setCurrentWidget(self.models))
        self.chat.welcome_dismissed.connect(self._welcome_dismissed)
        self.notebook.continue_requested.connect(conversations.continue_notebook)
        self.notebook.stop_requested.connect(requests.stop)
        self.notebook.autosave_due.connect(conversations.store_document)
        self.notebook.analyse_requested.connect(self.analyse_text)
        self.notebook.suggest_requested.connect(replies.suggest)
        self.analysis.analyse_requested.connect(replies.run_analysis)
        self.analysis.cancel_requested.connect(requests.stop)
        self.tasks.run_generate.connect(replies.run_task)
        self.tasks.run_choose.connect(replies.run_choice)
        self.tasks.stop_requested.connect(requests.stop)
        self.tasks.open_in_notebook.connect(self.notebook_from_text)
        self.tasks.use_in_chat.connect(self.chat_from_text)
        self.models.use_requested.connect(self.use_model_name)
        self.models.servers_changed.connect(model.servers_changed)
        self.models.models_removed.connect(conversations.forget_models)  # no conversation keeps them as its own
        self.models.models_removed.connect(model.removed)
        self.finetune.models_changed.connect(model.trained)
        self.finetune.use_requested.connect(self.use_model_name)
        self.tabs.currentChanged.connect(self._tab_changed)
        self.settings_panel.sampling_changed.connect(self._store_settings)
        self.settings_panel.device_changed.connect(self._device_changed)

    def _build_menus(self) -> None:
        build_menus(self)  # from app.shell.actions' table, which Help > Keyboard shortcuts lists too
        for act, on in ((self.probabilities_action, self.settings.probabilities),
                        (self.by_probability_action, self.settings.colour_by == PROBABILITY),
                        (self.colour_blind_action, self.settings.colour_palette == COLOUR_BLIND)):
            act.setChecked(on)
        QShortcut(QKeySequence("Escape"), self, activated=self.escape)

    def _restore_layout(self) -> None:
        if self.settings.window_geometry:
            self.restoreGeometry(QByteArray.fromBase64(self.settings.window_geometry.encode()))
        else:
            self.resize(QSize(1100, 720))
        if self.settings.window_state:
            self.restoreState(QByteArray.fromBase64(self.settings.window_state.encode()))
        if self.settings.splitter_state:
            self.splitter.restoreState(QByteArray.fromBase64(self.settings.splitter_state.encode()))

    # wiring

    def use_model_name(self, name: str) -> None:
        """From the Models and Fine-tune views: a model name ("" for the embedded one) becomes the active model."""
        self.model.use(name or None)
        self.tabs.setCurrentIndex(0)

    def _model_ready(self, info: ModelInfo) -> None:
        """A model loaded: every page that shows it or counts with its tokenizer follows."""
        self.status_bar.show_model(info)
        self.chat.set_welcome_model(info.name, self.model.is_embedded(), info.server)
        self.server.set_model(self.model.loaded, info.precision)
        try:  # a remote model's tokenizer is on its server: no token counts here
            tokenizer = None if info.server else GPT2Tokenizer.from_folder(info.folder)
        except EngineError:
            tokenizer = None
        self.tasks.set_model(tokenizer, info.context_window)
        self.settings_panel.set_model(info.name, info.context_window)
        self.conversations.tokenizer = tokenizer
        self.conversations.count_draft()
        self.replies.show_context()

    def _model_kept(self, current: ModelInfo | None) -> None:
        """A model failed to load: the one still in use is shown again (None: none is)."""
        if current is None:
            self.status_bar.show_no_model()
        else:
            self.status_bar.show_model(current)
            self.replies.show_context()

    def _tab_changed(self, index: int) -> None:
        if self.tabs.widget(index) is self.splitter:
            self.model.list_names()  # a model may have been downloaded, imported or removed meanwhile
        if self.tabs.widget(index) is self.finetune and self.finetune.state not in self.finetune.BUSY:
            self.finetune.refresh_bases()
        if self.tabs.widget(index) is self.models and not self._hub_checked:
            self._hub_checked = True
            self.models.check_hub()

    def _selected_in_list(self, conversation_id: int) -> None:
        # The keyboard stays in the list (Delete, F2, the arrows work there); what is typed goes on to the page.
        self.conversations.open(conversation_id, focus=not self.sidebar.list.hasFocus())

    def _typed_in_list(self, text: str) -> None:
        self.conversations.focus_page()
        target = self.chat.composer if self.pages.currentWidget() is self.chat else self.notebook.editor
        if not target.isReadOnly():
            target.insertPlainText(text)

    def _welcome_dismissed(self) -> None:
        self.settings.welcome_dismissed = True
        self._save_settings()

    def _conversation_changed(self) -> None:
        self.banner.keep_for(self.conversations.current_id)  # a reply that failed elsewhere is not this one's
        self.status_bar.clear_reply()
        self.replies.show_context()
        self.conversations.count_draft()

    def notebook_from_text(self, text: str) -> None:
        self.tabs.setCurrentIndex(0)
        self.conversations.new_notebook()
        self.notebook.set_document(text)
        self.conversations.store_document()

    def chat_from_text(self, text: str) -> None:
        self.tabs.setCurrentIndex(0)
        self.conversations.new_chat()
        self.chat.set_draft(text)

    def analyse_text(self, text: str) -> None:
        """Open the Analyse tab on `text` and analyse it (the notebook's Analyse)."""
        self.tabs.setCurrentWidget(self.analysis)
        self.analysis.set_text(text)
        self.replies.run_analysis(text)

    def escape(self) -> None:
        if self.active is not None:
            self.requests.stop()
        else:
            self.chat.cancel_edit()

    def _update_buttons(self) -> None:
        generating, ready = self.active is not None, self.model_info is not None
        self.chat.set_state(generating, ready)
        self.notebook.set_state(generating, ready)
        self.notebook.analyse_button.setEnabled(ready and not generating)
        self.settings_panel.set_engine_editable(not generating)

    # settings and lifetime

    def change_text_size(self, step: int) -> None:
        """Ctrl+= / Ctrl+- make all the window's text a point larger or smaller (0: the system's size again)."""
        self.settings.text_size = next_size(self.settings.text_size, step) if step else 0
        apply_font(self, sized_font(self.settings.text_size))
        self._save_settings()
        if step:
            self.status_bar.showMessage(f"Text size {self.font().pointSize()} pt (Ctrl+0: as the system's)", 3000)

    def set_probabilities(self, on: bool, by: str | None = None, palette: str | None = None) -> None:
        """View > Probabilities (Ctrl+Shift+P): colour replies and continuations by what the model predicted."""
        self.probabilities_action.setChecked(on)
        if by is not None:
            self.by_probability_action.setChecked(by == PROBABILITY)
        if palette is not None:
            self.colour_blind_action.setChecked(palette == COLOUR_BLIND)
        self.colouring_changed()

    def colouring_changed(self, _checked: bool = False, save: bool = True) -> None:
        self.settings.probabilities = self.probabilities_action.isChecked()
        self.settings.colour_by = PROBABILITY if self.by_probability_action.isChecked() else RANKS
        self.settings.colour_palette = COLOUR_BLIND if self.colour_blind_action.isChecked() else GLTR
        colouring = Colouring(self.settings.colour_by, self.settings.colour_palette)
        self.conversations.set_colouring(colouring if self.settings.probabilities else None)
        self.analysis.set_colouring(colouring)
        if save:
            self._save_settings()

    def toggle_settings(self) -> None:
        """Ctrl+, shows the settings with the keyboard in their first field, or hides them and it goes back."""
        shown = not self.settings_dock.isVisible()
        self.settings_dock.setVisible(shown)
        if shown:
            self.settings_panel.focus_first()
        elif self.tabs.currentWidget() is self.splitter:
            self.conversations.focus_page()

    def show_analysis(self) -> None:
        """Ctrl+5: the Analyse tab, with the keyboard in its text box."""
        self.tabs.setCurrentWidget(self.analysis)
        self.analysis.input.setFocus()

    def _store_settings(self) -> None:
        self.settings_panel.store(self.settings)
        self._save_settings()

    def _device_changed(self) -> None:
        self._store_settings()
        self.model.reload()

    def _save_settings(self, at_exit: bool = False) -> None:
        """Write the settings file; if the disk refuses, say so in the banner (at exit: one line on stderr)."""
        if self.settings_path is None:  # a file there could not be used nor moved aside: the banner said so
            return
        try:
            self.settings.save(self.settings_path)
        except StorageError as exc:
            if at_exit:
                print(f"gpt2-desktop: {exc}", file=sys.stderr)
            else:
                self.banner.show_message(f"{exc} The settings changed meanwhile apply until you quit.",
                                         kind="saving")
            return
        self.banner.hide_kind("saving")

    def show_tab(self, page: QWidget) -> None:
        """Bring a tab to the front, with the keyboard in it (its `focus_first`, where it has one)."""
        self.tabs.setCurrentWidget(page)
        focus = getattr(page, "focus_first", None)
        if focus is not None:
            focus()
        elif page is self.splitter:
            self.conversations.focus_page()

    def show_shortcuts(self) -> None:
        from app.shell.shortcuts_page import ShortcutsPage

        ShortcutsPage(self).exec()

    def show_about(self) -> None:
        from app.version import version

        QMessageBox.about(self, "About gpt2-desktop",
                          f"<b>gpt2-desktop {version()}</b><p>Runs GPT-2-family language models on this computer.</p>")

    def closeEvent(self, event) -> None:
        """Stop a streaming reply, keep what it wrote, and end the engine thread cleanly (a fine-tuning run under
        way: once the person has said to quit)."""
        if not self.finetune.may_close():
            event.ignore()
            return
        self.conversations.store_document()
        self.conversations.keep_unsent()
        self.chat.stop_counting()
        active = self.requests.shutdown()
        if active is not None and active.kind in ("chat", "notebook"):
            self.conversations.save_reply(active, active.text, "cancelled")
        self.settings.window_geometry = bytes(self.saveGeometry().toBase64()).decode()
        self.settings.window_state = bytes(self.saveState().toBase64()).decode()
        self.settings.splitter_state = bytes(self.splitter.saveState().toBase64()).decode()
        self._save_settings(at_exit=True)
        self.models.shutdown()
        self.server.shutdown()
        self.analysis.shutdown()
        self.finetune.shutdown()  # a run pauses (checkpoint saved); the next start offers to resume it
        super().closeEvent(event)
