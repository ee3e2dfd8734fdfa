"""The open conversation: which one it is, the page that shows it, and what is written to the history.

A chat or notebook request writes into the conversation that was open when it began. If the user
opens another conversation meanwhile, the request is detached: it goes on writing into its own
conversation, unseen, and is saved there when it ends; opening that conversation again shows it
streaming. Deleting its conversation stops it.

The history can fail under it (a full or read-only disk, a page found damaged): its methods then raise a
HistoryError, which each of the controller's slots turns into the `problem` signal (for the window's
banner) instead of an error out of the event loop. A history found damaged goes on, empty, in memory
(History.detached): the conversation shown then is gone, and a reply being written is no longer saved.
"""

from __future__ import annotations

import functools

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QStackedWidget

from app.chat.page import ChatPage
from app.chat.presets import sampling_for
from app.chat.sidebar import Sidebar
from app.engine_link.requests import ActiveRequest, RequestController
from app.history.errors import HistoryError
from app.history.records import Conversation, Message
from app.history.store import FIRST, History
from app.notebook.page import Continuation, NotebookPage
from app.probe.probabilities import Colouring
from app.probe.token_data import TOP, Choice, ReplyTokens
from app.settings import AppSettings
from engine.core.tokenizer import GPT2Tokenizer
from engine.inference.chat import Turn, format_chat

TITLE_LENGTH = 48
NOTEBOOK_TITLE = "Notebook"  # a new notebook's, until it has words to be named after


