"""Guards against a Qt binding that corrupts reference counts (PySide6 6.12.0 under Python 3.11 did:
every void call or signal emit dropped a reference to None or a bool, and the app aborted after a
few thousand streamed tokens)."""

import sys

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QTextCursor
from PySide6.QtWidgets import QTextBrowser


class _Emitter(QObject):
    text = Signal(str)


def test_void_calls_and_emits_keep_reference_counts(qtbot):
    view = QTextBrowser()
    qtbot.addWidget(view)
    cursor = QTextCursor(view.document())
    emitter = _Emitter()
    calls = [lambda: cursor.insertText("a"), lambda: view.verticalScrollBar().setValue(0),
             lambda: emitter.text.emit("x")]
    for call in calls:
        call()
        before = sys.getrefcount(None), sys.getrefcount(True), sys.getrefcount(False)
        for _ in range(100):
            call()
        after = sys.getrefcount(None), sys.getrefcount(True), sys.getrefcount(False)
        assert all(a >= b - 5 for a, b in zip(after, before)), (before, after)
