import gzip
import json

import ase
import ase.io
import numpy as np


def make_structures(n=5, seed=0, labels=True):
    """Small periodic crystals with distinct sizes, cells, species and labels."""
    rng = np.random.RandomState(seed)
    out = []
    for k in range(n):
        natoms = 1 + k % 4
        cell = np.diag(rng.uniform(3.0, 5.0, 3)) + rng.uniform(-0.3, 0.3, (3, 3))
        atoms = ase.Atoms(
            numbers=rng.choice([1, 6, 8, 14, 29, 79], size=natoms),
            scaled_positions=rng.uniform(0, 1, (natoms, 3)),
            cell=cell,
            pbc=[True, True, k % 2 == 0],
        )
        atoms.info["id"] = f"s-{k}"
        if labels:
            atoms.info["gap"] = float(rng.uniform(0, 3))
            atoms.info["e_form"] = float(rng.uniform(-2, 0))
        out.append(atoms)
    return out


def write_extxyz(path, structures):
    if str(path).endswith(".gz"):
        with gzip.open(path, "wt") as fh:
            ase.io.write(fh, structures, format="extxyz")
    else:
        ase.io.write(path, structures, format="extxyz")
    return path


def pymatgen_dict(atoms, cartesian=True):
    """What pymatgen's Structure.as_dict() writes (the fields fpcore reads)."""
    cell = atoms.cell.array
    sites = []
    for sym, xyz, abc in zip(atoms.get_chemical_symbols(), atoms.positions, atoms.get_scaled_positions(wrap=False)):
        site = {"species": [{"element": sym, "occu": 1}], "abc": abc.tolist(), "label": sym, "properties": {}}
        if cartesian:
            site["xyz"] = xyz.tolist()
        sites.append(site)
    return {
        "@module": "pymatgen.core.structure",
        "@class": "Structure",
        "charge": 0,
        "lattice": {"matrix": cell.tolist(), "pbc": [bool(p) for p in atoms.pbc], "a": 1.0},
        "properties": {},
        "sites": sites,
    }


def write_matbench(path, structures, target="gap", ids=None, cartesian=True):
    doc = {
        "index": ids or [f"mb-test-{k + 1:03d}" for k in range(len(structures))],
        "columns": ["structure", target],
        "data": [
            [pymatgen_dict(a, cartesian=cartesian or k % 2 == 0), a.info.get(target)] for k, a in enumerate(structures)
        ],
    }
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wt") as fh:
        json.dump(doc, fh)
    return doc


def assert_same_structure(data, atoms, atol=1e-10):
    """atol: extxyz stores positions with 8 decimals, so files written by ase round-trip to 5e-9."""
    np.testing.assert_array_equal(data.z.numpy(), atoms.numbers)
    np.testing.assert_allclose(data.pos.numpy(), atoms.positions, rtol=0, atol=atol)
    np.testing.assert_allclose(data.cell[0].numpy(), atoms.cell.array, rtol=0, atol=atol)
    np.testing.assert_array_equal(data.pbc[0].numpy(), atoms.pbc)
    assert data.natoms == len(atoms)