def _reporting(method):
    """A slot whose HistoryError becomes the controller's `problem` signal (what it did before stays done)."""
    @functools.wraps(method)
    def slot(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except HistoryError as exc:
            self.history_failed(exc)
            return None
    return slot


def title_from(text: str) -> str:
    """A conversation's title from its first message: one line, at most TITLE_LENGTH characters."""
    line = " ".join(text.split())
    return line if len(line) <= TITLE_LENGTH else line[: TITLE_LENGTH - 1] + "…"


class ConversationController(QObject):
    status = Signal(str, int)  # a message for the status bar, shown for so many milliseconds
    changed = Signal()  # another conversation is open (or none), or the open one has a new message
    model_wanted = Signal(str)  # the open conversation is written with this model (its name; "": none of its own)
    problem = Signal(str)  # the history failed (app.history.errors.HistoryError's message)

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

    @_reporting
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
        self.problem.emit(str(exc))

    @_reporting
    def start(self, mode: str) -> None:
        """At start: open the most recent conversation, or show the page last used, empty, to type in."""
        conversations = self.history.conversations()
        if conversations:
            self.open(conversations[0].id)
        else:
            self.show_mode(mode)
            self.focus_page()

    @_reporting
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
        return len(self.tokenizer.encode(format_chat(self._turns(conv, messages), model.chat_style).text))

    @staticmethod
    def _turns(conv: Conversation | None, messages: list[Message]) -> list[Turn]:
        """A conversation as turns for the prompt: its preamble (a system turn) first, if it has one."""
        preamble = [Turn("system", conv.preamble)] if conv is not None and conv.preamble.strip() else []
        return preamble + [Turn(m.role, m.content) for m in messages]

    @_reporting
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
        turns = self._turns(self._current(), messages) + ([Turn("user", draft)] if draft.strip() else [])
        total = len(self.tokenizer.encode(format_chat(turns, model.chat_style).text)) if turns else 0
        self.chat.show_count(len(self.tokenizer.encode(draft)), total, model.context_window)

    # which conversation

    @_reporting
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

    @_reporting
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

    @_reporting
    def next_conversation(self) -> None:
        """Open the conversation below the open one in the list."""
        self._open_neighbour(1)

    @_reporting
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
            made = self.history.create_conversation("New chat" if mode == "chat" else NOTEBOOK_TITLE, mode)
            self.history.set_options(made, **options)
            if mode == "notebook":
                self.history.set_document(made, self.notebook.document())
                self._title_notebook(made, self.notebook.document())
            self.open(made, focus=False, collapse=False)
        else:
            self.history.set_options(self.current_id, **options)

    @_reporting
    def choose_model(self, name: str, mode: str = "chat") -> None:
        """The open chat (or notebook, `mode`) is written with `name` from now on ("": with whatever model is in
        use)."""
        self._set_options(mode, model=name or None)
        if name:
            self.model_wanted.emit(name)

    @_reporting
    def choose_preset(self, name: str, mode: str = "chat") -> None:
        self._set_options(mode, preset=name or None)
        self.status.emit(f"This {'notebook' if mode == 'notebook' else 'conversation'} samples with "
                         f"{name or 'the settings panel'}.", 3000)

    @_reporting
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

    @_reporting
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

    @_reporting
    def new_chat(self) -> None:
        self._new("New chat", "chat")

    @_reporting
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

    @_reporting
    def rename(self, conversation_id: int, title: str) -> None:
        self.history.rename_conversation(conversation_id, title)
        self.refresh()

    @_reporting
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

    # chat

    @_reporting
    def send(self) -> None:
        """Send what is in the message box (or resend the message being edited) and start the reply."""
        text = self.chat.draft().strip()
        if not text or not self._ready():
            return
        if self.current_id is None or self._current().mode != "chat":
            self.current_id = self.history.create_conversation(title_from(text), "chat")
            self.show_mode("chat")
        conv = self._current()
        if self.chat.editing_id is not None:
            # The edited message becomes a new version of its turn; the old one keeps the turns after it.
            edited = next(m for m in self.history.messages(self.current_id) if m.id == self.chat.editing_id)
            self.history.add_message(self.current_id, "user", text, after=edited.parent_id or FIRST)
            self.chat.cancel_edit()  # the unsent message set aside for the edit comes back
        else:
            if conv.title == "New chat" and not self.history.messages(conv.id):
                self.history.rename_conversation(conv.id, title_from(text))
            self.history.add_message(self.current_id, "user", text)
            self.chat.clear_draft()
        self.store_draft()
        self.refresh()
        self._start_chat_reply()

    def _start_chat_reply(self, messages: list[Message] | None = None, prefix: ReplyTokens | None = None,
                          written: str = "") -> None:
        """Write a reply after `messages` (default: the conversation as shown), starting with the tokens of
        `prefix` if given (an alternative picked in an earlier version, or a reply to continue), or with the text
        `written` (a reply to continue whose tokens were not kept)."""
        messages = self.history.messages(self.current_id) if messages is None else messages
        conv = self._current()
        prompt = format_chat(self._turns(conv, messages), self.requests.model.chat_style)
        self.show_messages(messages, to_end=True, writing=True)
        self.chat.begin_stream(self._writer())
        sampling = sampling_for(conv.preset, self.settings.sampling())
        stops = list(dict.fromkeys([*prompt.stop, *sampling["stop"]]))  # the next turn's, and the panel's
        settings = {**sampling, "stop": stops}
        joint = " " if written and prompt.text.endswith(":") else ""  # "Assistant:" then the reply's words
        request = self.requests.generate("chat", prompt.text + joint + written, settings, self.current_id,
                                         top_logprobs=TOP, prefix=prefix)
        request.reply_after = messages[-1].id if messages else None
        if written:
            request.prefix = joint + written
        if prefix is not None or written:
            self.chat.append(request.prefix.lstrip())

    def _writer(self) -> str:
        """The name of the model writing the reply (the loaded one; a remote one with its server)."""
        return self.requests.model.writer if self.requests.model else "Assistant"

    @_reporting
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

    @_reporting
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

    @_reporting
    def pick_alternative(self, message_id: int, index: int, choice: Choice) -> None:
        """A token's alternative was clicked: the reply is cut there, the alternative put in its place, and the
        model goes on from it. The result is a new version of the reply; the old one is kept."""
        if not self._ready() or self.current_id is None:
            return
        messages = self.history.messages(self.current_id)
        at = next((i for i, m in enumerate(messages) if m.id == message_id), None)
        data = self.token_data([message_id]).get(message_id)
        if at is None or data is None or messages[at].role != "assistant":
            return
        self._start_chat_reply(messages[:at], prefix=data.alternative_at(index, choice))

    @_reporting
    def message_action(self, action: str, message_id: int) -> None:
        """A link under a message: copy, regenerate or continue (a reply), edit or retry (a user message)."""
        messages = self.history.messages(self.current_id) if self.current_id else []
        message = next((m for m in messages if m.id == message_id), None)
        if message is None:
            return
        if action == "copy":
            QGuiApplication.clipboard().setText(message.content)
            self.status.emit("Copied", 2000)
        elif action == "regenerate":
            self.regenerate(message_id)
        elif action == "continue":
            self.continue_reply(message_id)
        elif action == "retry":
            self.retry(message_id)
        elif action == "edit":
            self.chat.start_edit(message_id, message.content)
        elif action in ("older", "newer"):
            self.show_version(message, -1 if action == "older" else 1)

    def _shown(self) -> list[Message]:
        """The open chat's thread as shown (none for a notebook, or with none open)."""
        conv = self._current()
        return self.history.messages(conv.id) if conv is not None and conv.mode == "chat" else []

    @staticmethod
    def _find(messages: list[Message], message_id: int | None, role: str) -> int | None:
        """The index of `message_id` in a thread if it is a message of `role`; with None, of the last such."""
        for i in range(len(messages) - 1, -1, -1):
            if messages[i].role == role and message_id in (None, messages[i].id):
                return i
        return None

    @_reporting
    def copy_reply(self, message_id: int | None = None) -> None:
        """Put a reply on the clipboard (None: the open chat's last reply)."""
        messages = self._shown()
        at = self._find(messages, message_id, "assistant")
        if at is None:
            self.status.emit("There is no reply here to copy.", 3000)
            return
        QGuiApplication.clipboard().setText(messages[at].content)
        self.status.emit("Copied", 2000)

    @_reporting
    def edit_last(self) -> None:
        """Put the open chat's last message of one's own in the message box, to edit and resend it."""
        messages = self._shown()
        at = self._find(messages, None, "user")
        if at is not None:
            self.chat.start_edit(messages[at].id, messages[at].content)

    @_reporting
    def show_version(self, message: Message, step: int) -> None:
        """Show the previous or next version of a turn, with the turns that followed it then. The view stays
        where it is, and an arrow reached by the keyboard keeps the focus (the same way, if there is one)."""
        ids = self.history.versions(message)
        index = ids.index(message.id) + step
        if 0 <= index < len(ids) and not self._writing_here():
            shown = ids[index]
            self.history.show_version(self.current_id, shown)
            ways = ("older", "newer") if step < 0 else ("newer", "older")
            self.show_messages(self.history.messages(self.current_id), stay=True,
                               focus_links=tuple(f"{way}:{shown}" for way in ways))
            self.changed.emit()

    def _writing_here(self) -> bool:
        active = self.requests.active
        if active is not None and active.conversation_id == self.current_id:
            self.status.emit("The model is still writing here; stop it first (Esc).", 5000)
            return True
        return False

    @_reporting
    def regenerate(self, message_id: int | None = None) -> None:
        """Write a new version of a reply (None: the open chat's last reply, or, if its last message has none,
        that message's); the old one is kept, with the turns that followed it."""
        messages = self._shown()
        at = self._find(messages, message_id, "assistant")
        if message_id is None and messages and messages[-1].role == "user":
            self.retry()
        elif at is None or at == 0:
            self.status.emit("There is no reply here to write again.", 3000)
        elif self._ready():
            self._start_chat_reply(messages[:at])

    @_reporting
    def continue_reply(self, message_id: int | None = None) -> None:
        """Let the model go on from the end of a reply (None: the open chat's last reply), as when it was cut at
        the length limit. The longer text is a new version of that turn; the old one stays (‹ ›)."""
        messages = self._shown()
        at = self._find(messages, message_id, "assistant")
        if at is None:
            self.status.emit("There is no reply here to continue.", 3000)
            return
        if not self._ready():
            return
        reply = messages[at]
        data = self.token_data([reply.id]).get(reply.id)
        if data is not None and not self.requests.model.server and data.text().strip() == reply.content:
            self._start_chat_reply(messages[:at], prefix=data)  # the same tokens: the colours go on too
        else:
            self._start_chat_reply(messages[:at], written=reply.content)

    @_reporting
    def retry(self, message_id: int | None = None) -> None:
        """Send again a message left without a reply (a request that failed, a crash, a server gone): the
        reply is written now, without typing the message again. None: the open chat's last message."""
        messages = self._shown()
        at = self._find(messages, message_id, "user")
        if at is None or at != len(messages) - 1:
            self.status.emit("Every message here has its reply; Regenerate writes another.", 4000)
            return
        if self._ready():
            self._start_chat_reply(messages)

    @_reporting
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

    @_reporting
    def keep_unsent(self) -> None:
        """Before closing: keep the unsent message, in a new chat if none is open."""
        if self.current_id is None and self.chat.unsent().strip():
            self.current_id = self.history.create_conversation(title_from(self.chat.unsent()), "chat")
        self.store_draft()

    # notebook

    @_reporting
    def store_document(self) -> None:
        """Save the notebook's text now, if a notebook is open (not while the model is continuing it: the
        continuation is saved with the text when it ends)."""
        self.notebook.cancel_autosave()
        if self.notebook.continuing():
            return
        conv = self._current() if self.pages.currentWidget() is self.notebook else None
        if conv is not None and conv.document != self.notebook.document():  # (unchanged: its place in the list stays)
            self.history.set_document(conv.id, self.notebook.document())
            self._title_notebook(conv.id, self.notebook.document())

    def _title_notebook(self, conversation_id: int, document: str) -> None:
        """A notebook still called "Notebook" is named after its first words once it has some."""
        conv = self.history.conversation(conversation_id)
        if conv is not None and conv.title == NOTEBOOK_TITLE and document.strip():
            self.history.rename_conversation(conversation_id, title_from(document))
            self.refresh()

    @_reporting
    def continue_notebook(self) -> None:
        """Let the model continue the notebook's text at its end."""
        if not self._ready():
            return
        if self.current_id is None:
            self.current_id = self.history.create_conversation(NOTEBOOK_TITLE, "notebook")
            self.refresh()
        self.store_document()
        self.notebook.begin_continuation()
        settings = sampling_for(self._current().preset, self.settings.sampling())  # (the panel's stops too)
        self.requests.generate("notebook", self.notebook.document(), settings, self.current_id, top_logprobs=TOP)

    @_reporting
    def pick_notebook_alternative(self, message_id: int, index: int, choice: Choice) -> None:
        """A continuation's token's alternative was clicked: the text is cut at that token, the alternative put
        in its place and the model continues from it. The new continuation is saved as a version of the old
        one (kept in the history); Ctrl+Z brings the old text back."""
        if not self._ready() or self.current_id is None:
            return
        data = self.token_data([message_id]).get(message_id)
        position = self.notebook.token_position(message_id, index)
        if data is None or position is None:
            return
        old = next((m for m in self.history.messages(self.current_id) if m.id == message_id), None)
        picked = ReplyTokens.of([data.alternative_at(index, choice).token(index)])
        head = self.notebook.document()[:position]
        self.notebook.replace_from(position, choice.text)
        self.history.set_document(self.current_id, head)  # what the continuation is written after
        self.notebook.begin_continuation(start=position)
        settings = sampling_for(self._current().preset, self.settings.sampling())  # (the panel's stops too)
        request = self.requests.generate("notebook", head, settings, self.current_id, top_logprobs=TOP,
                                         prefix=picked)
        request.replaces = old.id if old is not None else None

    # what a request wrote

    @_reporting
    def save_reply(self, active: ActiveRequest, text: str, stop_reason: str, context_tokens: int = 0) -> None:
        """Save a finished or stopped chat reply or notebook continuation (one transaction), with what the model
        predicted at each of its tokens. `text`: what the engine wrote (after the request's prefix, if any);
        `context_tokens`: how many tokens of the model's window its prompt and it filled (a remote model's
        count, shown while its conversation is)."""
        text = active.prefix + text
        data = active.token_data
        tokens = active.token_blob if data is not None and data.text() == text else None
        loaded = self.requests.model
        model = loaded.writer if loaded else None
        # Beside the sampling settings, what ran it: the same text and settings can differ by precision or device.
        settings = {**active.settings, **({"precision": loaded.precision, "device": loaded.device,
                                           "threads": self.settings.threads} if loaded else {})}
        if self.history.conversation(active.conversation_id) is None:
            return  # deleted meanwhile
        if active.kind == "chat":
            content = text.strip()
            if content or stop_reason != "cancelled":
                message_id = self.history.add_message(active.conversation_id, "assistant", content, model=model,
                                                      settings=settings, stop_reason=stop_reason,
                                                      after=active.reply_after or FIRST, tokens=tokens)
                if tokens is not None:
                    self._decoded[message_id] = data
                if context_tokens:
                    self._counted[message_id] = context_tokens
            if not active.detached and self.current_id == active.conversation_id:
                self.show_messages(self.history.messages(active.conversation_id))
        else:
            if active.detached:
                document = self.history.conversation(active.conversation_id).document + text
            else:
                self.notebook.end_continuation()
                document = self.notebook.document()
            replaced = next((m for m in self.history.messages(active.conversation_id) if m.id == active.replaces),
                            None) if active.replaces is not None else None
            message_id = self.history.add_message(active.conversation_id, "assistant", text, model=model,
                                                  settings=settings, stop_reason=stop_reason, document=document,
                                                  tokens=tokens,
                                                  after=(replaced.parent_id or FIRST) if replaced else None)
            if tokens is not None:
                self._decoded[message_id] = data
                if not active.detached:
                    self.notebook.mark_continuation(message_id, data)
            if context_tokens:
                self._counted_text[active.conversation_id] = (document, context_tokens)
            self._title_notebook(active.conversation_id, document)
        self.refresh()

    @_reporting
    def forget_failed(self) -> None:
        """A request failed: the notebook is editable again, the chat shows what was saved."""
        self.notebook.end_continuation()
        if self.current_id is not None and self.pages.currentWidget() is self.chat:
            self.show_messages(self.history.messages(self.current_id))
