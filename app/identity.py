"""What the desktop knows the app by: its name, its .desktop entry and its icon (the window and the
self-test set the same)."""

from __future__ import annotations

from importlib import resources

from PySide6.QtGui import QIcon


def window_icon():
    """The app's icon at every size shipped in assets/icons/ (found with importlib.resources)."""
    icon = QIcon()
    folder = resources.files("assets") / "icons"
    for png in sorted(p.name for p in folder.iterdir() if p.name.endswith(".png")):
        icon.addFile(str(folder / png))
    return icon


def set_app_identity(app) -> None:
    """Name, display name and icon of the QApplication, the same for the window and the self-test."""
    app.setApplicationName("gpt2-desktop")
    app.setApplicationDisplayName("gpt2-desktop")
    app.setDesktopFileName("gpt2-desktop")  # Wayland/X11 match the window to the installed .desktop entry
    app.setWindowIcon(window_icon())
