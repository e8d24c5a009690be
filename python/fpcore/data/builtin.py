"""Built-in datasets generated deterministically from ase (no download).

pretrain: ~480 unlabelled crystals: 10 prototypes (fcc, bcc, hcp, sc, diamond, rocksalt, zincblende, CsCl, wurtzite,
  fluorite) over 50 elements, lattice constants from covalent radii, random supercells, strains and rattles.
finetune: ~320 rattled/strained fcc Cu/Ag/Au/Ni/Pd/Pt/Al alloys labelled with ase's EMT potential:
  energy_per_atom (eV/atom, the default target) and energy (eV).
Random draws use numpy's RandomState, whose stream numpy keeps frozen, so the structures are the same everywhere.
"""

from __future__ import annotations

import numpy as np

from ._flat import Collector, FlatStructures

# Bump when a generator's output changes: it is part of the cache key.
BUILTIN_VERSION = 1

PRETRAIN_ELEMENTS = (
    "H Li Be B C N O F Na Mg Al Si P S Cl K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se Br Rb Sr Y Zr Nb Mo Ru Rh "
    "Pd Ag Cd In Sn Sb Te I Cs Ba"
).split()
EMT_ELEMENTS = ("Al", "Cu", "Ag", "Au", "Ni", "Pd", "Pt")

# Lattice parameter a as a multiple of the nearest-neighbour distance d of each ideal prototype.
_UNARY = {"fcc": np.sqrt(2.0), "bcc": 2.0 / np.sqrt(3.0), "sc": 1.0, "hcp": 1.0, "diamond": 4.0 / np.sqrt(3.0)}
_BINARY = {
    "rocksalt": 2.0,
    "zincblende": 4.0 / np.sqrt(3.0),
    "cesiumchloride": 2.0 / np.sqrt(3.0),
    "wurtzite": 1.0 / (0.375 * np.sqrt(8.0 / 3.0)),
    "fluorite": 4.0 / np.sqrt(3.0),
}
_SUPERCELLS = ((1, 1, 1), (2, 1, 1), (1, 2, 1), (1, 1, 2), (2, 2, 1), (2, 2, 2))


def _strain(atoms, rng, magnitude):
    eps = rng.uniform(-magnitude, magnitude, size=(3, 3))
    eps = 0.5 * (eps + eps.T)
    atoms.set_cell(atoms.cell.array @ (np.eye(3) + eps), scale_atoms=True)


def _generate_pretrain(n=480, seed=20240611, max_atoms=48) -> list:
    from ase.build import bulk
    from ase.data import atomic_numbers, covalent_radii

    rng = np.random.RandomState(seed)
    prototypes = list(_UNARY) + list(_BINARY)
    structures = []
    while len(structures) < n:
        proto = prototypes[rng.randint(len(prototypes))]
        a_sym, b_sym = (PRETRAIN_ELEMENTS[k] for k in rng.choice(len(PRETRAIN_ELEMENTS), size=2, replace=False))
        r_a, r_b = covalent_radii[atomic_numbers[a_sym]], covalent_radii[atomic_numbers[b_sym]]
        scale = rng.uniform(0.95, 1.15)
        cubic = bool(rng.randint(2)) and proto not in ("hcp", "wurtzite")
        if proto in _UNARY:
            a = _UNARY[proto] * 2 * r_a * scale
            atoms = bulk(a_sym, proto, a=a, cubic=cubic) if proto != "hcp" else bulk(a_sym, "hcp", a=a, c=1.633 * a)
        else:
            a = _BINARY[proto] * (r_a + r_b) * scale
            formula = a_sym + b_sym + ("2" if proto == "fluorite" else "")
            if proto == "wurtzite":
                atoms = bulk(formula, proto, a=a, c=np.sqrt(8.0 / 3.0) * a, u=0.375)
            else:
                atoms = bulk(formula, proto, a=a, cubic=cubic)
        reps = _SUPERCELLS[rng.randint(len(_SUPERCELLS))]
        if len(atoms) * np.prod(reps) > max_atoms:
            reps = (1, 1, 1)
        atoms = atoms.repeat(reps)
        _strain(atoms, rng, 0.04)
        atoms.positions += rng.normal(0.0, 0.04, size=atoms.positions.shape)
        structures.append((f"builtin-pretrain-{len(structures):04d}", atoms, None))
    return structures


def _generate_finetune(n=320, seed=20240612) -> list:
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.data import atomic_numbers, reference_states

    rng = np.random.RandomState(seed)
    a_ref = {s: reference_states[atomic_numbers[s]]["a"] for s in EMT_ELEMENTS}
    calc = EMT()
    shapes = (
        ("prim", (2, 2, 2)),
        ("cubic", (1, 1, 1)),
        ("cubic", (2, 1, 1)),
        ("cubic", (2, 2, 1)),
        ("prim", (3, 2, 2)),
    )
    structures = []
    while len(structures) < n:
        n_species = 1 + rng.randint(3)
        species = [EMT_ELEMENTS[k] for k in rng.choice(len(EMT_ELEMENTS), size=n_species, replace=False)]
        kind, reps = shapes[rng.randint(len(shapes))]
        atoms = bulk("Cu", "fcc", a=1.0, cubic=(kind == "cubic")).repeat(reps)
        symbols = [species[k] for k in rng.randint(n_species, size=len(atoms))]
        # Vegard's law for the alloy's lattice constant, then a volume/shear strain and a rattle.
        a = float(np.mean([a_ref[s] for s in symbols]))
        atoms.set_cell(atoms.cell.array * a, scale_atoms=True)
        atoms.set_chemical_symbols(symbols)
        _strain(atoms, rng, 0.03)
        atoms.set_cell(atoms.cell.array * rng.uniform(0.97, 1.04), scale_atoms=True)
        atoms.positions += rng.normal(0.0, rng.uniform(0.0, 0.12), size=atoms.positions.shape)
        atoms.calc = calc
        energy = float(atoms.get_potential_energy())
        atoms.calc = None
        structures.append(
            (
                f"builtin-finetune-{len(structures):04d}",
                atoms,
                {"energy_per_atom": energy / len(atoms), "energy": energy},
            )
        )
    return structures


BUILTINS = {
    "pretrain": (_generate_pretrain, [], []),
    "finetune": (_generate_finetune, ["energy_per_atom", "energy"], ["energy_per_atom"]),
}


def builtin_info(name: str):
    """(available label names, default targets) of a built-in dataset."""
    if name not in BUILTINS:
        raise ValueError(f"fpcore.data: unknown built-in dataset {name!r}; available: {', '.join(sorted(BUILTINS))}")
    _, available, default = BUILTINS[name]
    return list(available), list(default)


def generate(name: str, targets) -> FlatStructures:
    available, _ = builtin_info(name)
    for t in targets or []:
        if t not in available:
            raise KeyError(
                f"fpcore.data: target {t!r} is not a label of builtin:{name}; available: {available or '(none)'}"
            )
    collector = Collector(targets)
    for sid, atoms, labels in BUILTINS[name][0]():
        collector.add(
            sid,
            atoms.numbers,
            atoms.positions,
            atoms.cell.array,
            atoms.pbc,
            [labels[t] for t in targets] if targets else None,
        )
    collector.end_source(f"builtin:{name}")
    return collector.finish()
