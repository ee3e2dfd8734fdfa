"""The conversation list: search, new, rename, delete (its context menu, and the Delete key).

While a search is typed, each conversation found shows where it matched (its title, or a line of its text) with
the words searched for highlighted; a search that finds nothing says so, and Esc clears it. The conversation the
model is writing in is marked ✎, wherever the list is.
"""

from __future__ import annotations

import html
import re

from PySide6.QtCore import QEvent, QModelIndex, QObject, QSize, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence, QPalette, QShortcut, QTextDocument
from PySide6.QtWidgets import (QHBoxLayout, QLabel, QLineEdit, QListWidget, QListWidgetItem, QPushButton, QStyle,
                               QStyledItemDelegate, QStyleOptionViewItem, QVBoxLayout, QWidget)

from app.history.records import Conversation

# The conversation list's own keys (Help > Keyboard shortcuts lists them).
KEYS = (("Delete", "delete the selected conversation (asks first)"), ("Esc (in the search box)", "clear the search"))

WRITING = "✎ "  # before the title of the conversation the model is writing in
MATCH_COLOUR = "#f2d13a"  # behind the words searched for (the colour of a find in a text editor)
SNIPPET_ROLE = Qt.UserRole + 1  # an item's line of text around the match, when the title does not match
TITLE_ROLE = Qt.UserRole + 2  # its title as it is, without the writing mark
ABOUT_ROLE = Qt.UserRole + 3  # what kind it is and when it last changed (its tooltip)
SNIPPET_BEFORE, SNIPPET_LENGTH = 24, 70  # characters of a snippet: before the match, in all


def snippet(text: str, search: str) -> str:
    """The line around the first match of `search` in `text`, on one line, cut with … at either end."""
    line = " ".join(text.split())
    at = line.lower().find(search.lower())
    if at < 0:
        return ""
    start = max(0, at - SNIPPET_BEFORE)
    end = min(len(line), start + SNIPPET_LENGTH)
    return ("…" if start > 0 else "") + line[start:end] + ("…" if end < len(line) else "")


def highlighted(text: str, search: str) -> str:
    """`text` as rich text, each match of `search` (whatever its case) on the match colour."""
    if not search:
        return html.escape(text)
    parts = re.split(f"({re.escape(search)})", text, flags=re.IGNORECASE)
    return "".join(f'<span style="background-color:{MATCH_COLOUR}; color:black">{html.escape(part)}</span>'
                   if i % 2 else html.escape(part) for i, part in enumerate(parts))


