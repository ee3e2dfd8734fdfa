"""The open notebook's text kept and continued: `store_document` (saved, and the notebook named after its first
words), `continue_notebook` (the model writes on at its end) and `pick_notebook_alternative` (a token of a
continuation changed for one of its alternatives, and the model goes on from there).

`NotebookActions` is a part of ConversationController (app.chat.conversations), which mixes it in: it works on the
controller's history, notebook page, requests and settings and the open conversation (`current_id`), all set up
by the controller.
"""

from __future__ import annotations

from app.chat.presets import sampling_for
from app.chat.reporting import reporting
from app.chat.titles import NOTEBOOK_TITLE, title_from
from app.engine_link.requests import ActiveRequest
from app.probe.token_data import TOP, Choice, ReplyTokens


class NotebookActions:
    """ConversationController's notebook: its text kept, continued, an alternative picked."""

    @reporting
    def store_document(self) -> None:
        """Save the notebook's text now, if a notebook is open (not while the model is continuing it: the
        continuation is saved with the text when it ends)."""
        self.notebook.cancel_autosave()
        if self.notebook.continuing():
            return
        conv = self._current() if self.pages.currentWidget() is self.notebook else None
        if conv is not None and conv.document != self.notebook.document():  # (unchanged: its place in the list stays)
            self.history.set_document(conv.id, self.notebook.document())
            self._title_notebook(conv.id, self.notebook.document())

    def _title_notebook(self, conversation_id: int, document: str) -> None:
        """A notebook still called "Notebook" is named after its first words once it has some."""
        conv = self.history.conversation(conversation_id)
        if conv is not None and conv.title == NOTEBOOK_TITLE and document.strip():
            self.history.rename_conversation(conversation_id, title_from(document))
            self.refresh()

    @reporting
    def continue_notebook(self) -> None:
        """Let the model continue the notebook's text at its end."""
        if not self._ready():
            return
        if self.current_id is None:
            self.current_id = self.history.create_conversation(NOTEBOOK_TITLE, "notebook")
            self.refresh()
        self.store_document()
        self.notebook.begin_continuation()
        self._start_continuation(self.notebook.document())

    @reporting
    def pick_notebook_alternative(self, message_id: int, index: int, choice: Choice) -> None:
        """A continuation's token's alternative was clicked: the text is cut at that token, the alternative put
        in its place and the model continues from it. The new continuation is saved as a version of the old
        one (kept in the history); Ctrl+Z brings the old text back."""
        if not self._ready() or self.current_id is None:
            return
        data = self.token_data([message_id]).get(message_id)
        position = self.notebook.token_position(message_id, index)
        if data is None or position is None:
            return
        old = next((m for m in self.history.messages(self.current_id) if m.id == message_id), None)
        picked = ReplyTokens.of([data.alternative_at(index, choice).token(index)])
        head = self.notebook.document()[:position]
        self.notebook.replace_from(position, choice.text)
        self.history.set_document(self.current_id, head)  # what the continuation is written after
        self.notebook.begin_continuation(start=position)
        request = self._start_continuation(head, prefix=picked)
        request.replaces = old.id if old is not None else None

    def _start_continuation(self, text: str, prefix: ReplyTokens | None = None) -> ActiveRequest:
        """Let the model write on after `text` in the open notebook (and after the tokens of `prefix`), with the
        notebook's preset over the settings panel's values (the panel's stops too)."""
        settings = sampling_for(self._current().preset, self.settings.sampling())
        return self.requests.generate("notebook", text, settings, self.current_id, top_logprobs=TOP, prefix=prefix)
