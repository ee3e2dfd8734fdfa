"""A conversation as the engine is asked it: its preamble and messages as turns (`turns_of`), the prompt and the
settings a chat reply is written with (`chat_request`), and how many tokens a prompt takes (`prompt_tokens`).
No Qt."""

from __future__ import annotations

from dataclasses import dataclass

from app.chat.presets import sampling_for
from app.history.records import Conversation, Message
from engine.core.tokenizer import GPT2Tokenizer
from engine.inference.chat import Turn, format_chat


def turns_of(conv: Conversation | None, messages: list[Message]) -> list[Turn]:
    """A conversation as turns for the prompt: its preamble (a system turn) first, if it has one."""
    preamble = [Turn("system", conv.preamble)] if conv is not None and conv.preamble.strip() else []
    return preamble + [Turn(m.role, m.content) for m in messages]


def prompt_tokens(tokenizer: GPT2Tokenizer, turns: list[Turn], chat_style: str) -> int:
    """How many tokens the prompt these turns make takes."""
    return len(tokenizer.encode(format_chat(turns, chat_style).text))


@dataclass(frozen=True)
class ChatRequest:
    text: str  # the prompt, and after it what the reply already says
    settings: dict  # the sampling values, with the next turn's stop sequences and the panel's
    written: str  # what the reply already says, as it follows the prompt ("": nothing yet)


def chat_request(conv: Conversation, messages: list[Message], chat_style: str, panel: dict,
                 written: str = "") -> ChatRequest:
    """A reply after `messages` of `conv`, with its preset over the settings panel's values (`panel`); `written`:
    the text a reply to continue already has (its tokens not kept)."""
    prompt = format_chat(turns_of(conv, messages), chat_style)
    sampling = sampling_for(conv.preset, panel)
    stops = list(dict.fromkeys([*prompt.stop, *sampling["stop"]]))  # the next turn's, and the panel's
    joint = " " if written and prompt.text.endswith(":") else ""  # "Assistant:" then the reply's words
    return ChatRequest(prompt.text + joint + written, {**sampling, "stop": stops}, joint + written)
