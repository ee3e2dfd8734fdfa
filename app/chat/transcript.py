"""The chat transcript: messages rendered once, a streaming reply appended token by token."""

from __future__ import annotations

import html
import re

from PySide6.QtCore import QTimer, Signal
from PySide6.QtGui import QTextBlockFormat, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import QTextBrowser

from app.history.records import Message, speaker
from app.probe.probabilities import Colouring, block_positions, token_format, write_broken
from app.probe.token_cursor import TokenCursor, TokenHover
from app.probe.token_data import ReplyTokens, soft_breaks, spans

SOFT_BREAK = 400  # characters in a streamed paragraph after which the next sentence starts a new layout block
HARD_BREAK = 2000  # ... and after which the next space does (a text without sentence ends)
SENTENCE_END = re.compile(r"[.!?…][\"'»”)\]]* ")
PAINT_SLICE = 150  # tokens coloured per turn of the event loop (a long reply never holds the window up)



CUT = {"length": "Cut at the length limit (Max new tokens).", "cancelled": "Stopped.",
       "interrupted": "Cut short: the server went away."}  # a reply that can be continued, and why it ended


class TranscriptView(QTextBrowser):
    """Read-only transcript. Per-message actions are links: copy:ID, regenerate:ID, edit:ID, and older:ID /
    newer:ID beside a turn that has several versions; under the last message, continue:ID (a reply cut short)
    or retry:ID (a message left without a reply). With a `colouring`, each reply whose tokens were kept is
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
        self._hold: int | None = None  # a place to keep once the layout has grown to it (Qt lays out in steps)
        bar = self.verticalScrollBar()
        bar.valueChanged.connect(self._scrolled)
        bar.rangeChanged.connect(self._range_changed)
        self.setPlaceholderText("Write a message below and press Enter.")
        self.colouring: Colouring | None = None
        self.token_data: dict[int, ReplyTokens] = {}  # of the replies shown coloured
        self.pickable = True  # whether an alternative can be picked now (not while the model writes)
        self.hover = TokenHover(self, self.token_data.get, lambda _message_id: self.pickable, self)
        self.hover.card.picked.connect(self.alternative_picked)
        self.token_cursor = TokenCursor(self, self.hover, self)  # Alt+← →: from token to token, Enter: the card
        self._to_paint: list[tuple] = []  # (message id, ReplyTokens, its places left, start→position, end→position)
        self._painter = QTimer(self, interval=0)
        self._painter.timeout.connect(self._paint_slice)

    def set_colouring(self, colouring: Colouring | None) -> None:
        """Colour replies by what the model predicted (None: plain Markdown); takes effect at the next render."""
        self.colouring = colouring
        self.hover.set_enabled(colouring is not None)
        self.token_cursor.reset()

    def _new_block(self, cursor: QTextCursor, first: bool) -> None:
        if not first:
            cursor.insertBlock(QTextBlockFormat(), QTextCharFormat())
        cursor.setBlockFormat(QTextBlockFormat())
        cursor.setCharFormat(QTextCharFormat())

    def _header(self, cursor: QTextCursor, name: str, links: str, first: bool, switch: str = "") -> None:
        """A message's heading: who wrote it (You, or the model's name), its version arrows and its links."""
        self._new_block(cursor, first)
        fmt = QTextBlockFormat()
        fmt.setTopMargin(0 if first else 14)
        cursor.setBlockFormat(fmt)
        cursor.insertHtml(f"<b>{html.escape(name)}</b>&nbsp;&nbsp;{switch}<small>{links}</small>")
        self._new_block(cursor, False)

    @staticmethod
    def _link(message: Message, action: str, label: str, style: str = "") -> str:
        styled = f' style="{style}"' if style else ""
        return f'<a href="{action}:{message.id}"{styled}>{label}</a>'

    @staticmethod
    def _switch(message: Message, version: tuple[int, int] | None) -> str:
        """`‹ 2/3 ›` beside a turn with several versions: the arrows large, with a space either side, so that
        each is a target of at least 24 by 24 pixels; an arrow with no version that way is greyed."""
        if version is None:
            return ""
        place, count = version

        def arrow(action: str, glyph: str, there: bool) -> str:
            big = f'<span style="font-size:xx-large">&nbsp;{glyph}&nbsp;</span>'
            if not there:
                return f'<span style="color:gray">{big}</span>'
            return TranscriptView._link(message, action, big, "text-decoration:none")  # (an underlined space: odd)

        return f"{arrow('older', '‹', place > 1)}{place}/{count}{arrow('newer', '›', place < count)}&nbsp;&nbsp;"

    @staticmethod
    def _links(message: Message) -> str:
        return TranscriptView._actions(message, lambda action, label: TranscriptView._link(message, action, label))

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
               to_end: bool = False, token_data: dict[int, ReplyTokens] | None = None, writing: bool = False,
               stay: bool = False, focus_links: tuple[str, ...] = ()) -> None:
        """Lay out a whole conversation (on opening it, and once when a reply is complete). `to_end`: land at
        the end; otherwise a view the person scrolled up stays where it was (`stay`: also one at the end, as
        when another version of a turn is shown). `token_data`: the kept tokens of replies, shown coloured while
        there is a colouring. `writing`: a reply to the last message is being written (nothing to retry).
        `focus_links`: if a link had the keyboard's focus, the first of these found has it now."""
        versions = versions or {}
        self.hover.hide()
        self.token_cursor.reset()
        self._painter.stop()
        self._to_paint.clear()
        self.token_data.clear()
        if self.colouring is not None and token_data:
            self.token_data.update(token_data)
        follow, place = (self._follow and not stay) or to_end, self.verticalScrollBar().value()
        had_link = self.textCursor().hasSelection() and self.textCursor().charFormat().isAnchor()
        self._stream_cursor = None
        self._rebuilding = True  # clearing moves the scroll bar to 0: not the person's doing
        self.clear()
        cursor = QTextCursor(self.document())
        cursor.beginEditBlock()
        for i, message in enumerate(messages):
            self._header(cursor, speaker(message), self._links(message), i == 0,
                         self._switch(message, versions.get(message.id)))
            data = self.token_data.get(message.id)
            if data is not None and self._insert_tokens(cursor, message, data):
                pass
            elif message.role == "assistant":
                cursor.insertMarkdown(message.content or "…")
            else:
                cursor.insertText(message.content)
        if messages and not writing:
            self._offer(cursor, messages[-1])
        cursor.endEditBlock()
        self._paint_slice()
        self._rebuilding = False
        self._follow = follow or not messages
        self._hold = None
        if self._follow:
            self.scroll_to_end()
        else:
            self.verticalScrollBar().setValue(place)
            if self.verticalScrollBar().value() < place:
                self._hold = place  # the layout is not that long yet
        if had_link and focus_links:
            self.focus_link(*focus_links)

    def _offer(self, cursor: QTextCursor, last: Message) -> None:
        """Under the last message: Continue for a reply cut short, Retry for a message left without a reply."""
        if last.role == "assistant" and last.stop_reason in CUT:
            why, action, label = CUT[last.stop_reason], "continue", "Continue"
        elif last.role == "user":
            why, action, label = "No reply came to this message.", "retry", "Retry"
        else:
            return
        self._new_block(cursor, False)
        fmt = QTextBlockFormat()
        fmt.setTopMargin(6)
        cursor.setBlockFormat(fmt)
        cursor.insertHtml(f'<i>{html.escape(why)}</i>&nbsp;&nbsp;<b>{self._link(last, action, f"{label} ›")}</b>')

    def link_text(self, href: str) -> tuple[int, int] | None:
        """Where a link is in the document (its first and last position), or None."""
        block = self.document().begin()
        while block.isValid():
            it = block.begin()
            while not it.atEnd():
                fragment = it.fragment()
                fmt = fragment.charFormat()
                if fmt.isAnchor() and fmt.anchorHref() == href:
                    start, end = fragment.position(), fragment.position() + fragment.length()
                    it += 1  # a link may span several fragments (its text in another size)
                    while not it.atEnd() and it.fragment().charFormat().anchorHref() == href:
                        end = it.fragment().position() + it.fragment().length()
                        it += 1
                    return start, end
                it += 1
            block = block.next()
        return None

    def focus_link(self, *hrefs: str) -> bool:
        """Give the keyboard's focus to the first of these links found (shown selected, as Tab shows a link;
        Enter follows it); whether one was."""
        for href in hrefs:
            found = self.link_text(href)
            if found is not None:
                cursor = QTextCursor(self.document())
                cursor.setPosition(found[0])
                cursor.setPosition(found[1], QTextCursor.KeepAnchor)
                self.setTextCursor(cursor)
                self.setFocus()
                return True
        return False

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
            if self._hold is not None and value != self._hold and value != self.verticalScrollBar().maximum():
                self._hold = None  # the person scrolled

    def _range_changed(self, _minimum: int, maximum: int) -> None:
        # The layout grows after text is inserted (Qt lays out large documents in steps): stay at the end, or
        # at the place kept.
        if self._rebuilding:
            return
        bar = self.verticalScrollBar()
        if self._hold is not None:
            bar.setValue(self._hold)
            if maximum >= self._hold:
                self._hold = None
        elif self._follow:
            bar.setValue(maximum)

    def scroll_to_end(self) -> None:
        self._follow = True
        bar = self.verticalScrollBar()
        bar.setValue(bar.maximum())

