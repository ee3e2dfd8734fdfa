"""The version, from one source: the installed package's metadata (pyproject.toml)."""

from importlib.metadata import PackageNotFoundError, version as _version


def version() -> str:
    try:
        return _version("gpt2-desktop")
    except PackageNotFoundError:
        return "unknown"
