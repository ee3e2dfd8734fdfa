"""The chat transcript: messages rendered once, a streaming reply appended token by token."""

from __future__ import annotations

import html
import re

from PySide6.QtCore import QTimer, Signal
from PySide6.QtGui import QTextBlockFormat, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import QTextBrowser

from app.history import Message, speaker
from app.probabilities import Colouring, TokenHover, block_positions, soft_breaks, spans, token_format, write_broken
from app.token_data import ReplyTokens

SOFT_BREAK = 400  # characters in a streamed paragraph after which the next sentence starts a new layout block
HARD_BREAK = 2000  # ... and after which the next space does (a text without sentence ends)
SENTENCE_END = re.compile(r"[.!?…][\"'»”)\]]* ")
PAINT_SLICE = 150  # tokens coloured per turn of the event loop (a long reply never holds the window up)



class TranscriptView(QTextBrowser):
    """Read-only transcript. Per-message actions are links: copy:ID, regenerate:ID, edit:ID, and older:ID /
    newer:ID beside a turn that has several versions. With a `colouring`, each reply whose tokens were kept is
    shown token by token, coloured, and hovering a token shows its alternatives."""

    action = Signal(str, int)  # action name, message id
    alternative_picked = Signal(int, int, object)  # message id, token index, the Choice picked in its place

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setAccessibleName("Conversation")
        self.setOpenLinks(False)
        self.setOpenExternalLinks(False)
        self.anchorClicked.connect(lambda url: self.action.emit(url.scheme(), int(url.path() or 0)))
        self.document().setDocumentMargin(16)
        self._stream_cursor: QTextCursor | None = None
        self._last_char = ""  # of the streamed text so far (a sentence may end across two pieces)
        # Following: the view is at the end and stays there as text arrives or the layout grows. Scrolling up
        # stops it; scrolling back to the end starts it again. Nothing else moves a view the person scrolled.
        self._follow = True
        self._rebuilding = False
        bar = self.verticalScrollBar()
        bar.valueChanged.connect(self._scrolled)
        bar.rangeChanged.connect(self._range_changed)
        self.setPlaceholderText("Write a message below and press Enter.")
        self.colouring: Colouring | None = None
        self.token_data: dict[int, ReplyTokens] = {}  # of the replies shown coloured
        self.pickable = True  # whether an alternative can be picked now (not while the model writes)
        self.hover = TokenHover(self, self.token_data.get, lambda _message_id: self.pickable, self)
        self.hover.card.picked.connect(self.alternative_picked)
        self._to_paint: list[tuple] = []  # (message id, ReplyTokens, its places left, start→position, end→position)
        self._painter = QTimer(self, interval=0)
        self._painter.timeout.connect(self._paint_slice)

    def set_colouring(self, colouring: Colouring | None) -> None:
        """Colour replies by what the model predicted (None: plain Markdown); takes effect at the next render."""
        self.colouring = colouring
        self.hover.set_enabled(colouring is not None)

    def _new_block(self, cursor: QTextCursor, first: bool) -> None:
        if not first:
            cursor.insertBlock(QTextBlockFormat(), QTextCharFormat())
        cursor.setBlockFormat(QTextBlockFormat())
        cursor.setCharFormat(QTextCharFormat())

    def _header(self, cursor: QTextCursor, name: str, links: str, first: bool) -> None:
        """A message's heading: who wrote it (You, or the model's name) and its links."""
        self._new_block(cursor, first)
        fmt = QTextBlockFormat()
        fmt.setTopMargin(0 if first else 14)
        cursor.setBlockFormat(fmt)
        cursor.insertHtml(f"<b>{html.escape(name)}</b>&nbsp;&nbsp;<small>{links}</small>")
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
            stopped = {"cancelled": " · <i>stopped</i>",
                       "interrupted": " · <i>cut short: the server went away</i>"}.get(message.stop_reason, "")
            return link("copy", "Copy") + " · " + link("regenerate", "Regenerate") + stopped
        if message.role == "user":
            return link("edit", "Edit") + " · " + link("copy", "Copy")
        return ""

    def render(self, messages: list[Message], versions: dict[int, tuple[int, int]] | None = None,
               to_end: bool = False, token_data: dict[int, ReplyTokens] | None = None) -> None:
        """Lay out a whole conversation (on opening it, and once when a reply is complete). `to_end`: land at
        the end; otherwise a view the person scrolled up stays where it was. `token_data`: the kept tokens of
        replies, shown coloured while there is a colouring."""
        versions = versions or {}
        self.hover.hide()
        self._painter.stop()
        self._to_paint.clear()
        self.token_data.clear()
        if self.colouring is not None and token_data:
            self.token_data.update(token_data)
        follow, place = self._follow or to_end, self.verticalScrollBar().value()
        self._stream_cursor = None
        self._rebuilding = True  # clearing moves the scroll bar to 0: not the person's doing
        self.clear()
        cursor = QTextCursor(self.document())
        cursor.beginEditBlock()
        for i, message in enumerate(messages):
            self._header(cursor, speaker(message), self._links(message, versions.get(message.id)), first=i == 0)
            data = self.token_data.get(message.id)
            if data is not None and self._insert_tokens(cursor, message, data):
                pass
            elif message.role == "assistant":
                cursor.insertMarkdown(message.content or "…")
            else:
                cursor.insertText(message.content)
        cursor.endEditBlock()
        self._paint_slice()
        self._rebuilding = False
        self._follow = follow or not messages
        if self._follow:
            self.scroll_to_end()
        else:
            self.verticalScrollBar().setValue(place)

    def _insert_tokens(self, cursor: QTextCursor, message: Message, data: ReplyTokens) -> bool:
        """A reply as plain text whose tokens are then coloured and marked with their places (for the hover
        card), a slice at a time; False, writing nothing, if the kept tokens are not this text."""
        content = message.content
        places = spans(data, strip=True)
        if not places or places[-1][2] != len(content) or data.text().strip() != content:
            self.token_data.pop(message.id, None)
            return False
        cuts = soft_breaks(content)
        self._to_paint.append((message.id, data, places, *block_positions(cursor.position(), cuts)))
        write_broken(cursor, content, cuts)
        return True

    def _paint_slice(self) -> None:
        """Colour the next PAINT_SLICE tokens waiting to be coloured; the rest at the next turns of the loop."""
        budget, colour = PAINT_SLICE, self.colouring.colour if self.colouring else None
        cursor = QTextCursor(self.document())
        cursor.beginEditBlock()
        while self._to_paint and budget > 0 and colour is not None:
            message_id, data, places, first, last = self._to_paint[0]
            done, rest = places[:budget], places[budget:]
            for index, start, end in done:
                cursor.setPosition(first(start))
                cursor.setPosition(last(end), QTextCursor.KeepAnchor)
                cursor.setCharFormat(token_format(message_id, index, colour(data, index)))
            budget -= len(done)
            if rest:
                self._to_paint[0] = (message_id, data, rest, first, last)
            else:
                self._to_paint.pop(0)
        cursor.endEditBlock()
        if self._to_paint and colour is not None:
            self._painter.start()
        else:
            self._painter.stop()
            self._to_paint.clear()

    def painting(self) -> bool:
        """Whether tokens are still waiting to be coloured."""
        return bool(self._to_paint)

    def begin_stream(self, pending_user: str | None = None, writer: str = "Assistant") -> None:
        """Start a reply at the end, headed by the model writing it; `pending_user` shows a user turn not yet
        re-rendered."""
        cursor = QTextCursor(self.document())
        cursor.movePosition(QTextCursor.End)
        first = self.document().isEmpty()
        if pending_user is not None:
            self._header(cursor, "You", "", first)
            cursor.insertText(pending_user)
            first = False
        self._header(cursor, writer, "<i>writing…</i>", first)
        self._stream_cursor = cursor
        self._last_char = ""
        self.scroll_to_end()

    def append(self, text: str) -> None:
        """Add streamed text at the end: costs time in proportion to `text`, not to the transcript.

        Qt lays out a whole paragraph whenever it changes, so a long streamed paragraph is cut into
        blocks: after SOFT_BREAK characters at the next sentence end (never mid-sentence), after
        HARD_BREAK at the next space. The finished reply is rendered properly once. The view follows
        the text only while it is at the end.
        """
        cursor = self._stream_cursor
        if cursor is None or not text:
            return
        length = cursor.block().length()
        if length > SOFT_BREAK:
            found = SENTENCE_END.search(self._last_char + text)
            cut = found.end() - len(self._last_char) if found else -1
            if cut <= 0 and length > HARD_BREAK:
                cut = text.find(" ") + 1
            if cut > 0:
                cursor.insertText(text[:cut - 1])
                cursor.insertBlock()
                text = text[cut:]
        cursor.insertText(text)
        self._last_char = text[-1:] or self._last_char
        if self._follow:
            self.scroll_to_end()

    def following(self) -> bool:
        """Whether the view stays at the end as text arrives (it is there, and was not scrolled up)."""
        return self._follow

    def _scrolled(self, value: int) -> None:
        if not self._rebuilding:
            self._follow = value >= self.verticalScrollBar().maximum() - 4

    def _range_changed(self, _minimum: int, maximum: int) -> None:
        # The layout grows after text is inserted (Qt lays out large documents in steps): stay at the end.
        if self._follow and not self._rebuilding:
            self.verticalScrollBar().setValue(maximum)

    def scroll_to_end(self) -> None:
        self._follow = True
        bar = self.verticalScrollBar()
        bar.setValue(bar.maximum())

