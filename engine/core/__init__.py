"""The model itself: config, the GPT-2 network and its KV cache, reading checkpoints, the tokenizer,
precision modes and their prepared copies, the compiled CPU step and the CUDA graph.

Imports nothing but `engine.errors`, `engine.paths` and its own modules. This file imports nothing,
so that `engine.core.precisions` (which the command line's help reads) does not pay for torch.
"""
