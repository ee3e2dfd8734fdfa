"""The GPT-2 network, written to be read: attention, MLP, block, model, and a static KV cache.

Linear weights are kept as Hugging Face stores them (the Conv1D layout, [in, out]), so a
projection is `x @ W + b` and checkpoints load without transposing.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from engine.core.config import GPTConfig


def _activation(name: str):
    if name in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
        return lambda x: F.gelu(x, approximate="tanh")
    if name == "gelu":
        return F.gelu
    return F.relu


class Conv1D(nn.Module):
    """A linear layer with its weight stored [in, out], as in GPT-2 checkpoints."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).view(*x.shape[:-1], -1)


class KVCache:
    """Keys and values of every layer, allocated once for a whole generation."""

    def __init__(self, config: GPTConfig, batch: int, length: int, device, dtype, zeroed: bool = False):
        shape = (config.n_layer, batch, config.n_head, length, config.head_dim)
        # Uninitialised unless asked: the ordinary path writes a position before it reads it, while the
        # fixed-shape step (decode_static) reads masked positions too, where garbage could be NaN.
        make = torch.zeros if zeroed else torch.empty
        self.k = make(shape, device=device, dtype=dtype)
        self.v = make(shape, device=device, dtype=dtype)
        self.length = length


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig, layer_idx: int):
        super().__init__()
        self.n_head = config.n_head
        self.layer_idx = layer_idx
        self.c_attn = Conv1D(config.n_embd, 3 * config.n_embd)
        self.c_proj = Conv1D(config.n_embd, config.n_embd)
        self.scale = config.head_dim**-0.5 if config.scale_attn_weights else 1.0
        if config.scale_attn_by_inverse_layer_idx:
            self.scale /= float(layer_idx + 1)

    def forward(self, x: torch.Tensor, cache: KVCache | None, pos: int) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, -1).transpose(1, 2)
        k = k.view(B, T, self.n_head, -1).transpose(1, 2)
        v = v.view(B, T, self.n_head, -1).transpose(1, 2)
        if cache is not None:
            cache.k[self.layer_idx, :, :, pos : pos + T] = k
            cache.v[self.layer_idx, :, :, pos : pos + T] = v
            if pos > 0:  # from position 0 the new keys and values are all there is to attend to
                k = cache.k[self.layer_idx, :, :, : pos + T]
                v = cache.v[self.layer_idx, :, :, : pos + T]
        if T == 1:
            # One new token attends to everything before it: no mask needed.
            y = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        elif pos == 0:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale)
        else:
            # Several new tokens after a cached prefix: token i sees the prefix and new tokens <= i.
            mask = torch.ones(T, pos + T, dtype=torch.bool, device=x.device).tril(diagonal=pos)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale)
        y = y.transpose(1, 2).reshape(B, T, C)
        return self.c_proj(y)

    def forward_static(self, x: torch.Tensor, cache: KVCache, pos: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """One token at position `pos` (a 1-element tensor) attending over the whole cache, positions after
        it masked out by `visible`: the same shapes at every step, so the step can be a CUDA graph."""
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, -1).transpose(1, 2)
        cache.k[self.layer_idx].index_copy_(2, pos, k.view(B, T, self.n_head, -1).transpose(1, 2))
        cache.v[self.layer_idx].index_copy_(2, pos, v.view(B, T, self.n_head, -1).transpose(1, 2))
        y = F.scaled_dot_product_attention(q, cache.k[self.layer_idx], cache.v[self.layer_idx], attn_mask=visible,
                                           scale=self.scale)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = Conv1D(config.n_embd, config.inner_dim)
        self.c_proj = Conv1D(config.inner_dim, config.n_embd)
        self.act = _activation(config.activation_function)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.act(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, config: GPTConfig, layer_idx: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = CausalSelfAttention(config, layer_idx)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, cache: KVCache | None, pos: int) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cache, pos)
        return x + self.mlp(self.ln_2(x))

    def forward_static(self, x: torch.Tensor, cache: KVCache, pos: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        x = x + self.attn.forward_static(self.ln_1(x), cache, pos, visible)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        # Uninitialised (weights are loaded, or set by init_weights): nn.Embedding's own random
        # initialisation costs over a second on the meta device, where models are built for loading.
        self.wte = nn.Embedding(config.vocab_size, config.n_embd, _weight=torch.empty(config.vocab_size, config.n_embd))
        self.wpe = nn.Embedding(config.n_positions, config.n_embd,
                                _weight=torch.empty(config.n_positions, config.n_embd))
        self.h = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        # The output head reuses the token embedding unless the checkpoint has its own.
        self.lm_head: nn.Parameter | None = None
        if not config.tie_word_embeddings:
            self.lm_head = nn.Parameter(torch.empty(config.vocab_size, config.n_embd))
        # For inference, engine.core.forms may replace `wte` and set `head` (hidden -> logits) with
        # faster or smaller forms of the same weights.
        self.head: nn.Module | None = None

    def init_weights(self, seed: int = 0) -> None:
        """GPT-2's initialisation, for training from scratch."""
        gen = torch.Generator().manual_seed(seed)
        std_proj = 0.02 / math.sqrt(2 * self.config.n_layer)
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif ".ln_" in name or name.startswith("ln_f"):
                nn.init.ones_(p)
            else:
                std = std_proj if name.endswith("c_proj.weight") else 0.02
                with torch.no_grad():
                    p.normal_(0.0, std, generator=gen)

    def new_cache(self, batch: int = 1, length: int | None = None, zeroed: bool = False) -> KVCache:
        p = self.ln_f.weight  # activations' dtype, whatever form the projection weights take
        return KVCache(self.config, batch, length or self.config.n_positions, p.device, p.dtype, zeroed)

    def hidden(self, idx: torch.Tensor, cache: KVCache | None = None, pos: int = 0) -> torch.Tensor:
        """Final hidden states (after ln_f) for token ids `idx` [B, T] placed at positions pos..pos+T-1."""
        T = idx.shape[1]
        positions = torch.arange(pos, pos + T, device=idx.device)
        x = self.wte(idx) + self.wpe(positions)
        for block in self.h:
            x = block(x, cache, pos)
        return self.ln_f(x)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.head is not None:
            return self.head(hidden)
        head = self.lm_head if self.lm_head is not None else self.wte.weight
        return F.linear(hidden, head)

    def decode_static(self, idx: torch.Tensor, cache: KVCache, pos: torch.Tensor) -> torch.Tensor:
        """Logits [B, 1, vocab] for one token per row `idx` [B, 1] at position `pos` (a 1-element long tensor
        on the model's device), with tensor shapes that do not depend on `pos`. Needs a zeroed cache."""
        x = self.wte(idx) + self.wpe(pos)
        visible = (torch.arange(cache.length, device=idx.device) <= pos).view(1, 1, 1, -1)
        for block in self.h:
            x = block.forward_static(x, cache, pos, visible)
        return self.logits(self.ln_f(x))

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None, pos: int = 0, last_only: bool = False):
        h = self.hidden(idx, cache, pos)
        if last_only:
            h = h[:, -1:, :]
        return self.logits(h)
