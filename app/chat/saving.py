"""What a chat or notebook request wrote, saved to the history when it ends (`save_reply`: finished, stopped or
cut short, in one transaction, with the model, the settings, what ran it and the token data), and what the pages
show after a request failed (`forget_failed`).

`ReplySaving` is a part of ConversationController (app.chat.conversations), which mixes it in: it works on the
controller's history, pages and requests and the open conversation (`current_id`), and keeps what it saved in
the controller's token data (`_decoded`) and a remote model's counts (`_counted`, `_counted_text`), all set up by
the controller.
"""

from __future__ import annotations

from app.chat.reporting import reporting
from app.engine_link.requests import ActiveRequest
from app.history.store import FIRST


class ReplySaving:
    """ConversationController's saving of what a request wrote."""

    @reporting
    def save_reply(self, active: ActiveRequest, text: str, stop_reason: str, context_tokens: int = 0) -> None:
        """Save a finished or stopped chat reply or notebook continuation (one transaction), with what the model
        predicted at each of its tokens. `text`: what the engine wrote (after the request's prefix, if any);
        `context_tokens`: how many tokens of the model's window its prompt and it filled (a remote model's
        count, shown while its conversation is)."""
        text = active.prefix + text
        data = active.token_data
        tokens = active.token_blob if data is not None and data.text() == text else None
        loaded = self.requests.model
        model = loaded.writer if loaded else None
        # Beside the sampling settings, what ran it: the same text and settings can differ by precision or device.
        settings = {**active.settings, **({"precision": loaded.precision, "device": loaded.device,
                                           "threads": self.settings.threads} if loaded else {})}
        if self.history.conversation(active.conversation_id) is None:
            return  # deleted meanwhile
        if active.kind == "chat":
            content = text.strip()
            if content or stop_reason != "cancelled":
                message_id = self.history.add_message(active.conversation_id, "assistant", content, model=model,
                                                      settings=settings, stop_reason=stop_reason,
                                                      after=active.reply_after or FIRST, tokens=tokens)
                if tokens is not None:
                    self._decoded[message_id] = data
                if context_tokens:
                    self._counted[message_id] = context_tokens
            if not active.detached and self.current_id == active.conversation_id:
                self.show_messages(self.history.messages(active.conversation_id))
        else:
            if active.detached:
                document = self.history.conversation(active.conversation_id).document + text
            else:
                self.notebook.end_continuation()
                document = self.notebook.document()
            replaced = next((m for m in self.history.messages(active.conversation_id) if m.id == active.replaces),
                            None) if active.replaces is not None else None
            message_id = self.history.add_message(active.conversation_id, "assistant", text, model=model,
                                                  settings=settings, stop_reason=stop_reason, document=document,
                                                  tokens=tokens,
                                                  after=(replaced.parent_id or FIRST) if replaced else None)
            if tokens is not None:
                self._decoded[message_id] = data
                if not active.detached:
                    self.notebook.mark_continuation(message_id, data)
            if context_tokens:
                self._counted_text[active.conversation_id] = (document, context_tokens)
            self._title_notebook(active.conversation_id, document)
        self.refresh()

    @reporting
    def forget_failed(self) -> None:
        """A request failed: the notebook is editable again, the chat shows what was saved."""
        self.notebook.end_continuation()
        if self.current_id is not None and self.pages.currentWidget() is self.chat:
            self.show_messages(self.history.messages(self.current_id))
