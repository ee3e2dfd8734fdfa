"""Where the user's files live (platformdirs, app name gpt2-desktop); overridable for tests and portable use."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "gpt2-desktop"


def data_dir() -> Path:
    return Path(os.environ.get("GPT2_DESKTOP_DATA_DIR") or platformdirs.user_data_dir(APP_NAME, appauthor=False))


def config_dir() -> Path:
    return Path(os.environ.get("GPT2_DESKTOP_CONFIG_DIR") or platformdirs.user_config_dir(APP_NAME, appauthor=False))


def user_templates_dir() -> Path:
    return config_dir() / "templates"
