"""Conversion of ase.Atoms (one or a list) into the batched tensors every fpcore operator takes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Union

import numpy as np
import torch

try:  # ase is a dependency, but the tensor-level API works without it
    import ase
except ImportError:  # pragma: no cover
    ase = None

Structures = Union["ase.Atoms", Sequence["ase.Atoms"]]


@dataclass
class Batch:
    """A batch of structures as tensors.

    positions (N, 3), numbers (N,) int64, cells (B, 3, 3) with cell vectors as rows,
    pbc (B, 3) bool, batch (N,) int64 structure index of each atom (non-decreasing),
    ptr (B + 1,) int64 with the atoms of structure b at ptr[b]:ptr[b+1].
    """

    positions: torch.Tensor
    numbers: torch.Tensor
    cells: torch.Tensor
    pbc: torch.Tensor
    batch: torch.Tensor
    ptr: torch.Tensor

    @property
    def n_structures(self) -> int:
        return self.cells.shape[0]


def as_atoms_list(structures: Structures) -> list:
    if ase is not None and isinstance(structures, ase.Atoms):
        return [structures]
    if isinstance(structures, (list, tuple)):
        for index, item in enumerate(structures):
            if ase is None or not isinstance(item, ase.Atoms):
                raise TypeError(f"fpcore: structure {index} is a {type(item).__name__}, expected ase.Atoms")
        return list(structures)
    raise TypeError(f"fpcore: expected an ase.Atoms or a list of them, got {type(structures).__name__}")


def batch_from_atoms(
    structures: Structures, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu"
) -> Batch:
    """Concatenates the atoms of every structure, in order, into one Batch."""
    atoms_list = as_atoms_list(structures)
    counts = [len(a) for a in atoms_list]
    positions = np.concatenate([a.positions for a in atoms_list]) if atoms_list else np.zeros((0, 3))
    numbers = np.concatenate([a.numbers for a in atoms_list]) if atoms_list else np.zeros(0, dtype=np.int64)
    cells = (
        np.stack([np.asarray(a.cell[:], dtype=np.float64) for a in atoms_list]) if atoms_list else np.zeros((0, 3, 3))
    )
    pbc = np.stack([np.asarray(a.pbc, dtype=bool) for a in atoms_list]) if atoms_list else np.zeros((0, 3), dtype=bool)
    ptr = np.zeros(len(counts) + 1, dtype=np.int64)
    ptr[1:] = np.cumsum(counts)
    batch = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    return Batch(
        positions=torch.as_tensor(positions.reshape(-1, 3), dtype=dtype, device=device),
        numbers=torch.as_tensor(numbers.astype(np.int64), device=device),
        cells=torch.as_tensor(cells.reshape(-1, 3, 3), dtype=dtype, device=device),
        pbc=torch.as_tensor(pbc.reshape(-1, 3), device=device),
        batch=torch.as_tensor(batch, device=device),
        ptr=torch.as_tensor(ptr, device=device),
    )


def normalize_batch_tensors(positions, cell, pbc, batch):
    """Validates tensor-level inputs and returns (positions, cells (B,3,3), pbc (B,3), batch, ptr).

    `cell` may be (3, 3) for a single structure, `pbc` (3,) or a bool; `batch` None means one structure.
    """
    if not isinstance(positions, torch.Tensor):
        raise TypeError(f"fpcore: positions must be a torch.Tensor, got {type(positions).__name__}")
    if positions.dim() != 2 or positions.shape[1] != 3:
        raise ValueError(f"fpcore: positions must have shape (N, 3), got {tuple(positions.shape)}")
    if positions.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"fpcore: positions must be float32 or float64, got {positions.dtype}")
    device, dtype = positions.device, positions.dtype
    cell = torch.as_tensor(cell, dtype=dtype, device=device)
    if cell.dim() == 2:
        cell = cell.unsqueeze(0)
    if cell.dim() != 3 or cell.shape[1:] != (3, 3):
        raise ValueError(f"fpcore: cell must have shape (3, 3) or (B, 3, 3), got {tuple(cell.shape)}")
    n_structures = cell.shape[0]
    pbc = torch.as_tensor(pbc, device=device)
    if pbc.dtype != torch.bool:
        raise TypeError(f"fpcore: pbc must be boolean, got {pbc.dtype}")
    if pbc.dim() == 0:
        pbc = pbc.expand(n_structures, 3)
    elif pbc.dim() == 1:
        if pbc.shape[0] != 3:
            raise ValueError(f"fpcore: pbc must have shape (3,) or (B, 3), got {tuple(pbc.shape)}")
        pbc = pbc.unsqueeze(0).expand(n_structures, 3)
    if pbc.shape != (n_structures, 3):
        raise ValueError(f"fpcore: pbc must have shape ({n_structures}, 3) to match cell, got {tuple(pbc.shape)}")
    n_atoms = positions.shape[0]
    if batch is None:
        if n_structures != 1:
            raise ValueError(
                f"fpcore: {n_structures} cells were given, so 'batch' (structure index per atom) is required"
            )
        batch = torch.zeros(n_atoms, dtype=torch.long, device=device)
    else:
        batch = torch.as_tensor(batch, device=device)
        if batch.dtype not in (torch.int32, torch.int64) or batch.shape != (n_atoms,):
            raise ValueError(
                f"fpcore: batch must be an integer tensor of shape ({n_atoms},), got {batch.dtype} {tuple(batch.shape)}"
            )
        batch = batch.long()
        if n_atoms > 0:
            if bool((batch[1:] < batch[:-1]).any()):
                raise ValueError("fpcore: batch must be non-decreasing (atoms of one structure contiguous)")
            if int(batch[0]) < 0 or int(batch[-1]) >= n_structures:
                raise ValueError(
                    f"fpcore: batch values must lie in [0, {n_structures}) (one per cell), got "
                    f"[{int(batch[0])}, {int(batch[-1])}]"
                )
    ptr = torch.zeros(n_structures + 1, dtype=torch.long, device=device)
    ptr[1:] = torch.cumsum(torch.bincount(batch, minlength=n_structures), 0)
    return positions, cell, pbc.contiguous(), batch, ptr
