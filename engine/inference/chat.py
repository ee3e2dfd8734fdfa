"""Chat templates: how a list of turns becomes one prompt for a model that only continues text."""

from __future__ import annotations

from dataclasses import dataclass

from engine.core.tokenizer import ENDOFTEXT


@dataclass(frozen=True)
class Turn:
    role: str  # "user" | "assistant" | "system"
    content: str


@dataclass(frozen=True)
class ChatPrompt:
    text: str
    stop: tuple[str, ...]


TRANSCRIPT_INTRO = "The following is a friendly conversation between a User and a helpful Assistant.\n\n"
SPEAKERS = {"user": "User", "assistant": "Assistant"}


def chat_style(model_name: str) -> str:
    """"dialogpt" for models trained on <|endoftext|>-separated turns, else "transcript"."""
    return "dialogpt" if "dialogpt" in model_name.lower() else "transcript"


def format_chat(turns: list[Turn], style: str) -> ChatPrompt:
    """The prompt that asks the model for the next assistant turn."""
    if style == "dialogpt":
        text = "".join(t.content + ENDOFTEXT for t in turns if t.role != "system")
        return ChatPrompt(text, ())
    intro = "".join(t.content.strip() + "\n\n" for t in turns if t.role == "system") or TRANSCRIPT_INTRO
    lines = [f"{SPEAKERS[t.role]}: {t.content.strip()}" for t in turns if t.role in SPEAKERS]
    return ChatPrompt(intro + "\n".join(lines) + "\nAssistant:", ("\nUser:", "\nAssistant:"))
