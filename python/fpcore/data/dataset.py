"""StructureDataset: a torch Dataset over flat (possibly memory-mapped) structure arrays."""

from __future__ import annotations

import hashlib
import json
import pathlib

import numpy as np
import torch
from torch.utils.data import Dataset

from ._flat import FlatStructures


class StructureDataset(Dataset):
    """Structures as torch_geometric Data, built on access from flat arrays.

    ds[i] -> Data(pos (n,3) float64, z (n,) int64, cell (1,3,3) float64, pbc (1,3) bool, natoms int, idx int,
    y (1,T) float32 when the dataset has targets). `ids`, `target_names`, and for whole-dataset statistics without
    building graphs: `labels` (B,T) float64 tensor, `natoms` (B,) int64 tensor, `numbers` (all atoms).
    Arrays loaded from the cache are memory-mapped: an item reads only its own atoms.
    """

    def __init__(self, flat: FlatStructures, source: str = "", cache_entry: pathlib.Path | None = None):
        self._flat = flat
        self.source = source
        self.cache_entry = cache_entry
        self.ids: list[str] = flat.ids
        self.target_names: list[str] = list(flat.target_names)

    def __len__(self) -> int:
        return len(self._flat)

    @property
    def n_targets(self) -> int:
        return len(self.target_names)

    @property
    def natoms(self) -> torch.Tensor:
        return torch.from_numpy(np.diff(self._flat.offsets).astype(np.int64))

    @property
    def labels(self) -> torch.Tensor | None:
        return None if self._flat.y is None else torch.tensor(np.asarray(self._flat.y), dtype=torch.float64)

    @property
    def numbers(self) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self._flat.numbers).astype(np.int64))

    @property
    def elements(self) -> list[int]:
        """Sorted atomic numbers present in the dataset."""
        return np.unique(np.asarray(self._flat.numbers)).astype(int).tolist()

    def content_hash(self) -> str:
        """sha256 of the structures and labels (not of the files they came from): equal for the same data whether
        read from the input or the cache, different when any structure, id or label differs."""
        if getattr(self, "_content_hash", None) is None:
            f = self._flat
            h = hashlib.sha256()
            h.update(json.dumps([list(f.ids), list(f.target_names)]).encode())
            for arr, dtype in (
                (f.offsets, np.int64),
                (f.numbers, np.int64),
                (f.positions, np.float64),
                (f.cells, np.float64),
                (f.pbc, np.bool_),
                (f.y, np.float64),
            ):
                if arr is not None:
                    h.update(np.ascontiguousarray(arr, dtype=dtype).tobytes())
            self._content_hash = h.hexdigest()
        return self._content_hash

    def _index(self, i) -> int:
        if isinstance(i, torch.Tensor):
            if i.numel() != 1:
                raise TypeError(
                    "fpcore.data: index a StructureDataset with one integer (use torch.utils.data.Subset for many)"
                )
            i = i.item()
        if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"fpcore.data: dataset index must be an int, got {type(i).__name__}")
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"fpcore.data: index {i} out of range for a dataset of {n} structures")
        return int(i) % n

    def __getitem__(self, i):
        from torch_geometric.data import Data

        i = self._index(i)
        f = self._flat
        a, b = int(f.offsets[i]), int(f.offsets[i + 1])
        data = Data(
            pos=torch.from_numpy(np.array(f.positions[a:b], dtype=np.float64)),
            z=torch.from_numpy(np.array(f.numbers[a:b], dtype=np.int64)),
            cell=torch.from_numpy(np.array(f.cells[i], dtype=np.float64)).unsqueeze(0),
            pbc=torch.from_numpy(np.array(f.pbc[i], dtype=bool)).unsqueeze(0),
            natoms=b - a,
            idx=i,
        )
        if f.y is not None:
            data.y = torch.from_numpy(np.array(f.y[i], dtype=np.float32)).unsqueeze(0)
        return data

    def atoms(self, i):
        """Structure i as an ase.Atoms (labels in info)."""
        import ase

        d = self[i]
        atoms = ase.Atoms(numbers=d.z.numpy(), positions=d.pos.numpy(), cell=d.cell[0].numpy(), pbc=d.pbc[0].numpy())
        atoms.info["id"] = self.ids[self._index(i)]
        if self._flat.y is not None:
            atoms.info.update({k: float(v) for k, v in zip(self.target_names, self._flat.y[self._index(i)])})
        return atoms

    def __getstate__(self):
        # A memory-mapped dataset pickles (to spawned DataLoader workers) as its cache path, not its arrays.
        state = dict(self.__dict__)
        if self.cache_entry is not None and isinstance(self._flat.positions, np.memmap):
            state["_flat"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if self._flat is None:
            from . import cache

            self._flat = cache.load(self.cache_entry, mmap=True)
            if self._flat is None:
                raise RuntimeError(f"fpcore.data: the cache entry {self.cache_entry} disappeared")

    def __repr__(self) -> str:
        return (
            f"StructureDataset({len(self)} structures, {len(self._flat.numbers)} atoms, targets={self.target_names}, "
            f"source={self.source!r})"
        )
