"""The chat transcript: messages rendered once, a streaming reply appended token by token."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtGui import QTextBlockFormat, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import QTextBrowser

from app.history import Message

SOFT_BREAK = 400  # characters in a streamed paragraph before a layout block break

ROLE_NAMES = {"user": "You", "assistant": "Assistant", "system": "System"}


class TranscriptView(QTextBrowser):
    """Read-only transcript. Per-message actions are links: copy:ID, regenerate:ID, edit:ID, and older:ID /
    newer:ID beside a turn that has several versions."""

    action = Signal(str, int)  # action name, message id

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setOpenLinks(False)
        self.setOpenExternalLinks(False)
        self.anchorClicked.connect(lambda url: self.action.emit(url.scheme(), int(url.path() or 0)))
        self.document().setDocumentMargin(16)
        self._stream_cursor: QTextCursor | None = None
        self.setPlaceholderText("Write a message below and press Enter.")

    def _new_block(self, cursor: QTextCursor, first: bool) -> None:
        if not first:
            cursor.insertBlock(QTextBlockFormat(), QTextCharFormat())
        cursor.setBlockFormat(QTextBlockFormat())
        cursor.setCharFormat(QTextCharFormat())

    def _header(self, cursor: QTextCursor, role: str, links: str, first: bool) -> None:
        self._new_block(cursor, first)
        fmt = QTextBlockFormat()
        fmt.setTopMargin(0 if first else 14)
        cursor.setBlockFormat(fmt)
        cursor.insertHtml(f"<b>{ROLE_NAMES.get(role, role)}</b>&nbsp;&nbsp;<small>{links}</small>")
        self._new_block(cursor, False)

    @staticmethod
    def _links(message: Message, version: tuple[int, int] | None = None) -> str:
        def link(action: str, label: str) -> str:
            return f'<a href="{action}:{message.id}">{label}</a>'

        switch = ""
        if version is not None:
            place, count = version
            # The arrows with a space either side, so that they are not too small to click.
            older = link("older", "&nbsp;‹&nbsp;") if place > 1 else "&nbsp;‹&nbsp;"
            newer = link("newer", "&nbsp;›&nbsp;") if place < count else "&nbsp;›&nbsp;"
            switch = f"{older}{place}/{count}{newer} · "
        return switch + TranscriptView._actions(message, link)

    @staticmethod
    def _actions(message: Message, link) -> str:
        if message.role == "assistant":
            stopped = " · <i>stopped</i>" if message.stop_reason == "cancelled" else ""
            return link("copy", "Copy") + " · " + link("regenerate", "Regenerate") + stopped
        if message.role == "user":
            return link("edit", "Edit") + " · " + link("copy", "Copy")
        return ""

    def render(self, messages: list[Message], versions: dict[int, tuple[int, int]] | None = None) -> None:
        """Lay out a whole conversation (on switching, and once when a reply is complete)."""
        versions = versions or {}
        at_bottom = self._at_bottom()
        self._stream_cursor = None
        self.clear()
        cursor = QTextCursor(self.document())
        cursor.beginEditBlock()
        for i, message in enumerate(messages):
            self._header(cursor, message.role, self._links(message, versions.get(message.id)), first=i == 0)
            if message.role == "assistant":
                cursor.insertMarkdown(message.content or "…")
            else:
                cursor.insertText(message.content)
        cursor.endEditBlock()
        if at_bottom or not messages:
            self.scroll_to_end()

    def begin_stream(self, pending_user: str | None = None) -> None:
        """Start a reply at the end; `pending_user` shows a user turn not yet re-rendered."""
        cursor = QTextCursor(self.document())
        cursor.movePosition(QTextCursor.End)
        first = self.document().isEmpty()
        if pending_user is not None:
            self._header(cursor, "user", "", first)
            cursor.insertText(pending_user)
            first = False
        self._header(cursor, "assistant", "<i>writing…</i>", first)
        self._stream_cursor = cursor
        self.scroll_to_end()

    def append(self, text: str) -> None:
        """Add streamed text at the end: costs time in proportion to `text`, not to the transcript.

        Qt lays out a whole paragraph whenever it changes, so a long streamed paragraph is cut
        into blocks of about SOFT_BREAK characters at a space (it looks like an early line wrap);
        the finished reply is rendered properly once.
        """
        cursor = self._stream_cursor
        if cursor is None or not text:
            return
        at_bottom = self._at_bottom()
        space = text.find(" ")
        if space >= 0 and cursor.block().length() > SOFT_BREAK:
            cursor.insertText(text[:space])
            cursor.insertBlock()
            text = text[space + 1 :]
        cursor.insertText(text)
        if at_bottom:
            self.scroll_to_end()

    def _at_bottom(self) -> bool:
        bar = self.verticalScrollBar()
        return bar.value() >= bar.maximum() - 4

    def scroll_to_end(self) -> None:
        bar = self.verticalScrollBar()
        bar.setValue(bar.maximum())

