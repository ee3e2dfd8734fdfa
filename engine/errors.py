"""The few exception types the engine raises, each with a message written for a person."""


class EngineError(Exception):
    """Base class: anything the engine refuses, with a message fit to show a user."""


class ModelLoadError(EngineError):
    """A model folder is missing, incomplete, corrupt or of an unsupported kind."""


class SettingsError(EngineError):
    """A generation setting or command-line value is impossible."""
