"""Pre-training targets: one or several fpcore descriptors, concatenated, computed on the training device."""

from __future__ import annotations

import hashlib
import json
import pathlib

import torch
from torch import nn

from .._io import atomic_torch_save
from ..descriptors import Descriptor

_EXTRA_DESCRIPTORS: dict[str, type[Descriptor]] = {}
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def register_descriptor(name: str, cls: type[Descriptor]) -> None:
    """Makes a Descriptor subclass usable by name in `descriptor.fingerprints` (besides EAD, WACSF, GMP)."""
    if not (isinstance(cls, type) and issubclass(cls, Descriptor)):
        raise TypeError(f"register_descriptor: {cls!r} is not a fpcore.descriptors.Descriptor subclass")
    _EXTRA_DESCRIPTORS[name] = cls


def descriptor_class(name: str) -> type[Descriptor]:
    from .. import descriptors

    if name in _EXTRA_DESCRIPTORS:
        return _EXTRA_DESCRIPTORS[name]
    cls = getattr(descriptors, name, None)
    if isinstance(cls, type) and issubclass(cls, Descriptor) and cls is not Descriptor:
        return cls
    known = sorted({n for n in descriptors.__all__ if n != "Descriptor"} | set(_EXTRA_DESCRIPTORS))
    raise ValueError(f"unknown descriptor {name!r} in descriptor.fingerprints; known: {known}")


class TargetFingerprints(nn.Module):
    """Concatenation of descriptors: compute(positions, numbers, cell, pbc, batch) -> (N, sum n_features)."""

    def __init__(self, specs: list[dict], dtype: str = "float64"):
        super().__init__()
        if not specs:
            raise ValueError(
                "pre-training needs at least one entry in descriptor.fingerprints, e.g. {name: EAD, kwargs: {}}"
            )
        self.specs = [{"name": s["name"], "kwargs": dict(s.get("kwargs") or {})} for s in specs]
        self.dtype = DTYPES[dtype]
        parts = []
        for spec in self.specs:
            cls = descriptor_class(spec["name"])
            try:
                parts.append(cls(**spec["kwargs"], dtype=self.dtype))
            except TypeError as err:
                raise ValueError(f"descriptor {spec['name']}: bad arguments {sorted(spec['kwargs'])}: {err}") from None
        self.parts = nn.ModuleList(parts)

    @property
    def n_features(self) -> int:
        return sum(p.n_features for p in self.parts)

    @property
    def feature_labels(self) -> list[str]:
        return [label for p in self.parts for label in p.feature_labels]

    def key(self) -> str:
        return hashlib.sha256(json.dumps([self.specs, str(self.dtype)], sort_keys=True).encode()).hexdigest()[:16]

    @torch.no_grad()
    def compute(self, positions, numbers, cell, pbc, batch) -> torch.Tensor:
        positions = positions.to(self.dtype)
        cell = cell.to(self.dtype)
        out = [p.compute(positions, numbers, cell, pbc, batch) for p in self.parts]
        return torch.cat(out, dim=1) if len(out) > 1 else out[0]

    def forward(self, data) -> torch.Tensor:
        return self.compute(data.pos, data.z, data.cell.view(-1, 3, 3), data.pbc.view(-1, 3), data.batch)


class TargetCache:
    """Every structure's fingerprints computed once, stored flat (total atoms, F) with per-structure offsets.

    Looked up by `data.idx` (the dataset index each structure carries), so shuffling and sharding do not matter.
    """

    def __init__(self, values: torch.Tensor, offsets: torch.Tensor, key: str):
        self.values, self.offsets, self.key = values, offsets, key

    @classmethod
    @torch.no_grad()
    def build(cls, fingerprints: TargetFingerprints, dataset, loader_factory, device, key: str):

        natoms = torch.tensor([int(dataset[k].num_nodes) for k in range(len(dataset))], dtype=torch.long)
        offsets = torch.zeros(len(dataset) + 1, dtype=torch.long)
        offsets[1:] = torch.cumsum(natoms, 0)
        values = torch.empty(int(offsets[-1]), fingerprints.n_features, dtype=torch.float32)
        for data in loader_factory():
            data = data.to(device)
            feats = fingerprints(data).float().cpu()
            rows = _rows(offsets, data.idx.cpu(), natoms[data.idx.cpu()])
            values[rows] = feats
        return cls(values, offsets, key)

    def lookup(self, data) -> torch.Tensor:
        idx = data.idx.cpu()
        rows = _rows(self.offsets, idx, self.offsets[idx + 1] - self.offsets[idx])
        if rows.numel() != data.num_nodes:
            raise ValueError("target cache does not match the dataset (atom counts differ); delete the cache file")
        return self.values[rows].to(data.pos.device)

    def save(self, path) -> None:
        path = pathlib.Path(path)
        atomic_torch_save(path, {"values": self.values, "offsets": self.offsets, "key": self.key})

    @classmethod
    def load(cls, path, key: str):
        state = torch.load(path, weights_only=True, map_location="cpu")
        if state.get("key") != key:
            return None
        return cls(state["values"], state["offsets"], key)


def _rows(offsets: torch.Tensor, idx: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Row indices offsets[idx[g]] + 0..counts[g]-1 for every structure g, without a Python loop."""
    starts = torch.repeat_interleave(offsets[idx], counts)
    local = torch.arange(int(counts.sum())) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    return starts + local
