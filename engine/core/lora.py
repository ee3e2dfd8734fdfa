"""Trainable low-rank adapters on a GPT's projections (LoRA: Hu et al., 2021), the base frozen.

A projection `x @ W + b` becomes `x @ W + b + dropout(x) @ A.T @ B.T * alpha / rank`, with A [rank, in]
initialised as PEFT does (Kaiming-uniform) and B [out, rank] zero, so training starts from the base
model exactly. The adapted module keeps its base weight under the same name, so nothing else in the
model changes; `lora_pairs` hands the trained matrices to engine.core.adapters to be written.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from engine.core.adapters import LoraConfig
from engine.core.model import GPT, Conv1D


class LoRAConv1D(Conv1D):
    """A frozen Conv1D weight [in, out] plus a trainable low-rank update."""

    def __init__(self, base: Conv1D, rank: int, scaling: float, dropout: float, generator: torch.Generator):
        nn.Module.__init__(self)
        self.weight = nn.Parameter(base.weight.detach(), requires_grad=False)
        self.bias = nn.Parameter(base.bias.detach(), requires_grad=False)
        n_in, n_out = base.weight.shape
        a = torch.empty(rank, n_in)
        bound = 1 / math.sqrt(n_in)  # kaiming_uniform_(a=sqrt(5)), as nn.Linear and PEFT initialise lora_A
        a.uniform_(-bound, bound, generator=generator)
        self.lora_A = nn.Parameter(a.to(base.weight.device))  # [rank, in]
        self.lora_B = nn.Parameter(torch.zeros(n_out, rank, device=base.weight.device))  # [out, rank]
        self.scaling = scaling
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1])
        y = torch.addmm(self.bias, rows, self.weight)
        low = self.dropout(rows) @ self.lora_A.t()  # [rows, rank]
        y = torch.addmm(y, low, self.lora_B.t(), alpha=self.scaling)
        return y.view(*x.shape[:-1], -1)


def add_lora(model: GPT, config: LoraConfig, seed: int = 0) -> GPT:
    """Freeze every weight of `model` and put a trainable adapter on each target projection."""
    model.requires_grad_(False)
    generator = torch.Generator().manual_seed(seed)
    for i in range(model.config.n_layer):
        for projection in config.targets:
            name = f"h.{i}.{projection}"
            module = LoRAConv1D(model.get_submodule(name), config.rank, config.scaling, config.dropout, generator)
            model.set_submodule(name, module)
    return model


def lora_pairs(model: GPT) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Each adapted projection's (A, B), by module name ("h.0.attn.c_attn")."""
    return {name: (m.lora_A, m.lora_B) for name, m in model.named_modules() if isinstance(m, LoRAConv1D)}
