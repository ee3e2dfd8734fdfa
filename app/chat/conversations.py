"""The open conversation: which one it is, the page that shows it, and what is written to the history.

A chat or notebook request writes into the conversation that was open when it began. If the user
opens another conversation meanwhile, the request is detached: it goes on writing into its own
conversation, unseen, and is saved there when it ends; opening that conversation again shows it
streaming. Deleting its conversation stops it.

The history can fail under it (a full or read-only disk, a page found damaged): its methods then raise a
HistoryError, which each of the controller's slots turns into the `problem` signal (for the window's
banner) instead of an error out of the event loop. A history found damaged goes on, empty, in memory
(History.detached): the conversation shown then is gone, and a reply being written is no longer saved.

ConversationController is this module's (which conversation is open, opened, made, renamed or deleted; its own
model, preset and preamble; the kept token data and the token counts shown; the unsent message kept) with three
parts it mixes in: app.chat.reply_actions (send, and regenerate, continue, retry, copy, edit and the versions of a
reply), app.chat.notebook_actions (the notebook's text kept and continued) and app.chat.saving (what a request
wrote, saved to the history). What a request asks the engine is app.chat.prompts'.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QStackedWidget

from app.chat.notebook_actions import NotebookActions
from app.chat.page import ChatPage
from app.chat.prompts import prompt_tokens, turns_of
from app.chat.reply_actions import ReplyActions
from app.chat.reporting import reporting
from app.chat.saving import ReplySaving
from app.chat.sidebar import Sidebar
from app.chat.titles import NEW_CHAT, NOTEBOOK_TITLE, title_from
from app.engine_link.requests import RequestController
from app.history.errors import HistoryError
from app.history.records import Conversation, Message
from app.history.store import FIRST, History
from app.notebook.page import Continuation, NotebookPage
from app.notice import NOT_SAVED, Problem
from app.probe.probabilities import Colouring
from app.probe.token_data import ReplyTokens
from app.settings import AppSettings
from engine.core.tokenizer import GPT2Tokenizer
from engine.inference.chat import Turn


class ConversationController(ReplyActions, NotebookActions, ReplySaving, QObject):
    status = Signal(str, int)  # a message for the status bar, shown for so many milliseconds
    changed = Signal()  # another conversation is open (or none), or the open one has a new message
    model_wanted = Signal(str)  # the open conversation is written with this model (its name; "": none of its own)
    problem = Signal(object)  # app.notice.Problem: the history failed (a HistoryError's message)

    def __init__(self, history: History, settings: AppSettings, requests: RequestController, sidebar: Sidebar,
                 chat: ChatPage, notebook: NotebookPage, pages: QStackedWidget, parent: QObject | None = None):
        super().__init__(parent)
        self.history, self.settings, self.requests = history, settings, requests
        self.sidebar, self.chat, self.notebook, self.pages = sidebar, chat, notebook, pages  # pages: chat, notebook
        self.current_id: int | None = None
        self.tokenizer: GPT2Tokenizer | None = None  # the loaded model's, to count a conversation's tokens
        self.colouring: Colouring | None = None  # replies coloured by what the model predicted (None: plain)
        self._decoded: dict[int, ReplyTokens | None] = {}  # kept tokens read from the history, by message id
        # A remote model's tokens are counted by its server: what a reply's prompt and the reply took, by the
        # reply's message id; a notebook's, with the text they made, by conversation (this session's only).
        self._counted: dict[int, int] = {}
        self._counted_text: dict[int, tuple[str, int]] = {}
        for signal in (requests.started, requests.finished, requests.failed):
            signal.connect(self._show_writing)

    @reporting
    def current(self) -> Conversation | None:
        return self._current()

    def _current(self) -> Conversation | None:
        return self.history.conversation(self.current_id) if self.current_id is not None else None

    def history_failed(self, exc: HistoryError) -> None:
        """Say that the history failed; one found damaged is now empty, in memory, and the window shows that."""
        if self.history.detached is not None:
            active = self.requests.active
            if active is not None and active.conversation_id is not None:
                active.conversation_id, active.detached = None, True  # its conversation is gone: not saved
            self.current_id = None
            self.chat.show_messages([])
            self.notebook.set_document("")
            self.refresh()
            self.changed.emit()
        self.problem.emit(Problem(str(exc) + (NOT_SAVED if self.history.detached is not None else ""), "history"))

    @reporting
    def start(self, mode: str) -> None:
        """At start: open the most recent conversation, or show the page last used, empty, to type in."""
        conversations = self.history.conversations()
        if conversations:
            self.open(conversations[0].id)
        else:
            self.show_mode(mode)
            self.focus_page()

    @reporting
    def context_tokens(self) -> int | None:
        """Tokens of the prompt the open conversation makes for the loaded model (None: nothing to count)."""
        conv, model = self._current(), self.requests.model
        if conv is not None and model is not None and model.server:  # the last reply shown, as its server counted
            if conv.mode == "chat":
                return self._counted.get(conv.leaf_id)
            document, tokens = self._counted_text.get(conv.id, (None, None))
            return tokens if document == conv.document else None
        if conv is None or model is None or self.tokenizer is None:
            return None
        if conv.mode != "chat":
            return len(self.tokenizer.encode(conv.document))
        messages = self.history.messages(conv.id)
        if not messages:
            return 0
        return prompt_tokens(self.tokenizer, turns_of(conv, messages), model.chat_style)

    @reporting
    def count_draft(self) -> None:
        """The live count under the message box: the message's tokens, and the prompt the conversation would
        make with it, against the model's window."""
        model = self.requests.model
        if model is not None and model.server:  # no tokenizer here: what the server counted at the last reply
            self.chat.show_count(None, self.context_tokens(), model.context_window)
            return
        if model is None or self.tokenizer is None:
            self.chat.show_count(None)
            return
        draft = self.chat.draft()
        messages = self.history.messages(self.current_id) if self.current_id is not None else []
        if self.chat.editing_id is not None:  # an edit replaces its message and what follows
            messages = messages[:next((i for i, m in enumerate(messages) if m.id == self.chat.editing_id),
                                      len(messages))]
        turns = turns_of(self._current(), messages) + ([Turn("user", draft)] if draft.strip() else [])
        total = prompt_tokens(self.tokenizer, turns, model.chat_style) if turns else 0
        self.chat.show_count(len(self.tokenizer.encode(draft)), total, model.context_window)

    # which conversation

    @reporting
    def refresh(self) -> None:
        """Refill the sidebar (what the search matches, most recent first, with where it matched)."""
        search = self.sidebar.search_text()
        self.sidebar.show_conversations(self.history.conversations(search), self.current_id,
                                        self.history.matches(search) if search.strip() else None)

    def _show_writing(self, *_request) -> None:
        """A request began or ended: the list marks the conversation the model writes in, if any."""
        active = self.requests.active
        writing = active is not None and active.kind in ("chat", "notebook")
        self.sidebar.set_writing(active.conversation_id if writing else None)

    @reporting
    def open(self, conversation_id: int, focus: bool = True, collapse: bool = True) -> None:
        """Show a conversation; `focus` puts the keyboard in its message box or notebook; `collapse` closes the
        preamble box (not when the chat is made for what is being written there)."""
        if conversation_id == self.current_id:
            return
        self.store_document()
        self.store_draft()
        self.chat.keep_options()
        active = self.requests.active
        if active is not None and active.conversation_id is not None:
            active.detached = True  # it goes on in its own conversation, unseen
        self.chat.cancel_edit()
        conv = self.history.conversation(conversation_id)
        if conv is None:
            return
        self.current_id = conv.id
        self.notebook.end_continuation()
        self.show_mode(conv.mode)
        streaming = active is not None and active.conversation_id == conv.id
        self.chat.set_draft(conv.draft if conv.mode == "chat" else "", focus=False)
        self.chat.show_options(conv.model, conv.preset, conv.preamble, collapse)
        if conv.mode == "chat":
            messages = self.history.messages(conv.id)
            if any(m.id == conv.edit_id and m.role == "user" for m in messages):  # an edit left half-written
                self.chat.start_edit(conv.edit_id, conv.edit_text, focus=False)
            self.show_messages(messages, to_end=True, writing=streaming)
            if streaming:  # the reply that went on meanwhile: shown again as it streams
                self.chat.begin_stream(self._writer())
                self.chat.append((active.prefix + active.text).lstrip())
        else:
            self.notebook.show_options(conv.model, conv.preset)
            record = self.history.record(conv.id)  # every version: Ctrl+Z may have brought an older one back
            replies = [m for m in record.messages if m.role == "assistant"] if record is not None else []
            kept = self.token_data([m.id for m in replies])
            continuations = [Continuation(m.content, m.id, kept.get(m.id), m.parent_id or FIRST) for m in replies]
            self.notebook.set_document(conv.document + (active.text if streaming else ""),
                                       continuations + ([Continuation(active.text)] if streaming else []))
            if streaming:
                self.notebook.begin_continuation()
        if streaming:
            active.detached = False
        self.chat.draft_kept()
        if focus:
            self.focus_page()
        self.refresh()
        self.changed.emit()
        self.model_wanted.emit(conv.model or "")

    @reporting
    def next_conversation(self) -> None:
        """Open the conversation below the open one in the list."""
        self._open_neighbour(1)

    @reporting
    def previous_conversation(self) -> None:
        """Open the conversation above the open one in the list."""
        self._open_neighbour(-1)

    def _open_neighbour(self, step: int) -> None:
        target = self.sidebar.neighbour(self.current_id, step)
        if target is not None:
            self.open(target)

    # the open chat's own model, preset and preamble

    def _set_options(self, mode: str = "chat", **options) -> None:
        """Keep options with the open chat (or notebook); with none open, a new one is made with them (and
        opened: a notebook with what was written on its page)."""
        if self.current_id is None or self._current().mode != mode:
            made = self.history.create_conversation(NEW_CHAT if mode == "chat" else NOTEBOOK_TITLE, mode)
            self.history.set_options(made, **options)
            if mode == "notebook":
                self.history.set_document(made, self.notebook.document())
                self._title_notebook(made, self.notebook.document())
            self.open(made, focus=False, collapse=False)
        else:
            self.history.set_options(self.current_id, **options)

    @reporting
    def choose_model(self, name: str, mode: str = "chat") -> None:
        """The open chat (or notebook, `mode`) is written with `name` from now on ("": with whatever model is in
        use)."""
        self._set_options(mode, model=name or None)
        if name:
            self.model_wanted.emit(name)

    @reporting
    def choose_preset(self, name: str, mode: str = "chat") -> None:
        self._set_options(mode, preset=name or None)
        self.status.emit(f"This {'notebook' if mode == 'notebook' else 'conversation'} samples with "
                         f"{name or 'the settings panel'}.", 3000)

    @reporting
    def forget_models(self, names: list[str]) -> None:
        """Models that are gone (removed or forgotten in Models): the conversations written with them keep no model
        of their own any more (the one in use writes there)."""
        for conv in self.history.conversations():
            if conv.model in names:
                self.history.set_options(conv.id, model=None)
        conv = self._current()
        if conv is not None and conv.mode == "notebook":
            self.notebook.show_options(conv.model, conv.preset)
        elif conv is not None:
            self.chat.show_options(conv.model, conv.preset, conv.preamble, collapse=False)

    @reporting
    def store_preamble(self, text: str) -> None:
        conv = self._current()
        if conv is None and not text.strip() or conv is not None and conv.preamble == text:
            return
        self._set_options(preamble=text)
        self.count_draft()

    def show_mode(self, mode: str) -> None:
        """Show the chat or the notebook page (and remember which, for the next start)."""
        self.pages.setCurrentWidget(self.chat if mode == "chat" else self.notebook)
        self.settings.mode = mode

    def focus_page(self) -> None:
        """Put the keyboard focus where a person writes on the page shown: the message box or the notebook."""
        if self.pages.currentWidget() is self.chat:
            self.chat.focus_composer()
        else:
            self.notebook.focus_editor()

    @reporting
    def new_chat(self) -> None:
        self._new(NEW_CHAT, "chat")

    @reporting
    def new_notebook(self) -> None:
        self._new(NOTEBOOK_TITLE, "notebook")

    def _new(self, title: str, mode: str) -> None:
        """Open a new, empty chat or notebook: one still empty from before if there is one (Ctrl+N twice makes
        one, not two)."""
        self.sidebar.clear_search()
        self.store_document()
        self.keep_unsent()  # (typed with no conversation open: kept in a chat of its own, not lost)
        empty = next((c.id for c in self.history.conversations() if c.mode == mode and c.title == title
                      and c.leaf_id is None and not (c.draft + c.edit_text + c.preamble + c.document).strip()), None)
        self.open(empty if empty is not None else self.history.create_conversation(title, mode))
        self.focus_page()

    @reporting
    def rename(self, conversation_id: int, title: str) -> None:
        self.history.rename_conversation(conversation_id, title)
        self.refresh()

    @reporting
    def delete(self, conversation_id: int) -> None:
        active = self.requests.active
        if active is not None and active.conversation_id == conversation_id:
            self.requests.stop()
            active.detached = True
        self.history.delete_conversation(conversation_id)
        if conversation_id == self.current_id:
            self.current_id = None
            self.chat.show_messages([])
            remaining = self.history.conversations()
            if remaining:
                self.open(remaining[0].id)
            else:
                self.changed.emit()
        self.refresh()

    def _ready(self) -> bool:
        """Whether a new reply can start now; if not, says why in the status bar (and where the model is
        writing, if that is elsewhere)."""
        problem = self.requests.why_not_ready()
        active = self.requests.active
        if problem and active is not None and active.conversation_id not in (None, self.current_id):
            elsewhere = self.history.conversation(active.conversation_id)
            if elsewhere is not None:
                problem = (f"The model is still writing in “{elsewhere.title}” (✎ in the list); wait for it, or "
                           "stop it with Esc.")
        if problem:
            self.status.emit(problem, 8000)
        return problem is None

    # the chat

    def _writer(self) -> str:
        """The name of the model writing the reply (the loaded one; a remote one with its server)."""
        return self.requests.model.writer if self.requests.model else "Assistant"

    @reporting
    def show_messages(self, messages: list[Message], to_end: bool = False, writing: bool = False, **place) -> None:
        """Show a thread, with `‹ 2/3 ›` beside each turn that has versions (`to_end`: at its end), its replies
        coloured by their kept tokens while the colouring is on (read once, never recomputed). `writing`: a
        reply to it is being written; `place`: ChatPage.show_messages' `stay` and `focus_links`."""
        data = self.token_data([m.id for m in messages if m.role == "assistant"]) if self.colouring else None
        self.chat.show_messages(messages, self.history.version_places(messages), to_end, data, writing, **place)

    def token_data(self, message_ids: list[int]) -> dict[int, ReplyTokens]:
        """The kept tokens of those messages that have them (decoded once per message)."""
        missing = [i for i in message_ids if i not in self._decoded]
        if missing:
            blobs = self.history.tokens(missing)
            for message_id in missing:
                self._decoded[message_id] = ReplyTokens.decode(blobs[message_id]) if message_id in blobs else None
        return {i: self._decoded[i] for i in message_ids if self._decoded.get(i) is not None}

    @reporting
    def set_colouring(self, colouring: Colouring | None) -> None:
        """Colour replies and continuations by what the model predicted (None: as before), and show it now."""
        self.colouring = colouring
        self.chat.set_colouring(colouring)
        self.notebook.set_colouring(colouring)
        if self.current_id is not None and self.pages.currentWidget() is self.chat and not self._streaming_here():
            self.show_messages(self.history.messages(self.current_id))

    def _streaming_here(self) -> bool:
        active = self.requests.active
        return active is not None and active.conversation_id == self.current_id and active.kind == "chat"

    @reporting
    def store_draft(self) -> None:
        """Keep the open chat's unsent message with it, and an edit of an earlier message in progress (so they
        survive switching and restarting)."""
        self.chat.draft_kept()
        conv = self._current()
        if conv is None or conv.mode != "chat":
            return
        edit_id, edit_text = self.chat.edit_in_progress() or (None, "")
        if (conv.draft, conv.edit_id, conv.edit_text) != (self.chat.unsent(), edit_id, edit_text):
            self.history.set_draft(conv.id, self.chat.unsent(), edit_id, edit_text)

    @reporting
    def keep_unsent(self) -> None:
        """Before closing: keep the unsent message, in a new chat if none is open."""
        if self.current_id is None and self.chat.unsent().strip():
            self.current_id = self.history.create_conversation(title_from(self.chat.unsent()), "chat")
        self.store_draft()
