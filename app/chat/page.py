"""The chat page: the transcript, the message box with its Send/Stop button, and the edit hint."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QTextCursor
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from app.chat.composer import Composer
from app.chat.options import ChatOptions
from app.chat.transcript import TranscriptView
from app.chat.welcome import WelcomePanel
from app.history.records import Message
from app.probe.probabilities import Colouring, Legend
from app.probe.token_data import ReplyTokens


class ChatPage(QWidget):
    send_requested = Signal()  # Enter in the message box, or Send
    stop_requested = Signal()  # Stop, while a reply is being written
    message_action = Signal(str, int)  # "copy" | "regenerate" | "continue" | "edit" | "retry" | "older" | "newer", id
    edit_last_requested = Signal()  # Up in the empty message box
    alternative_picked = Signal(int, int, object)  # a reply's id, a token's index, the Choice to continue from
    draft_due = Signal()  # the unsent message changed a moment ago: time to keep it
    count_due = Signal()  # the message box changed a moment ago: time to count its tokens
    model_chosen = Signal(str)  # for the open conversation: a model's name ("": none of its own)
    preset_chosen = Signal(str)  # for the open conversation: a sampling preset ("": the settings panel's values)
    preamble_changed = Signal(str)  # the open conversation's preamble, a moment after an edit
    models_requested = Signal()  # the first-run panel's "Get GPT-2"
    welcome_dismissed = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.editing_id: int | None = None  # the user message being edited, to be resent
        self._set_aside = ""  # the unsent message, while the message box holds a message being edited
        self._generating = False
        self.transcript = TranscriptView()
        self.transcript.action.connect(self.message_action)
        self.options = ChatOptions()
        self.options.model_chosen.connect(self.model_chosen)
        self.options.preset_chosen.connect(self.preset_chosen)
        self.options.preamble_changed.connect(self.preamble_changed)
        self.options.preamble_changed.connect(self.options.preamble_kept)
        self.transcript.alternative_picked.connect(self.alternative_picked)
        self.legend = Legend()
        self.welcome = WelcomePanel()
        self.welcome.models_requested.connect(self.models_requested)
        self.welcome.dismissed.connect(self._dismiss_welcome)
        self._welcome_wanted = False  # until dismissed: shown while the chat is empty
        self.composer = Composer()
        self.composer.setMaximumHeight(120)
        self.composer.submitted.connect(self.send_requested)
        self.composer.edit_last.connect(self.edit_last_requested)
        self.composer.to_tokens.connect(self._to_tokens)
        self._draft_timer = QTimer(self, singleShot=True, interval=500)
        self._draft_timer.timeout.connect(self.draft_due)
        self.composer.textChanged.connect(self._draft_timer.start)
        self._count_timer = QTimer(self, singleShot=True, interval=150)
        self._counting = True
        self._count_timer.timeout.connect(lambda: self.count_due.emit() if self._counting else None)
        self.composer.textChanged.connect(self._count_timer.start)
        self.count_label = QLabel()  # `23 tokens · conversation 1,203 / 1,024`, under the message box
        self.count_label.setObjectName("token-count")
        self.count_label.setStyleSheet('QLabel { color: palette(placeholder-text); } '
                                       'QLabel[over="true"] { color: #c0392b; }')
        self.send_button = QPushButton("Send")
        self.send_button.setMinimumWidth(80)
        self.send_button.clicked.connect(self._send_or_stop)
        self.edit_hint = QLabel("Editing a message: Enter sends it as a new version (the old one and its "
                                "reply are kept); Esc cancels.")
        self.edit_hint.hide()
        composer_row = QHBoxLayout()
        composer_row.addWidget(self.composer, 1)
        composer_row.addWidget(self.send_button, 0, Qt.AlignBottom)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.options)
        layout.addWidget(self.welcome)
        layout.addWidget(self.legend)
        layout.addWidget(self.transcript, 1)
        layout.addWidget(self.edit_hint)
        layout.addLayout(composer_row)
        layout.addWidget(self.count_label)

    def _to_tokens(self, step: int) -> None:
        """Alt+← → in the message box: the keyboard goes to the replies' tokens (from the end, the last reply's)."""
        if self.transcript.token_cursor.enter(step):
            self.transcript.setFocus(Qt.OtherFocusReason)

    def _send_or_stop(self) -> None:
        self.stop_requested.emit() if self._generating else self.send_requested.emit()

    def set_state(self, generating: bool, ready: bool) -> None:
        """`generating`: the engine is busy (the button stops it); `ready`: a model is loaded."""
        self._generating = generating
        self.transcript.pickable = not generating
        self.send_button.setText("Stop" if generating else "Send")
        self.send_button.setToolTip("Esc" if generating else "Enter")
        self.send_button.setEnabled(generating or ready)

    # the message box

    def draft(self) -> str:
        """What the message box holds (a message being edited, while editing)."""
        return self.composer.toPlainText()

    def unsent(self) -> str:
        """The person's own unsent message: the message box, or what was set aside to edit a message."""
        return self._set_aside if self.editing_id is not None else self.composer.toPlainText()

    def set_draft(self, text: str, focus: bool = True) -> None:
        self.composer.setPlainText(text)
        self.composer.moveCursor(QTextCursor.End)
        if focus:
            self.composer.setFocus()

    def show_count(self, draft_tokens: int | None, total: int | None = None, window: int | None = None) -> None:
        """Under the message box: the message's tokens and the conversation's with it, against the model's
        window (None: nothing to count, no model). With no count of the message but a window (a remote model,
        whose server counts): what the last reply filled, if known."""
        if draft_tokens is None and not window:
            self.count_label.setText("")
            return
        over = False
        if draft_tokens is None:  # a remote model: its server counts
            text = "Tokens are counted by the server when sent"
            if total is not None:
                text += f" · the last reply filled {total:,} / {window:,}"
        else:
            text = f"{draft_tokens:,} token{'s' if draft_tokens != 1 else ''}"
            if total is not None and window:
                text += f" · conversation {total:,} / {window:,}"
                over = total > window
                if over:
                    text += ": the oldest turns will be left out"
        self.count_label.setText(text)
        self.count_label.setProperty("over", over)
        self.count_label.style().polish(self.count_label)

    def stop_counting(self) -> None:
        """The window is closing: no count is due any more."""
        self._count_timer.stop()
        self._counting = False

    def draft_kept(self) -> None:
        """The draft was just saved: no need to save it again in a moment."""
        self._draft_timer.stop()

    def clear_draft(self) -> None:
        self.composer.clear()

    def focus_composer(self) -> None:
        self.composer.setFocus()

    def start_edit(self, message_id: int, text: str, focus: bool = True) -> None:
        """Put a user message in the message box; sending it replaces that message and what follows. The unsent
        message that was there is set aside, and comes back when the edit is sent or cancelled (Esc). `text`: the
        message's, or an edit of it begun earlier (kept like a draft)."""
        if self.editing_id is None:
            self._set_aside = self.composer.toPlainText()
        self.editing_id = message_id
        self.composer.setPlainText(text)
        self.composer.moveCursor(QTextCursor.End)
        if focus:
            self.composer.setFocus()
        self.edit_hint.show()

    def edit_in_progress(self) -> tuple[int, str] | None:
        """The message being edited and the edit's text so far (None: no edit in progress)."""
        return (self.editing_id, self.composer.toPlainText()) if self.editing_id is not None else None

    def cancel_edit(self) -> None:
        """Stop editing (Esc, or the edit was sent): the unsent message comes back."""
        if self.editing_id is not None:
            self.editing_id = None
            self.set_draft(self._set_aside, focus=False)
            self._set_aside = ""
            self._draft_timer.start()  # the edit is no longer in progress: kept so in a moment
        self.edit_hint.hide()

    # the conversation's options

    def set_model_choices(self, names: list[str]) -> None:
        """The models a conversation can be written with (their names, as the engine loads them)."""
        self.options.set_model_choices(names)

    def show_options(self, model: str | None, preset: str | None, preamble: str, collapse: bool = True) -> None:
        """The open conversation's model (None: the one in use), preset (None: the panel's) and preamble;
        `collapse`: another conversation is shown (its preamble box closes)."""
        self.options.show_options(model, preset, preamble, collapse)

    def keep_options(self) -> None:
        """An edit of the preamble not yet kept is kept now (another conversation is about to open)."""
        self.options.flush()

    # the transcript

    def show_messages(self, messages: list[Message], versions: dict[int, tuple[int, int]] | None = None,
                      to_end: bool = False, token_data: dict[int, ReplyTokens] | None = None, writing: bool = False,
                      stay: bool = False, focus_links: tuple[str, ...] = ()) -> None:
        """`versions`: for a message with several, its place among them and how many (1-based). `to_end`: show
        the end (a conversation opened, a message sent); otherwise a transcript scrolled up stays where it is
        (`stay`: one at the end too). `token_data`: the kept tokens of replies, coloured while the colouring is
        on. `writing`: a reply to the last message is being written. `focus_links`: a link the keyboard was on
        is given back its focus (the first of these found: `older:ID`, ...)."""
        self.transcript.render(messages, versions or {}, to_end, token_data, writing, stay, focus_links)
        self.welcome.setVisible(self._welcome_wanted and not messages)

    def set_welcome(self, wanted: bool) -> None:
        """Whether the first-run panel shows in an empty chat (until it is dismissed)."""
        self._welcome_wanted = wanted
        self.welcome.setVisible(wanted and self.transcript.document().isEmpty())

    def set_welcome_model(self, name: str, embedded: bool, server: str = "") -> None:
        """Which model the first-run panel says answers here (the embedded one, another, one on `server`)."""
        self.welcome.set_model(name, embedded, server)

    def welcome_shown(self) -> bool:
        return self.welcome.isVisibleTo(self)

    def _dismiss_welcome(self) -> None:
        self.set_welcome(False)
        self.welcome_dismissed.emit()
        self.composer.setFocus()

    def set_colouring(self, colouring: Colouring | None) -> None:
        """Colour replies by what the model predicted, with a legend (None: plain); shown at the next render."""
        self.transcript.set_colouring(colouring)
        self.legend.show_for(colouring)

    def begin_stream(self, writer: str) -> None:
        """A reply starts at the end, headed by `writer` (the model's name)."""
        self.welcome.hide()
        self.transcript.begin_stream(writer=writer)

    def append(self, text: str) -> None:
        self.transcript.append(text)
