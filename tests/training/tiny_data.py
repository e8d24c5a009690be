"""Tiny labelled crystal data for trainer tests: rattled fcc/bcc cells with EMT energies per atom."""

import numpy as np
import torch
from ase.build import bulk
from ase.calculators.emt import EMT
from torch_geometric.data import Data

ELEMENTS = [("Cu", "fcc", 3.61), ("Al", "fcc", 4.05), ("Ni", "fcc", 3.52), ("Ag", "fcc", 4.09)]

MODEL_SETS = [
    "model.backbone=SchNet",
    "model.backbone_kwargs={hidden: 16, n_layers: 2, n_rbf: 8}",
    "model.cutoff=4.0",
    "model.head_hidden=16",
    "data.batch_size=4",
    "run.progress=false",
    "run.plots=false",
    "run.device=cpu",
]
TOY_FINGERPRINTS = "descriptor.fingerprints=[{name: RadialSum, kwargs: {cutoff: 3.5, eta: [0.5, 2.0]}}]"


def cli_sets(epochs: int, *extra: str) -> list[str]:
    """`--set` arguments for a tiny CLI run: the small model, `epochs`, a 50/25/25 split, then `extra` overrides."""
    out = []
    for s in MODEL_SETS + [f"optim.epochs={epochs}", "data.split=[0.5, 0.25, 0.25]", *extra]:
        out += ["--set", s]
    return out


def structures(n: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        symbol, lattice, a0 = ELEMENTS[k % len(ELEMENTS)]
        atoms = bulk(symbol, lattice, a=a0 * rng.uniform(0.92, 1.08))
        if k % 3 == 0:
            atoms = atoms * (1, 1, 2)
        atoms.rattle(0.02, seed=int(rng.integers(1 << 30)))
        atoms.calc = EMT()
        atoms.info["energy_per_atom"] = float(atoms.get_potential_energy()) / len(atoms)
        atoms.calc = None
        out.append(atoms)
    return out


def write_extxyz(path, atoms_list):
    import ase.io

    ase.io.write(str(path), atoms_list, format="extxyz")
    return path


def to_data(atoms_list, target="energy_per_atom"):
    data = []
    for idx, atoms in enumerate(atoms_list):
        d = Data(
            pos=torch.tensor(atoms.positions, dtype=torch.float64),
            z=torch.tensor(atoms.numbers, dtype=torch.long),
            cell=torch.tensor(atoms.cell[:], dtype=torch.float64).view(1, 3, 3),
            pbc=torch.tensor(atoms.pbc).view(1, 3),
            natoms=len(atoms),
            idx=idx,
        )
        if target is not None:
            d.y = torch.tensor([[atoms.info[target]]], dtype=torch.float32)
        data.append(d)
    return data


class ListDataset(torch.utils.data.Dataset):
    def __init__(self, data, target_names=("energy_per_atom",)):
        self.data, self.target_names = data, list(target_names)
        self.ids = [f"s{k}" for k in range(len(data))]

    def __len__(self):
        return len(self.data)

    def __getitem__(self, k):
        return self.data[k]
