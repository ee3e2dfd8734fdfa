"""Using a loaded model: the generation stream, sampling and its settings, scoring, chat formats
and prompt templates. Imports `engine.core`, never the store or the tooling.

This file imports nothing, so that `engine.inference.settings` stays free of torch.
"""
