"""Crystal GNNs for fpcore-train: backbones (per-atom embeddings) and heads, rebuilt from (class name, kwargs).

A model is described by plain data, e.g.
    {"backbone": {"class": "SchNet", "kwargs": {"hidden": 64}}, "head": {"class": "GraphHead", "kwargs": {...}}}
so checkpoints never pickle classes.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .common import build_graph
from .et import EquivariantTransformer
from .heads import GraphHead, NodeHead
from .schnet import SchNet

BACKBONES: dict[str, type[nn.Module]] = {"SchNet": SchNet, "EquivariantTransformer": EquivariantTransformer}
HEADS: dict[str, type[nn.Module]] = {"NodeHead": NodeHead, "GraphHead": GraphHead}
ALIASES = {
    "schnet": "SchNet",
    "et": "EquivariantTransformer",
    "equivariant_transformer": "EquivariantTransformer",
    "torchmd_et": "EquivariantTransformer",
    "node": "NodeHead",
    "graph": "GraphHead",
}


def register_backbone(name: str, cls: type[nn.Module]) -> None:
    BACKBONES[name] = cls


def _lookup(registry: dict, name: str, what: str) -> type[nn.Module]:
    key = ALIASES.get(name, name)
    if key not in registry:
        known = sorted(set(registry) | {a for a, t in ALIASES.items() if t in registry})
        raise ValueError(f"unknown {what} {name!r}; known: {known}")
    return registry[key]


def canonical_backbone_name(name: str) -> str:
    return _lookup(BACKBONES, name, "backbone").__name__ if name not in BACKBONES else name


def build_backbone(name: str, kwargs: dict) -> nn.Module:
    cls = _lookup(BACKBONES, name, "backbone")
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ValueError(f"backbone {cls.__name__}: bad arguments {sorted(kwargs)}: {err}") from None


def build_head(name: str, kwargs: dict) -> nn.Module:
    cls = _lookup(HEADS, name, "head")
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ValueError(f"head {cls.__name__}: bad arguments {sorted(kwargs)}: {err}") from None


class AtomisticModel(nn.Module):
    """backbone (per-atom embeddings) + head, with the spec needed to rebuild it from plain data."""

    def __init__(self, spec: dict):
        super().__init__()
        self.spec = copy.deepcopy(spec)
        self.backbone = build_backbone(spec["backbone"]["class"], spec["backbone"]["kwargs"])
        self.spec["backbone"]["class"] = type(self.backbone).__name__
        head_kwargs = dict(spec["head"]["kwargs"])
        head_kwargs.setdefault("n_in", self.backbone.out_features)
        self.head = build_head(spec["head"]["class"], head_kwargs)
        self.spec["head"] = {"class": type(self.head).__name__, "kwargs": head_kwargs}

    def forward(self, z, pos, cell, pbc, batch, n_graphs: int) -> torch.Tensor:
        return self.head(self.backbone(z, pos, cell, pbc, batch), batch, n_graphs)


def build_model(spec: dict) -> AtomisticModel:
    for part in ("backbone", "head"):
        if not isinstance(spec.get(part), dict) or "class" not in spec[part] or "kwargs" not in spec[part]:
            raise ValueError(f"model spec needs '{part}': {{'class': ..., 'kwargs': {{...}}}}, got {spec.get(part)!r}")
    return AtomisticModel(spec)


__all__ = [
    "AtomisticModel",
    "BACKBONES",
    "HEADS",
    "EquivariantTransformer",
    "GraphHead",
    "NodeHead",
    "SchNet",
    "build_backbone",
    "build_graph",
    "build_head",
    "build_model",
    "register_backbone",
]
