"""The model side of the training pipeline: data -> graph (built once per batch) -> backbone -> one head per objective.

The graph is built by `fpcore.models.build_graph` (the only place a graph is built), outside the backbone, so every
head of a multi-objective run shares it and the trainer can reuse the graph of a structure whose geometry does not
change (fine-tuning without augmentation or denoising: see GraphCache).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..models import Graph, build_backbone, build_graph, build_head, head_kwargs, model_dtype


class Pipeline(nn.Module):
    """backbone + heads (an nn.ModuleDict keyed by objective name), rebuilt from plain data:

    spec = {"backbone": {"class": ..., "kwargs": {...}}, "heads": {name: {"class": ..., "kwargs": {...}}}}
    State-dict keys: `backbone.*`, `heads.<objective>.*`.
    """

    def __init__(self, spec: dict):
        super().__init__()
        for part in ("backbone", "heads"):
            if not isinstance(spec.get(part), dict):
                raise ValueError(f"model spec needs '{part}', got {spec.get(part)!r}")
        self.spec = copy.deepcopy(spec)
        self.backbone = build_backbone(spec["backbone"]["class"], spec["backbone"]["kwargs"])
        self.spec["backbone"]["class"] = type(self.backbone).__name__
        self.heads = nn.ModuleDict()
        for name, head in spec["heads"].items():
            kwargs = head_kwargs(head["class"], head["kwargs"], self.backbone)
            self.heads[name] = build_head(head["class"], kwargs)
            self.spec["heads"][name] = {"class": type(self.heads[name]).__name__, "kwargs": kwargs}

    def graph(self, batch) -> Graph:
        bb = self.backbone
        return build_graph(
            batch.pos,
            batch.cell.view(-1, 3, 3),
            batch.pbc.view(-1, 3),
            batch.batch,
            batch.num_graphs,
            cutoff=bb.cutoff,
            max_neighbors=bb.max_neighbors,
            dtype=model_dtype(bb),
        )

    def forward(self, z: torch.Tensor, graph: Graph, autocast_dtype: torch.dtype | None = None) -> dict:
        """{objective: head output}; only the backbone runs under autocast (the heads switch it off themselves)."""
        with torch.autocast(z.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            features = self.backbone(z, graph)
        return {name: head(features, graph).float() for name, head in self.heads.items()}


class GraphCache:
    """The graph of each structure, kept from its first batch, for runs whose geometry never changes.

    Batches are reassembled from per-structure edge lists (atom indices shifted by the batch's atom offsets), which
    is exact: the periodic graph of a batch is the disjoint union of the graphs of its structures.
    """

    def __init__(self):
        self.edges: dict[int, tuple] = {}

    def __call__(self, pipeline: Pipeline, batch) -> Graph:
        idx = batch.idx.tolist()
        if any(k not in self.edges for k in idx):
            graph = pipeline.graph(batch)
            self._store(graph, batch, idx)
            return graph
        ptr = batch.ptr.tolist()
        parts = [self.edges[k] for k in idx]
        counts = torch.tensor([p[0].numel() for p in parts], dtype=torch.long)
        shift = torch.repeat_interleave(torch.tensor(ptr[:-1], dtype=torch.long), counts).to(batch.pos.device)
        i = torch.cat([p[0] for p in parts]) + shift
        j = torch.cat([p[1] for p in parts]) + shift
        return Graph(
            i,
            j,
            torch.cat([p[2] for p in parts]),
            torch.cat([p[3] for p in parts]),
            batch.batch,
            batch.num_graphs,
        )

    def _store(self, graph: Graph, batch, idx: list[int]) -> None:
        ptr = batch.ptr.tolist()
        # Edges are grouped by structure because atoms of a batch are contiguous; split at the structure bounds.
        owner = graph.batch.index_select(0, graph.i)
        counts = torch.bincount(owner, minlength=len(idx)).tolist()
        order = torch.argsort(owner, stable=True)
        i, j, v, d = (t.index_select(0, order) for t in (graph.i, graph.j, graph.vectors, graph.distances))
        start = 0
        for g, k in enumerate(idx):
            stop = start + counts[g]
            self.edges[k] = (
                (i[start:stop] - ptr[g]).detach(),
                (j[start:stop] - ptr[g]).detach(),
                v[start:stop].detach(),
                d[start:stop].detach(),
            )
            start = stop
