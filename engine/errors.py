"""Every exception type the engine raises, each with a message written for a person.

Nothing here imports torch: the command line catches these before it has loaded a model.
"""


def first_line(exc: BaseException) -> str:
    """The first line of another library's exception, to quote inside a message of one line."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class EngineError(Exception):
    """Base class: anything the engine refuses, with a message fit to show a user."""


class ModelLoadError(EngineError):
    """A model folder is missing, incomplete, corrupt or of an unsupported kind."""


class SettingsError(EngineError):
    """A generation setting or command-line value is impossible."""


class UsageError(SettingsError):
    """A mistake in how the command line was called: printed as it is, one line, exit status 2."""


class TemplateError(SettingsError):
    """A template file is malformed, or the values given for it do not fit."""


class TrainingError(EngineError):
    """Training cannot go on (a checkpoint or the result cannot be written); what was saved is kept."""


class StorageError(EngineError):
    """A file or folder cannot be written (a full disk, a read-only folder); what was there is kept."""


class HubError(EngineError):
    """A download, import or removal that cannot be done, said plainly."""


class HubOffline(HubError):
    """The Hub cannot be reached; everything already on disk still works."""


class DownloadCancelled(HubError):
    """The user cancelled a download; the files already complete are kept."""


class RemoteError(EngineError):
    """A remote server that cannot be reached, refuses a request, or goes away mid-reply. `partial` is the
    text it had written before it went away, kept for the caller to show; `status` the HTTP status of a
    refusal (0: none) and `detail` the server's error object, as it sent it."""

    def __init__(self, message: str, partial: str = "", status: int = 0, detail: dict | None = None):
        super().__init__(message)
        self.partial = partial
        self.status = status
        self.detail = detail or {}
