"""Structure augmentation for pre-training: `data.augment: {rattle: 0.05, strain: 0.02}`.

Each structure is perturbed anew every epoch, deterministically: the random draws of structure `idx` in epoch `e`
of a run with seed `s` depend on (s, e, idx) only, so a resumed run, another batch size or another number of
processes sees the same perturbed structures. Fingerprint targets are then computed on the perturbed structure
(the target cache is bypassed): QM-free targets are defined for any geometry, not only relaxed ones.
"""

from __future__ import annotations

import torch

AUGMENTATIONS = ("rattle", "strain")


def check_augment(augment: dict) -> dict:
    for key, value in augment.items():
        if key not in AUGMENTATIONS:
            raise ValueError(f"unknown augmentation data.augment.{key}; known: {list(AUGMENTATIONS)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"data.augment.{key} must be a number >= 0, got {value!r}")
    return {k: float(augment.get(k, 0.0)) for k in AUGMENTATIONS}


def augmentation_active(augment: dict | None) -> bool:
    return bool(augment) and any(float(v) > 0 for v in augment.values())


def _generator(seed: int, epoch: int, idx: int) -> torch.Generator:
    mixed = (int(seed) * 1_000_003 + int(epoch)) * 998_244_353 + int(idx)
    return torch.Generator().manual_seed(mixed % (2**63 - 1))


@torch.no_grad()
def augment_batch(batch, augment: dict, seed: int, epoch: int) -> None:
    """Perturbs a (CPU) batch in place: rattle = Gaussian displacements of that standard deviation (Angstrom) on
    every atom; strain = a symmetric strain tensor with entries uniform in [-strain, strain] applied to the cell
    and, with it, the positions (fractional coordinates kept)."""
    rattle, strain = float(augment.get("rattle", 0.0)), float(augment.get("strain", 0.0))
    pos = batch.pos.clone()
    cell = batch.cell.view(-1, 3, 3).clone()
    ptr = batch.ptr.tolist()
    for g, idx in enumerate(batch.idx.view(-1).tolist()):
        gen = _generator(seed, epoch, idx)
        lo, hi = ptr[g], ptr[g + 1]
        if strain > 0:
            a = (torch.rand(3, 3, generator=gen, dtype=torch.float64) * 2.0 - 1.0) * strain
            deform = torch.eye(3, dtype=torch.float64) + 0.5 * (a + a.T)
            deform = deform.to(pos.dtype)
            cell[g] = cell[g] @ deform
            pos[lo:hi] = pos[lo:hi] @ deform
        if rattle > 0:
            pos[lo:hi] += rattle * torch.randn(hi - lo, 3, generator=gen, dtype=torch.float64).to(pos.dtype)
    batch.pos = pos
    batch.cell = cell.view(batch.cell.shape)
