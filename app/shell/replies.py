"""The engine's answers, taken to the page that asked: a reply's text into the chat, the notebook or the Tasks
view, the figures into the status bar, a failure into the banner; and the requests of the pages that are not a
conversation (a task, a multiple choice, the notebook's suggestions, an analysis).

A conversation's own requests are app.chat.conversations'; `Replies` shows what comes back for them too, and
hands a finished or failed one to it to save.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal

from app.chat.conversations import ConversationController
from app.chat.page import ChatPage
from app.engine_link.requests import ActiveRequest, RequestController
from app.notebook.page import NotebookPage
from app.notice import Problem, in_window_terms
from app.probe.analysis_view import AnalysisView
from app.settings import AppSettings
from app.shell.status_bar import StatusBar
from app.tasks.view import TasksView

if TYPE_CHECKING:
    from engine.inference.generate import Done
    from engine.inference.scoring import OptionScore

REPLY_OF = {"chat": "conversation", "notebook": "text"}  # what a reply's figures are about (else: "prompt")


class Replies(QObject):
    problem = Signal(object)  # an app.notice.Problem for the banner
    changed = Signal()  # a request started or ended: the buttons follow
    ended = Signal()  # a reply ended (a model waiting for it may load now)

    def __init__(self, requests: RequestController, settings: AppSettings, conversations: ConversationController,
                 chat: ChatPage, notebook: NotebookPage, tasks: TasksView, analysis: AnalysisView,
                 status_bar: StatusBar, parent: QObject | None = None):
        super().__init__(parent)
        self.requests, self.settings, self.conversations = requests, settings, conversations
        self.chat, self.notebook, self.tasks, self.analysis = chat, notebook, tasks, analysis
        self.status_bar = status_bar
        requests.started.connect(self._on_started)
        requests.tokens.connect(self._on_tokens)
        requests.finished.connect(self._on_finished)
        requests.failed.connect(self._on_failed)
        requests.chosen.connect(self._on_chosen)
        requests.suggested.connect(self._on_suggested)
        requests.progress.connect(lambda _request, done, total: analysis.show_progress(done, total))
        requests.analysed.connect(self._on_analysed)

    def show_context(self) -> None:
        """The status bar's context figure: the open conversation's."""
        self.status_bar.show_context(self.conversations.context_tokens())

    # what the pages ask

    def run_task(self, prompt: str, task_settings: dict) -> None:
        if self._ready_for_task():
            self.tasks.set_running(True)
            self.requests.generate("task", prompt, {**self.settings.sampling(), **task_settings})

    def run_choice(self, context: str, options: list, normalise: bool) -> None:
        if self._ready_for_task():
            self.tasks.set_running(True)
            self.requests.choose(context, options, normalise)

    def _ready_for_task(self) -> bool:
        problem = self.requests.why_not_ready()
        if problem:
            self.tasks.say(problem, error=True)
        return problem is None

    def suggest(self, prompt: str) -> None:
        """Ctrl+Space in the notebook: three short sampled continuations from the cursor."""
        problem = self.requests.why_not_ready()
        if problem:
            self.status_bar.showMessage(problem, 5000)
            return
        self.status_bar.showMessage("Suggesting…")  # until they come
        self.requests.suggest(prompt or "\n", {**self.settings.sampling(), "stop": []})

    def run_analysis(self, text: str) -> None:
        problem = self.requests.why_not_ready()
        if problem:
            self.analysis.say(problem, error=True)
            return
        self.analysis.set_running(True, text)
        self.requests.analyse(text)

    # what the engine sends back

    def _on_started(self, request: ActiveRequest) -> None:
        """The last reply's figures go; a reply written into the open conversation has its context counted live."""
        here = request.kind in ("chat", "notebook") and request.conversation_id == self.conversations.current_id
        self.status_bar.begin_request(self.conversations.context_tokens() if here else None)
        self.changed.emit()

    def _on_tokens(self, active: ActiveRequest, text: str) -> None:
        if active.detached:
            return
        self.status_bar.show_progress(active)
        if active.kind == "chat":
            self.chat.append(text)
        elif active.kind == "task":
            self.tasks.append_output(text)
        else:
            self.notebook.append(text)

    def _on_finished(self, active: ActiveRequest, done: Done) -> None:
        if active.kind == "task":
            self.tasks.set_running(False)
            self.tasks.show_done(done)
        else:
            self.conversations.save_reply(active, done.text, done.stop_reason.value, done.context_tokens)
        if active.detached:  # it went on in another conversation than the one shown: its figures are not this one's
            self.status_bar.set_busy(False)
        else:
            self.status_bar.show_reply(done, REPLY_OF.get(active.kind, "prompt"))
        if active.kind != "task" and not active.detached:
            self.show_context()  # the same figure as when the conversation is opened again
            self.conversations.count_draft()
        self.changed.emit()
        self.ended.emit()

    def _on_chosen(self, _request: ActiveRequest, scores: list[OptionScore]) -> None:
        self.status_bar.set_busy(False)
        self.tasks.set_running(False)
        self.tasks.show_scores(scores)
        self.changed.emit()

    def _on_suggested(self, _request: ActiveRequest, texts: list) -> None:
        self.status_bar.set_busy(False)
        self.status_bar.clearMessage()
        self.changed.emit()
        if texts:
            self.notebook.show_suggestions(texts)
        else:
            self.status_bar.showMessage("The model had nothing to suggest here.", 5000)

    def _on_analysed(self, _request: ActiveRequest, analysis) -> None:
        self.status_bar.set_busy(False)
        if analysis is None:
            self.analysis.show_cancelled()
        else:
            self.analysis.show_analysis(analysis)
        self.changed.emit()

    def _on_failed(self, request: ActiveRequest, message: str) -> None:
        if request.kind == "analysis":
            self.analysis.set_running(False)
            self.analysis.say(message, error=True)
            self.status_bar.set_busy(False)
            self.changed.emit()
            return
        if request.kind in ("chat", "notebook") and request.text.strip():
            self.conversations.save_reply(request, request.text, "interrupted")  # what came is kept, and marked
        self.conversations.forget_failed()
        self.show_context()  # not the last finished reply's figure
        self.tasks.set_running(False)
        self.status_bar.set_busy(False)
        if request.kind == "suggest":
            self.status_bar.clearMessage()  # "Suggesting…"
        self.problem.emit(Problem(f"Generation failed: {in_window_terms(message)}", "generation",
                                  request.conversation_id if not request.detached else None))
        self.changed.emit()
