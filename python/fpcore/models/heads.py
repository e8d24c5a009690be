"""Output heads, separate from the backbones so a pre-trained backbone can take a new head."""

from __future__ import annotations

import torch
from torch import nn

from .common import activation

POOLINGS = ("mean", "sum")


def mlp(n_in: int, n_hidden: int, n_out: int, n_layers: int, act: str) -> nn.Sequential:
    if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 1:
        raise ValueError(f"head: n_layers must be a positive integer, got {n_layers!r}")
    layers: list[nn.Module] = []
    width = n_in
    for _ in range(n_layers - 1):
        layers += [nn.Linear(width, n_hidden), activation(act)]
        width = n_hidden
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


class NodeHead(nn.Module):
    """Per-atom vector (N, n_out): the pre-training head that regresses fingerprints."""

    def __init__(self, n_in: int, n_out: int, hidden: int = 128, n_layers: int = 2, activation: str = "silu"):
        super().__init__()
        if n_out < 1:
            raise ValueError(f"NodeHead: n_out must be >= 1, got {n_out}")
        self.net = mlp(n_in, hidden, n_out, n_layers, activation)

    def forward(self, h: torch.Tensor, batch: torch.Tensor, n_graphs: int) -> torch.Tensor:
        return self.net(h)


class GraphHead(nn.Module):
    """Per-structure vector (B, n_out): atom embeddings pooled (mean by default) then an MLP."""

    def __init__(
        self,
        n_in: int,
        n_out: int,
        hidden: int = 128,
        n_layers: int = 2,
        activation: str = "silu",
        pooling: str = "mean",
    ):
        super().__init__()
        if n_out < 1:
            raise ValueError(f"GraphHead: n_out must be >= 1, got {n_out}")
        if pooling not in POOLINGS:
            raise ValueError(f"GraphHead: pooling must be one of {POOLINGS}, got {pooling!r}")
        self.pooling = pooling
        self.net = mlp(n_in, hidden, n_out, n_layers, activation)

    def forward(self, h: torch.Tensor, batch: torch.Tensor, n_graphs: int) -> torch.Tensor:
        pooled = torch.zeros(n_graphs, h.shape[1], dtype=h.dtype, device=h.device).index_add_(0, batch, h)
        if self.pooling == "mean":
            counts = torch.bincount(batch, minlength=n_graphs).clamp_min(1).to(h.dtype)
            pooled = pooled / counts.unsqueeze(1)
        return self.net(pooled)
