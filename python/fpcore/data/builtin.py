"""Built-in datasets generated deterministically from ase (no download): the bundled default of fpcore-train.

Both sets come from one chemical space, the seven fcc metals of ase's EMT potential (Al Cu Ag Au Ni Pd Pt), and one
generator (`_draw`): a prototype (fcc, bcc, hcp, sc; primitive, conventional or a small supercell), a random
substitution with 1-3 species (solid solutions and ordered compounds alike), the volume of Vegard's law times a random
factor, a strain, sometimes a vacancy, and a rattle. Different seeds give different draws.

pretrain: 3,000 unlabelled structures (1-8 atoms), the many structures a fingerprint pre-training learns from.
finetune: 500 structures of another draw labelled with EMT: energy_per_atom (eV/atom, the default target) and
  energy (eV); the few labels of the downstream task.

Densities stay physical on purpose: the previous generator built lattices from covalent radii and made e.g. pure
hydrogen at 0.2 A^3/atom (2,500 neighbours per atom within 5 A), whose fingerprints were 10^4 standard deviations out
and caused the pre-training validation spikes. Here every structure has 10-22 A^3/atom and no two atoms closer than
0.75 x the ideal nearest-neighbour distance (checked on generation).
Random draws use numpy's RandomState, whose stream numpy keeps frozen, so the structures are the same everywhere.
"""

from __future__ import annotations

import numpy as np

from ._flat import Collector, FlatStructures

# Bump when a generator's output changes: it is part of the cache key (with the generator's parameters).
BUILTIN_VERSION = 2

EMT_ELEMENTS = ("Al", "Cu", "Ag", "Au", "Ni", "Pd", "Pt")

# (prototype, cubic cell?, repetitions) with their drawing weights; at most 8 atoms, so that the 3,000 pre-training
# structures cost about 3x the neighbour pairs of the previous 480 (~0.5 M pairs within 5 A per epoch).
_CELLS = (
    ("fcc", False, (1, 1, 1)),
    ("fcc", False, (2, 2, 2)),
    ("fcc", True, (1, 1, 1)),
    ("fcc", True, (2, 1, 1)),
    ("bcc", False, (2, 2, 2)),
    ("bcc", True, (1, 1, 1)),
    ("bcc", True, (2, 2, 1)),
    ("hcp", False, (1, 1, 1)),
    ("hcp", False, (2, 1, 1)),
    ("hcp", False, (2, 2, 1)),
    ("sc", False, (2, 2, 2)),
)
_CELL_WEIGHTS = np.array([0.5, 2, 2, 2, 1, 0.5, 1, 0.5, 0.5, 1, 0.5])
_CELL_WEIGHTS = _CELL_WEIGHTS / _CELL_WEIGHTS.sum()
# Lattice parameter a from the volume per atom V: a = (V * k)^(1/3) (atoms per conventional cell) and hcp's ideal c/a.
_ATOMS_PER_CUBE = {"fcc": 4, "bcc": 2, "sc": 1}
_HCP_C_OVER_A = np.sqrt(8.0 / 3.0)
MIN_DISTANCE_FACTOR = 0.75  # of the ideal fcc nearest-neighbour distance at the structure's volume


def _reference_volumes() -> dict:
    from ase.data import atomic_numbers, reference_states

    # All seven are fcc in ase's reference states: V = a^3 / 4.
    return {s: reference_states[atomic_numbers[s]]["a"] ** 3 / 4.0 for s in EMT_ELEMENTS}


def _lattice(proto: str, cubic: bool, volume: float):
    from ase.build import bulk

    if proto == "hcp":
        a = (2.0 * volume / (np.sqrt(3.0) / 2.0 * _HCP_C_OVER_A)) ** (1.0 / 3.0)
        return bulk("Cu", "hcp", a=a, c=_HCP_C_OVER_A * a)
    a = (volume * _ATOMS_PER_CUBE[proto]) ** (1.0 / 3.0)
    return bulk("Cu", proto, a=a, cubic=cubic)


def _strain(atoms, rng, magnitude):
    eps = rng.uniform(-magnitude, magnitude, size=(3, 3))
    eps = 0.5 * (eps + eps.T)
    atoms.set_cell(atoms.cell.array @ (np.eye(3) + eps), scale_atoms=True)


