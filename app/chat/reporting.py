"""`reporting`: a ConversationController slot whose HistoryError becomes the controller's `problem` signal
(through its `history_failed`) instead of an error out of the event loop. No Qt."""

from __future__ import annotations

import functools

from app.history.errors import HistoryError


def reporting(method):
    """A slot whose HistoryError becomes the controller's `problem` signal (what it did before stays done)."""
    @functools.wraps(method)
    def slot(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except HistoryError as exc:
            self.history_failed(exc)
            return None
    return slot
