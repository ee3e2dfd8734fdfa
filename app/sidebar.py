"""The conversation list: search, new, rename, delete (its context menu, and the Delete key)."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence, QShortcut
from PySide6.QtWidgets import (QHBoxLayout, QLineEdit, QListWidget, QListWidgetItem, QPushButton, QVBoxLayout,
                               QWidget)

from app.history import Conversation


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
        self.search = QLineEdit(placeholderText="Search conversations (Ctrl+F)", accessibleName="Search conversations")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self.search_changed)
        self.list = QListWidget(accessibleName="Conversations")
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.list.setTextElideMode(Qt.ElideRight)
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
        layout.addWidget(self.list)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        """Letters typed in the list go to the message box (the list keeps Delete, F2 and the arrows)."""
        if watched is self.list and event.type() == QEvent.KeyPress:
            text = event.text()
            plain = not event.modifiers() & (Qt.ControlModifier | Qt.AltModifier | Qt.MetaModifier)
            if plain and text and text.isprintable():
                self.typed.emit(text)
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
        """The conversation `step` rows below (or above) this one in the list as shown; None past either end.
        One not in the list (none open, or not matching the search): the first row, or the last going up."""
        ids = [self.list.item(i).data(Qt.UserRole) for i in range(self.list.count())]
        if not ids:
            return None
        if conversation_id not in ids:
            return ids[0] if step > 0 else ids[-1]
        at = ids.index(conversation_id) + step
        return ids[at] if 0 <= at < len(ids) else None

    def current_id(self) -> int | None:
        item = self.list.currentItem()
        return item.data(Qt.UserRole) if item else None

    def show_conversations(self, conversations: list[Conversation], current: int | None) -> None:
        """Refill the list without emitting `selected` for the item that stays current."""
        self.list.blockSignals(True)
        self.list.clear()
        for conv in conversations:
            item = QListWidgetItem(conv.title)
            item.setData(Qt.UserRole, conv.id)
            if conv.mode == "notebook":
                font = item.font()
                font.setItalic(True)
                item.setFont(font)
            item.setToolTip(f"{conv.title}\n{conv.mode}, last changed {conv.updated_at[:16].replace('T', ' ')} UTC")
            self.list.addItem(item)
            if conv.id == current:
                self.list.setCurrentItem(item)
        self.list.blockSignals(False)
