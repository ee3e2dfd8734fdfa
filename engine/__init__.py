"""The gpt2-desktop engine: load GPT-2 model folders, generate, score. Knows nothing of Qt."""

from engine.errors import EngineError, ModelLoadError, SettingsError
from engine.generate import Done, Generator, TokenEvent
from engine.loader import LoadedModel, load_model
from engine.sampling import SamplingSettings

__all__ = [
    "Done",
    "EngineError",
    "Generator",
    "LoadedModel",
    "ModelLoadError",
    "SamplingSettings",
    "SettingsError",
    "TokenEvent",
    "load_model",
]
