"""Help > Keyboard shortcuts: every menu command's shortcut (from app.shell.actions, the table the menus are built
from) and the keys each view handles itself (its module's `KEYS`), in one searchable list."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QAbstractItemView, QDialog, QDialogButtonBox, QHeaderView, QLabel, QLineEdit,
                               QTableWidget, QTableWidgetItem, QVBoxLayout)

from app.chat import composer, sidebar
from app.notebook import page as notebook_page
from app.probe import analysis_view, token_cursor
from app.shell.actions import menu_shortcuts
from app.tasks import view as tasks

VIEWS = (("Message box", composer.KEYS), ("Notebook", notebook_page.KEYS), ("Probabilities", token_cursor.KEYS),
         ("Conversation list", sidebar.KEYS), ("Tasks", tasks.KEYS), ("Analyse", analysis_view.KEYS),
         ("Anywhere", (("Esc", "stop the model writing"),)))


def all_shortcuts() -> list[tuple[str, str, str]]:
    """(where, keys, what) for every shortcut of the window."""
    return [(menu, keys, command) for menu, command, keys in menu_shortcuts()] + \
        [(where, keys, what) for where, rows in VIEWS for keys, what in rows]


class ShortcutsPage(QDialog):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        self.filter = QLineEdit(placeholderText="Find a shortcut or a command", clearButtonEnabled=True)
        self.filter.setAccessibleName("Find a shortcut")
        self.table = QTableWidget(0, 3)
        self.table.setAccessibleName("Keyboard shortcuts")
        self.table.setHorizontalHeaderLabels(["Where", "Keys", "What it does"])
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.verticalHeader().hide()
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.Stretch)
        rows = all_shortcuts()
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, text in enumerate(row):
                self.table.setItem(r, c, QTableWidgetItem(text))
        self.nothing = QLabel()  # says so when no row matches the search, rather than an empty table
        self.nothing.hide()
        self.filter.textChanged.connect(self._filter)
        buttons = QDialogButtonBox(QDialogButtonBox.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.filter)
        layout.addWidget(self.nothing)
        layout.addWidget(self.table, 1)
        layout.addWidget(buttons)
        self.resize(720, 520)
        self.filter.setFocus()

    def _filter(self, text: str) -> None:
        wanted = text.strip().lower()
        for r in range(self.table.rowCount()):
            shown = " ".join(self.table.item(r, c).text() for c in range(3)).lower()
            self.table.setRowHidden(r, bool(wanted) and wanted not in shown)
        self.nothing.setText(f"No shortcut or command has “{text.strip()}” in it." if wanted else "")
        self.nothing.setVisible(bool(wanted) and not self.visible_rows())

    def visible_rows(self) -> list[tuple[str, str, str]]:
        return [tuple(self.table.item(r, c).text() for c in range(3)) for r in range(self.table.rowCount())
                if not self.table.isRowHidden(r)]

    def keyPressEvent(self, event) -> None:
        if event.key() == Qt.Key_Escape and self.filter.text():
            self.filter.clear()
            return
        super().keyPressEvent(event)
