"""The open chat's replies asked for and acted on: `send` (or resend an edited message), and the actions on a
reply or on the last one: regenerate, continue, retry, copy, edit, older and newer versions, an alternative token
picked. Each that writes a reply starts one chat request (`_start_chat_reply`) after the messages it answers.

`ReplyActions` is a part of ConversationController (app.chat.conversations), which mixes it in: it works on the
controller's history, chat page, requests and settings and the open conversation (`current_id`), all set up by
the controller, and says what it did through the controller's `status` and `changed` signals.
"""

from __future__ import annotations

from PySide6.QtGui import QGuiApplication

from app.chat.prompts import chat_request
from app.chat.reporting import reporting
from app.chat.titles import NEW_CHAT, title_from
from app.history.records import Message
from app.history.store import FIRST
from app.probe.token_data import TOP, Choice, ReplyTokens


class ReplyActions:
    """ConversationController's chat replies: send, regenerate, continue, retry, copy, edit, versions."""

    @reporting
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
            if conv.title == NEW_CHAT and not self.history.messages(conv.id):
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
        ask = chat_request(self._current(), messages, self.requests.model.chat_style, self.settings.sampling(),
                           written)
        self.show_messages(messages, to_end=True, writing=True)
        self.chat.begin_stream(self._writer())
        request = self.requests.generate("chat", ask.text, ask.settings, self.current_id, top_logprobs=TOP,
                                         prefix=prefix)
        request.reply_after = messages[-1].id if messages else None
        if written:
            request.prefix = ask.written
        if prefix is not None or written:
            self.chat.append(request.prefix.lstrip())

    @reporting
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

    @reporting
    def message_action(self, action: str, message_id: int) -> None:
        """A link under a message: copy, regenerate or continue (a reply), edit or retry (a user message)."""
        messages = self.history.messages(self.current_id) if self.current_id else []
        message = next((m for m in messages if m.id == message_id), None)
        if message is None:
            return
        if action == "copy":
            self._copy(message.content)
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

    @reporting
    def copy_reply(self, message_id: int | None = None) -> None:
        """Put a reply on the clipboard (None: the open chat's last reply)."""
        messages = self._shown()
        at = self._find(messages, message_id, "assistant")
        if at is None:
            self.status.emit("There is no reply here to copy.", 3000)
            return
        self._copy(messages[at].content)

    def _copy(self, text: str) -> None:
        QGuiApplication.clipboard().setText(text)
        self.status.emit("Copied", 2000)

    @reporting
    def edit_last(self) -> None:
        """Put the open chat's last message of one's own in the message box, to edit and resend it."""
        messages = self._shown()
        at = self._find(messages, None, "user")
        if at is not None:
            self.chat.start_edit(messages[at].id, messages[at].content)

    @reporting
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

    @reporting
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

    @reporting
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

    @reporting
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
