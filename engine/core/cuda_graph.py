"""One decoding step as a CUDA graph.

On a GPU, one GPT-2 step is a few hundred small kernels, and launching them one by one from Python
takes longer than running them. The step is captured once (GPT.decode_static has the same tensor
shapes at every position) and then replayed with a single launch per token.
"""

from __future__ import annotations

import torch

from engine.core.model import GPT, KVCache


class GraphedDecoder:
    """Replays a captured decode step over one zeroed KV cache, reused for every generation."""

    def __init__(self, model: GPT, length: int):
        self.cache: KVCache = model.new_cache(1, length, zeroed=True)
        device = self.cache.k.device
        self.token = torch.zeros((1, 1), dtype=torch.long, device=device)
        self.pos = torch.zeros(1, dtype=torch.long, device=device)
        # Warm up on a side stream so that lazy initialisation does not happen during capture.
        # (It writes position 0 of the cache, which every generation's prefill overwrites.)
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):
            for _ in range(2):
                model.decode_static(self.token, self.cache, self.pos)
        torch.cuda.current_stream(device).wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.logits = model.decode_static(self.token, self.cache, self.pos)

    def step(self, token: int, pos: int) -> torch.Tensor:
        """Logits [vocab] for `token` at position `pos`, which is written into the cache."""
        self.token.fill_(token)
        self.pos.fill_(pos)
        self.graph.replay()
        return self.logits[0, -1]
