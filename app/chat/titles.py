"""What a conversation is called: "New chat" or "Notebook" until it has words, then its first words
(`title_from`). No Qt."""

from __future__ import annotations

TITLE_LENGTH = 48
NEW_CHAT = "New chat"  # a new chat's title, until its first message names it
NOTEBOOK_TITLE = "Notebook"  # a new notebook's, until it has words to be named after


def title_from(text: str) -> str:
    """A conversation's title from its first message: one line, at most TITLE_LENGTH characters."""
    line = " ".join(text.split())
    return line if len(line) <= TITLE_LENGTH else line[: TITLE_LENGTH - 1] + "…"
