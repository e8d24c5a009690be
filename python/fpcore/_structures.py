"""Conversion of structures (ase.Atoms or pymatgen Structure/Molecule, one or a list, mixed) into
the batched tensors every fpcore operator takes."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

import numpy as np
import torch

try:  # ase is a dependency, but the tensor-level API works without it
    import ase
except ImportError:  # pragma: no cover
    ase = None

if TYPE_CHECKING:  # pragma: no cover
    import pymatgen.core

# pymatgen is optional (pip install "fpcore[pymatgen]"): never imported at run time. A user who holds a
# pymatgen object has already imported it, so its classes are looked up in sys.modules.
Structures = Union["ase.Atoms", "pymatgen.core.Structure", Sequence[Union["ase.Atoms", "pymatgen.core.Structure"]]]


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


def _pymatgen_kind(item) -> str | None:
    """'structure' or 'molecule' for pymatgen objects (mutable or immutable), else None."""
    module = sys.modules.get("pymatgen.core.structure")
    if module is None:
        return None
    if isinstance(item, module.IStructure):
        return "structure"
    if isinstance(item, module.IMolecule):
        return "molecule"
    return None


def _is_single(structures) -> bool:
    return (ase is not None and isinstance(structures, ase.Atoms)) or _pymatgen_kind(structures) is not None


def as_structure_list(structures: Structures) -> list:
    """One structure or a list/tuple of them, as a list (ase.Atoms and pymatgen objects may be mixed)."""
    if _is_single(structures):
        return [structures]
    if isinstance(structures, (list, tuple)):
        return list(structures)
    raise TypeError(
        f"fpcore: expected an ase.Atoms, a pymatgen Structure/Molecule or a list of them, got {type(structures).__name__}"
    )


_NO_CELL = np.zeros((3, 3))
_NO_PBC = np.zeros(3, dtype=bool)


def _arrays(index: int, item):
    """(positions (n, 3), numbers (n,), cell (3, 3), pbc (3,)) of one structure, without copies where possible."""
    if ase is not None and isinstance(item, ase.Atoms):
        return item.arrays["positions"], item.arrays["numbers"], item.cell.array, item.pbc
    kind = _pymatgen_kind(item)
    if kind is None:
        raise TypeError(
            f"fpcore: structure {index} is a {type(item).__name__}, expected ase.Atoms or a pymatgen Structure/Molecule"
        )
    if not item.is_ordered:
        raise ValueError(
            f"fpcore: structure {index} is a disordered pymatgen {type(item).__name__} (partial occupancies); "
            "fpcore needs one element per site"
        )
    numbers = np.asarray(item.atomic_numbers, dtype=np.int64)
    if kind == "molecule":
        return item.cart_coords, numbers, _NO_CELL, _NO_PBC
    return item.cart_coords, numbers, item.lattice.matrix, np.asarray(item.lattice.pbc, dtype=bool)


def batch_from_atoms(
    structures: Structures, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu"
) -> Batch:
    """Concatenates the atoms of every structure, in order, into one Batch.

    One Python step per structure (attribute look-ups), none per atom: the arrays are joined by one
    np.concatenate each and reach torch without further copies on the CPU.
    """
    items = as_structure_list(structures)
    if not items:
        return Batch(
            positions=torch.zeros((0, 3), dtype=dtype, device=device),
            numbers=torch.zeros(0, dtype=torch.long, device=device),
            cells=torch.zeros((0, 3, 3), dtype=dtype, device=device),
            pbc=torch.zeros((0, 3), dtype=torch.bool, device=device),
            batch=torch.zeros(0, dtype=torch.long, device=device),
            ptr=torch.zeros(1, dtype=torch.long, device=device),
        )
    positions, numbers, cells, pbc = zip(*(_arrays(index, item) for index, item in enumerate(items)))
    counts = np.fromiter((len(n) for n in numbers), dtype=np.int64, count=len(items))
    ptr = np.zeros(len(items) + 1, dtype=np.int64)
    np.cumsum(counts, out=ptr[1:])
    positions = np.concatenate(positions).reshape(-1, 3)
    numbers = np.concatenate(numbers).astype(np.int64, copy=False)
    return Batch(
        positions=torch.as_tensor(positions, dtype=dtype, device=device),
        numbers=torch.as_tensor(numbers, device=device),
        cells=torch.as_tensor(np.stack(cells), dtype=dtype, device=device),
        pbc=torch.as_tensor(np.stack(pbc).astype(bool, copy=False), device=device),
        batch=torch.as_tensor(np.repeat(np.arange(len(items), dtype=np.int64), counts), device=device),
        ptr=torch.as_tensor(ptr, device=device),
    )


def values_available(t: torch.Tensor) -> bool:
    """False for tensors without data (meta, fake) and while torch.compile traces: value checks are skipped then."""
    if torch.compiler.is_compiling() or t.device.type == "meta":
        return False
    from torch._subclasses.fake_tensor import is_fake

    return not is_fake(t)


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
        if n_atoms > 0 and values_available(batch):
            if bool((batch[1:] < batch[:-1]).any()):
                raise ValueError("fpcore: batch must be non-decreasing (atoms of one structure contiguous)")
            if int(batch[0]) < 0 or int(batch[-1]) >= n_structures:
                raise ValueError(
                    f"fpcore: batch values must lie in [0, {n_structures}) (one per cell), got "
                    f"[{int(batch[0])}, {int(batch[-1])}]"
                )
    # searchsorted (batch is sorted) rather than bincount: no value-dependent output size, so it traces.
    ptr = torch.searchsorted(batch, torch.arange(n_structures + 1, dtype=torch.long, device=device))
    return positions, cell, pbc.contiguous(), batch, ptr