def _min_distance(atoms) -> float:
    """Shortest interatomic distance over the periodic images within two cells (the cells here are small and
    near-reduced, so the nearest image is among them); numpy, because ase's neighbor_list made generation 10x slower."""
    shifts = np.stack(np.meshgrid(*[np.arange(-2, 3)] * 3, indexing="ij"), -1).reshape(-1, 3) @ atoms.cell.array
    diff = atoms.positions[:, None, None, :] - atoms.positions[None, :, None, :] + shifts[None, None, :, :]
    d = np.linalg.norm(diff, axis=-1)
    d[d < 1e-8] = np.inf  # an atom and itself (zero shift)
    return float(d.min())


def _draw(rng, volumes: dict):
    """One structure: see the module docstring. Redraws the rattle if two atoms came too close."""
    proto, cubic, reps = _CELLS[rng.choice(len(_CELLS), p=_CELL_WEIGHTS)]
    n_species = 1 + rng.choice(3, p=[0.2, 0.45, 0.35])
    species = [EMT_ELEMENTS[k] for k in rng.choice(len(EMT_ELEMENTS), size=n_species, replace=False)]
    atoms = _lattice(proto, cubic, 1.0).repeat(reps)
    weights = rng.dirichlet(np.ones(n_species))
    symbols = [species[k] for k in rng.choice(n_species, size=len(atoms), p=weights)]
    atoms.set_chemical_symbols(symbols)
    # The unit lattice has 1 A^3 per atom: scale it to the drawn volume, then maybe take one atom out (a vacancy).
    volume = float(np.mean([volumes[s] for s in symbols])) * rng.uniform(0.9, 1.12)
    atoms.set_cell(atoms.cell.array * volume ** (1.0 / 3.0), scale_atoms=True)
    if len(atoms) >= 8 and rng.uniform() < 0.15:
        del atoms[int(rng.randint(len(atoms)))]
    _strain(atoms, rng, 0.04)
    ideal = atoms.copy()
    d_nn = (4.0 * volume) ** (1.0 / 3.0) / np.sqrt(2.0)
    sigma = rng.uniform(0.0, 0.15) * d_nn / 2.55
    for _ in range(20):
        atoms.positions = ideal.positions + rng.normal(0.0, sigma, size=ideal.positions.shape)
        if _min_distance(atoms) >= MIN_DISTANCE_FACTOR * d_nn:
            return atoms
        sigma *= 0.7
    atoms.positions = ideal.positions
    return atoms


def _generate_pretrain(n=3000, seed=20261202) -> list:
    rng = np.random.RandomState(seed)
    volumes = _reference_volumes()
    return [(f"builtin-pretrain-{k:04d}", _draw(rng, volumes), None) for k in range(n)]


def _generate_finetune(n=500, seed=20261203) -> list:
    from ase.calculators.emt import EMT

    rng = np.random.RandomState(seed)
    volumes = _reference_volumes()
    calc = EMT()
    structures = []
    for k in range(n):
        atoms = _draw(rng, volumes)
        atoms.calc = calc
        energy = float(atoms.get_potential_energy())
        atoms.calc = None
        structures.append(
            (f"builtin-finetune-{k:04d}", atoms, {"energy_per_atom": energy / len(atoms), "energy": energy})
        )
    return structures


# name -> (generator, its parameters (part of the cache key), available labels, default targets)
BUILTINS = {
    "pretrain": (_generate_pretrain, {"n": 3000, "seed": 20261202}, [], []),
    "finetune": (_generate_finetune, {"n": 500, "seed": 20261203}, ["energy_per_atom", "energy"], ["energy_per_atom"]),
}


def builtin_info(name: str):
    """(available label names, default targets) of a built-in dataset."""
    if name not in BUILTINS:
        raise ValueError(f"fpcore.data: unknown built-in dataset {name!r}; available: {', '.join(sorted(BUILTINS))}")
    _, _, available, default = BUILTINS[name]
    return list(available), list(default)


def builtin_params(name: str, size: int | None = None) -> dict:
    """The generator parameters of a built-in dataset (its size replaced by `size` when given)."""
    builtin_info(name)
    params = dict(BUILTINS[name][1])
    if size is not None:
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise ValueError(f"fpcore.data: builtin:{name} size must be a positive integer, got {size!r}")
        params["n"] = int(size)
    return params


def generate(name: str, targets, params: dict | None = None) -> FlatStructures:
    available, _ = builtin_info(name)
    for t in targets or []:
        if t not in available:
            raise KeyError(
                f"fpcore.data: target {t!r} is not a label of builtin:{name}; available: {available or '(none)'}"
            )
    collector = Collector(targets)
    for sid, atoms, labels in BUILTINS[name][0](**(params or builtin_params(name))):
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