class _MatchDelegate(QStyledItemDelegate):
    """Paints a conversation found by a search: its title and, under it, the line that matched, each match
    highlighted. Without a search, rows are painted as any list's."""

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.search = ""

    def _html(self, option: QStyleOptionViewItem, index: QModelIndex) -> str:
        selected = option.state & QStyle.State_Selected
        colour = option.palette.color(QPalette.HighlightedText if selected else QPalette.Text).name()
        title = index.data(TITLE_ROLE) or index.data(Qt.DisplayRole) or ""
        mark = WRITING if (index.data(Qt.DisplayRole) or "").startswith(WRITING) else ""
        text = html.escape(mark) + highlighted(title, self.search)
        line = index.data(SNIPPET_ROLE)
        if line:
            text += f"<br><small>{highlighted(line, self.search)}</small>"
        return f'<span style="color:{colour}; white-space:pre">{text}</span>'

    def _document(self, option: QStyleOptionViewItem, index: QModelIndex) -> QTextDocument:
        document = QTextDocument()
        document.setDefaultFont(option.font)
        document.setDocumentMargin(1)
        document.setHtml(self._html(option, index))
        return document

    def paint(self, painter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        if not self.search:
            super().paint(painter, option, index)
            return
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        opt.text = ""
        widget = opt.widget
        widget.style().drawControl(QStyle.CE_ItemViewItem, opt, painter, widget)
        document = self._document(opt, index)
        painter.save()
        painter.translate(opt.rect.left() + 3, opt.rect.top())
        painter.setClipRect(0, 0, opt.rect.width() - 6, opt.rect.height())
        document.drawContents(painter)
        painter.restore()

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:
        size = super().sizeHint(option, index)
        if self.search and index.data(SNIPPET_ROLE):
            opt = QStyleOptionViewItem(option)
            self.initStyleOption(opt, index)
            size.setHeight(max(size.height(), round(self._document(opt, index).size().height()) + 2))
        return size


class _List(QListWidget):
    def mousePressEvent(self, event) -> None:
        super().mousePressEvent(event)
        # Opening the row pressed can refill the list in another order (the conversation left was changed):
        # the highlight then follows the conversation opened, not the row that is now under the mouse.
        current = self.currentItem()
        if current is not None and not current.isSelected():
            self.setCurrentItem(current)


class Sidebar(QWidget):
    selected = Signal(int)  # conversation id
    new_chat = Signal()
    new_notebook = Signal()
    rename_requested = Signal()  # of the current conversation
    delete_requested = Signal()  # of the current conversation
    search_changed = Signal(str)
    typed = Signal(str)  # text typed while the list has the focus: it belongs in the message box

    def __init__(self, parent=None):
        super().__init__(parent)
        self._writing: int | None = None  # the conversation the model is writing in
        self.search = QLineEdit(placeholderText="Search conversations (Ctrl+F)", accessibleName="Search conversations")
        self.search.setClearButtonEnabled(True)
        self.search.setToolTip("Esc clears the search")
        self.search.textChanged.connect(self.search_changed)
        self.search.installEventFilter(self)
        self.no_match = QLabel(wordWrap=True)  # what an empty result says
        self.no_match.setObjectName("no-match")
        self.no_match.setStyleSheet("QLabel { color: palette(placeholder-text); }")
        self.no_match.hide()
        self.list = _List(accessibleName="Conversations")
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.list.setTextElideMode(Qt.ElideRight)
        self.delegate = _MatchDelegate(self.list)
        self.list.setItemDelegate(self.delegate)
        self.list.currentItemChanged.connect(self._current_changed)
        self.list.setContextMenuPolicy(Qt.ActionsContextMenu)
        self.list.installEventFilter(self)
        for text, signal in (("Rename…", self.rename_requested), ("Delete…", self.delete_requested)):
            act = QAction(text, self.list)
            act.triggered.connect(lambda _=False, sig=signal: sig.emit() if self.current_id() else None)
            self.list.addAction(act)
        QShortcut(QKeySequence("Delete"), self.list, activated=self.delete_requested.emit)
        new_chat = QPushButton("New chat")
        new_chat.setToolTip("Ctrl+N")
        new_chat.clicked.connect(self.new_chat)
        new_notebook = QPushButton("New notebook")
        new_notebook.setToolTip("Ctrl+Shift+N")
        new_notebook.clicked.connect(self.new_notebook)
        buttons = QHBoxLayout()
        buttons.addWidget(new_chat)
        buttons.addWidget(new_notebook)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 0, 6)
        layout.addLayout(buttons)
        layout.addWidget(self.search)
        layout.addWidget(self.no_match)
        layout.addWidget(self.list)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        """Letters typed in the list go to the message box (the list keeps Delete, F2 and the arrows); Esc in a
        search that holds text clears it."""
        if watched is self.list and event.type() == QEvent.KeyPress:
            text = event.text()
            plain = not event.modifiers() & (Qt.ControlModifier | Qt.AltModifier | Qt.MetaModifier)
            if plain and text and text.isprintable():
                self.typed.emit(text)
                return True
        if watched is self.search and event.type() in (QEvent.ShortcutOverride, QEvent.KeyPress) \
                and event.key() == Qt.Key_Escape and self.search.text():
            if event.type() == QEvent.KeyPress:
                self.search.clear()
            event.accept()  # Esc is the search's here, not the window's Stop
            return True
        return super().eventFilter(watched, event)

    def _current_changed(self, current: QListWidgetItem | None, _previous) -> None:
        if current is not None:
            self.selected.emit(current.data(Qt.UserRole))

    def search_text(self) -> str:
        return self.search.text()

    def clear_search(self) -> None:
        self.search.clear()

    def focus_search(self) -> None:
        self.search.setFocus()
        self.search.selectAll()

    def neighbour(self, conversation_id: int | None, step: int) -> int | None:
        """The conversation `step` rows below (or above) this one in the list as shown, going round past
        either end as Ctrl+Tab goes round a browser's tabs; None for an empty list. One not in the list (none
        open, or not matching the search): the first row, or the last going up."""
        ids = [self.list.item(i).data(Qt.UserRole) for i in range(self.list.count())]
        if not ids:
            return None
        if conversation_id not in ids:
            return ids[0] if step > 0 else ids[-1]
        return ids[(ids.index(conversation_id) + step) % len(ids)]

    def current_id(self) -> int | None:
        item = self.list.currentItem()
        return item.data(Qt.UserRole) if item else None

    def show_conversations(self, conversations: list[Conversation], current: int | None,
                           matched: dict[int, str] | None = None) -> None:
        """Refill the list without emitting `selected` for the item that stays current. `matched`: while
        searching, the text each conversation was found in (a message, a notebook's text), when not its title."""
        search = self.search.text().strip()
        self.delegate.search = search
        self.list.blockSignals(True)
        self.list.clear()
        for conv in conversations:
            item = QListWidgetItem()
            item.setData(Qt.UserRole, conv.id)
            item.setData(TITLE_ROLE, conv.title)
            item.setData(ABOUT_ROLE, f"{conv.mode}, last changed {conv.updated_at[:16].replace('T', ' ')} UTC")
            if search and search.lower() not in conv.title.lower():
                item.setData(SNIPPET_ROLE, snippet((matched or {}).get(conv.id, ""), search))
            if conv.mode == "notebook":
                font = item.font()
                font.setItalic(True)
                item.setFont(font)
            self.list.addItem(item)
            self._label(item)
            if conv.id == current:
                self.list.setCurrentItem(item)
        self.list.blockSignals(False)
        self.no_match.setText(f"No conversation has “{search}”. Esc clears the search." if search else "")
        self.no_match.setVisible(bool(search) and not conversations)

    def set_writing(self, conversation_id: int | None) -> None:
        """Mark the conversation the model is writing in (None: it writes in none)."""
        self._writing = conversation_id
        for i in range(self.list.count()):
            self._label(self.list.item(i))

    def _label(self, item: QListWidgetItem) -> None:
        """An item's text, tooltip and what a screen reader says, with the mark of writing if it is written in."""
        title, writing = item.data(TITLE_ROLE), item.data(Qt.UserRole) == self._writing
        item.setText(WRITING + title if writing else title)
        line = item.data(SNIPPET_ROLE)
        item.setData(Qt.AccessibleTextRole, title + (", the model is writing here" if writing else "") +
                     (f", found in: {line}" if line else ""))
        item.setToolTip("\n".join(part for part in (title, item.data(ABOUT_ROLE), line,
                                                  "The model is writing here…" if writing else "") if part))
