"""The gpt2-desktop window (PySide6). Talks to the engine only through a worker on its own thread."""
