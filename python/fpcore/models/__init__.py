"""Crystal GNNs for fpcore-train: graph -> backbone (per-atom features) -> head, rebuilt from (class name, kwargs).

The pipeline, one step each:

    graph = build_graph(pos, cell, pbc, batch, n_graphs,
                        cutoff=backbone.cutoff, max_neighbors=backbone.max_neighbors, dtype=model_dtype(backbone))
    features = backbone(z, graph)         # AtomFeatures(scalar (N, F), vector (N, 3, F) or None)
    out = head(features, graph)           # GraphHead (n_graphs, k) | NodeHead (N, k) | VectorHead (N, 3)

`build_graph` is the only place a graph is built (periodic neighbour list from fpcore.neighbors, all images,
float64 search with autocast off); backbones never build graphs. Backbones expose `out_features`, `cutoff`,
`max_neighbors` and `has_vector_features`; heads expose `defaults_from(backbone)` (the kwargs they take from it),
applied by `build_head(name, kwargs, backbone=...)`.

A model is described by plain data, e.g.
    {"backbone": {"class": "SchNet", "kwargs": {"hidden": 64}}, "head": {"class": "GraphHead", "kwargs": {...}}}
so checkpoints never pickle classes; `AtomisticModel` / `build_model` rebuild backbone + head from such a spec.

Presets (for configs: `model.preset: paper`): PRESETS[name] = {"backbone": {"class", "kwargs"}, "head": head kwargs
for GraphHead, "optimizer": trainer settings}. "paper" is the authors' TorchMD-Net ET: backbone kwarg
`preset="paper"` (xavier-uniform init with zero biases, exp-normal basis with cosine envelope, vector messages
weighted by the cutoff), a GraphHead of 3 linear layers with sum pooling, weight decay 0.01 (the trainer's part).

Checkpoints written before the ET continuity fix (trainer checkpoint format 1): pass their spec through
`legacy_spec` so the ET is rebuilt as it was trained (vector messages without the cutoff envelope); state-dict keys
did not change. SchNet state dicts saved before the switch to torch_geometric's interaction blocks have other key
names: `upgrade_state_dict(spec, state_dict)` renames them (and `SchNet.load_state_dict` accepts them directly).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .common import AtomFeatures, Graph, build_graph
from .et import EquivariantTransformer
from .heads import GraphHead, NodeHead, VectorHead
from .schnet import SchNet, upgrade_schnet_state_dict

BACKBONES: dict[str, type[nn.Module]] = {"SchNet": SchNet, "EquivariantTransformer": EquivariantTransformer}
HEADS: dict[str, type[nn.Module]] = {"NodeHead": NodeHead, "GraphHead": GraphHead, "VectorHead": VectorHead}
ALIASES = {
    "schnet": "SchNet",
    "et": "EquivariantTransformer",
    "equivariant_transformer": "EquivariantTransformer",
    "torchmd_et": "EquivariantTransformer",
    "node": "NodeHead",
    "graph": "GraphHead",
    "vector": "VectorHead",
}


PRESETS: dict[str, dict] = {
    "paper": {
        "backbone": {"class": "EquivariantTransformer", "kwargs": {"preset": "paper"}},
        "head": {"n_layers": 3, "pooling": "sum", "init": "xavier"},
        "optimizer": {"weight_decay": 0.01},
    }
}


def legacy_spec(spec: dict) -> dict:
    """The spec of a model saved before the ET continuity fix, rebuilt to compute what it computed when trained."""
    spec = copy.deepcopy(spec)
    if ALIASES.get(spec["backbone"]["class"], spec["backbone"]["class"]) == "EquivariantTransformer":
        spec["backbone"]["kwargs"].setdefault("vector_cutoff", False)
    return spec


def upgrade_state_dict(spec: dict, state_dict: dict) -> dict:
    """A model state dict (`backbone.*`, `head.*` keys) with the backbone's keys renamed to the current names."""
    if ALIASES.get(spec["backbone"]["class"], spec["backbone"]["class"]) == "SchNet":
        return upgrade_schnet_state_dict(state_dict, prefix="backbone.")
    return dict(state_dict)


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


def model_dtype(module: nn.Module) -> torch.dtype:
    """The dtype the graph geometry is cast to for this module (that of its parameters)."""
    return next(module.parameters()).dtype


def head_kwargs(name: str, kwargs: dict, backbone: nn.Module | None = None) -> dict:
    """kwargs completed with what the head takes from its backbone (n_in, ...), explicit kwargs winning."""
    cls = _lookup(HEADS, name, "head")
    full = dict(kwargs)
    if backbone is not None and hasattr(cls, "defaults_from"):
        for key, value in cls.defaults_from(backbone).items():
            full.setdefault(key, value)
    return full


def build_head(name: str, kwargs: dict, backbone: nn.Module | None = None) -> nn.Module:
    """Head `name` from kwargs; with `backbone`, n_in (and e.g. VectorHead's cutoff) default to the backbone's."""
    cls = _lookup(HEADS, name, "head")
    kwargs = head_kwargs(name, kwargs, backbone)
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ValueError(f"head {cls.__name__}: bad arguments {sorted(kwargs)}: {err}") from None


class AtomisticModel(nn.Module):
    """backbone (per-atom features) + head, with the spec needed to rebuild it from plain data.

    forward builds the batch's graph once (build_graph, with the backbone's cutoff and max_neighbors) and runs
    backbone then head. State-dict keys: `backbone.*`, `head.*`.
    """

    def __init__(self, spec: dict):
        super().__init__()
        self.spec = copy.deepcopy(spec)
        self.backbone = build_backbone(spec["backbone"]["class"], spec["backbone"]["kwargs"])
        self.spec["backbone"]["class"] = type(self.backbone).__name__
        kwargs = head_kwargs(spec["head"]["class"], spec["head"]["kwargs"], self.backbone)
        self.head = build_head(spec["head"]["class"], kwargs)
        self.spec["head"] = {"class": type(self.head).__name__, "kwargs": kwargs}

    def graph(self, pos, cell, pbc, batch, n_graphs: int) -> Graph:
        bb = self.backbone
        return build_graph(
            pos, cell, pbc, batch, n_graphs, cutoff=bb.cutoff, max_neighbors=bb.max_neighbors, dtype=model_dtype(bb)
        )

    def forward(self, z, pos, cell, pbc, batch, n_graphs: int) -> torch.Tensor:
        graph = self.graph(pos, cell, pbc, batch, n_graphs)
        return self.head(self.backbone(z, graph), graph)


def build_model(spec: dict) -> AtomisticModel:
    for part in ("backbone", "head"):
        if not isinstance(spec.get(part), dict) or "class" not in spec[part] or "kwargs" not in spec[part]:
            raise ValueError(f"model spec needs '{part}': {{'class': ..., 'kwargs': {{...}}}}, got {spec.get(part)!r}")
    return AtomisticModel(spec)


__all__ = [
    "AtomFeatures",
    "AtomisticModel",
    "BACKBONES",
    "HEADS",
    "PRESETS",
    "EquivariantTransformer",
    "Graph",
    "GraphHead",
    "NodeHead",
    "SchNet",
    "VectorHead",
    "build_backbone",
    "build_graph",
    "build_head",
    "build_model",
    "head_kwargs",
    "legacy_spec",
    "model_dtype",
    "register_backbone",
    "upgrade_state_dict",
]
