"""Every menu command of the main window in one table: its menu, its words, its shortcuts and what it does.

The window builds its menus from `MENUS` (`build_menus`), and Help > Keyboard shortcuts lists the same
actions (app.shell.shortcuts_page), so the list of shortcuts cannot drift from the shortcuts themselves. Keys that
work inside one view only (the message box, the token cursor) are not menu commands; each view says them in
its own `KEYS`, which the shortcuts page lists too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMainWindow  # the MainWindow, which imports this table (so not imported here)


@dataclass(frozen=True)
class Action:
    text: str
    run: Callable[[QMainWindow], object]  # what it does, given the window
    keys: tuple[str, ...] = ()  # its shortcuts, in QKeySequence's portable form ("Ctrl+N")
    name: str = ""  # kept as `window.<name>` (for checkable actions and enabling)
    checkable: bool = False


SEPARATOR = None

MENUS: dict[str, list[Action | None]] = {
    "&File": [
        Action("Open model folder…", lambda w: w.model.choose_folder(), ("Ctrl+O",)),
        Action("Use the embedded model", lambda w: w.model.use(None)),
        SEPARATOR,
        Action("Export conversation…", lambda w: w.dialogs.export_conversation(), ("Ctrl+E",)),
        Action("Export all conversations…", lambda w: w.dialogs.export_all()),
        Action("Import conversations…", lambda w: w.dialogs.import_conversations()),
        SEPARATOR,
        Action("Quit", lambda w: w.close(), ("Ctrl+Q",)),
    ],
    "&Conversation": [
        Action("New chat", lambda w: w.conversations.new_chat(), ("Ctrl+N",)),
        Action("New notebook", lambda w: w.conversations.new_notebook(), ("Ctrl+Shift+N",)),
        Action("Next conversation", lambda w: w.conversations.next_conversation(), ("Ctrl+Tab", "Ctrl+PgDown")),
        Action("Previous conversation", lambda w: w.conversations.previous_conversation(),
               ("Ctrl+Shift+Tab", "Ctrl+PgUp")),
        Action("Search", lambda w: w.sidebar.focus_search(), ("Ctrl+F",)),
        SEPARATOR,
        Action("Regenerate the last reply", lambda w: w.conversations.regenerate(), ("Ctrl+R",), "regenerate_action"),
        Action("Continue the last reply", lambda w: w.conversations.continue_reply(), ("Ctrl+Shift+Return",),
               "continue_action"),
        Action("Retry the last message", lambda w: w.conversations.retry(), ("Ctrl+Shift+R",), "retry_action"),
        Action("Edit the last message", lambda w: w.conversations.edit_last(), ("Ctrl+Shift+E",)),
        Action("Copy the last reply", lambda w: w.conversations.copy_reply(), ("Ctrl+Shift+C",)),
        SEPARATOR,
        Action("Rename…", lambda w: w.dialogs.ask_rename(), ("F2",)),
        Action("Delete…", lambda w: w.dialogs.ask_delete(), ("Ctrl+Shift+Backspace",)),
    ],
    "&View": [
        Action("Conversations", lambda w: w.show_tab(w.splitter), ("Ctrl+1",)),
        Action("Tasks", lambda w: w.show_tab(w.tasks), ("Ctrl+2",)),
        Action("Models", lambda w: w.show_tab(w.models), ("Ctrl+3",)),
        Action("Server", lambda w: w.show_tab(w.server), ("Ctrl+4",)),
        Action("Analyse text", lambda w: w.show_analysis(), ("Ctrl+5",)),
        Action("Fine-tune", lambda w: w.show_tab(w.finetune), ("Ctrl+6",)),
        Action("Settings", lambda w: w.toggle_settings(), ("Ctrl+,",), "settings_action"),
        SEPARATOR,
        Action("Larger text", lambda w: w.change_text_size(1), ("Ctrl+=", "Ctrl++")),
        Action("Smaller text", lambda w: w.change_text_size(-1), ("Ctrl+-",)),
        Action("Default text size", lambda w: w.change_text_size(0), ("Ctrl+0",)),
        SEPARATOR,
        Action("Probabilities", lambda w: w.colouring_changed(), ("Ctrl+Shift+P",), "probabilities_action", True),
        Action("Colour by probability (not rank)", lambda w: w.colouring_changed(), (), "by_probability_action",
               True),
        Action("Colour-blind-safe colours", lambda w: w.colouring_changed(), (), "colour_blind_action", True),
    ],
    "&Help": [
        Action("Keyboard shortcuts", lambda w: w.show_shortcuts(), ("F1", "Ctrl+/")),
        Action("About gpt2-desktop", lambda w: w.show_about()),
    ],
}


def build_menus(window: QMainWindow) -> None:
    """The window's menu bar from MENUS; an action with a `name` is kept as that attribute of the window."""
    for title, rows in MENUS.items():
        menu = window.menuBar().addMenu(title)
        for row in rows:
            if row is None:
                menu.addSeparator()
                continue
            act = QAction(row.text, window, checkable=row.checkable)
            act.setShortcuts([QKeySequence(k) for k in row.keys])
            act.triggered.connect(lambda _checked=False, run=row.run: run(window))
            menu.addAction(act)
            if row.name:
                setattr(window, row.name, act)


def menu_shortcuts() -> list[tuple[str, str, str]]:
    """(menu, command, its shortcuts as the system writes them) for every command that has a shortcut."""
    out = []
    for title, rows in MENUS.items():
        for row in rows:
            if row is not None and row.keys:
                keys = ", ".join(QKeySequence(k).toString(QKeySequence.NativeText) for k in row.keys)
                out.append((title.replace("&", ""), row.text, keys))
    return out
