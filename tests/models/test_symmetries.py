"""Every registered backbone x every registered head: continuity at the cutoff and the symmetries of a crystal.

Table-driven: OUTPUT_KINDS says how each head's output transforms (a head missing from it fails the test), and the
"features" row checks the backbone's own AtomFeatures (scalar invariant, vector equivariant). Models are float64 so
O(eps) changes are visible.
"""

import pytest
import torch
from ase.build import bulk

from fpcore.models import BACKBONES, HEADS, build_model

# Small but complete (all layer types present) backbones; a new backbone may add an entry, defaults otherwise.
BACKBONE_KWARGS = {
    "SchNet": {"hidden": 16, "n_layers": 2, "n_rbf": 8, "cutoff": 4.0},
    "EquivariantTransformer": {"hidden": 16, "n_layers": 2, "n_heads": 4, "n_rbf": 8, "cutoff": 4.0},
}
HEAD_KWARGS = {
    "GraphHead": {"n_out": 2, "hidden": 8},
    "NodeHead": {"n_out": 3, "hidden": 8},
    "VectorHead": {"hidden": 8},
}
# How an output transforms: "graph" per structure (invariant), "node" per atom (invariant, follows permutations),
# "vector" per-atom 3-vectors (rotate with the structure, follow permutations).
OUTPUT_KINDS = {"GraphHead": "graph", "NodeHead": "node", "VectorHead": "vector"}
DIRECTIONS = "features", *sorted(HEADS)


def build(backbone: str, head: str, seed: int = 0):
    torch.manual_seed(seed)
    head_class = "NodeHead" if head == "features" else head
    spec = {
        "backbone": {"class": backbone, "kwargs": BACKBONE_KWARGS.get(backbone, {})},
        "head": {"class": head_class, "kwargs": HEAD_KWARGS[head_class]},
    }
    model = build_model(spec).double()
    if head == "features":
        # The backbone's own features: scalar (N, F) and vector (N, 3, F) or None.
        def run(z, pos, cell, pbc, batch, n_graphs=1):
            return model.backbone(z, model.graph(pos, cell, pbc, batch, n_graphs))

        return run, model.backbone
    return (lambda z, pos, cell, pbc, batch, n_graphs=1: model(z, pos, cell, pbc, batch, n_graphs)), model.backbone


def parts(out):
    """(invariant part, equivariant vector part or None) of an output, as (rows, ...) tensors."""
    if isinstance(out, tuple):
        return out[0], out[1]
    return out, None


def tensors(atoms):
    return (
        torch.tensor(atoms.numbers),
        torch.tensor(atoms.positions, dtype=torch.float64),
        torch.tensor(atoms.cell[:], dtype=torch.float64).view(1, 3, 3),
        torch.tensor(atoms.pbc).view(1, 3),
        torch.zeros(len(atoms), dtype=torch.long),
    )


def crystal():
    atoms = bulk("NaCl", "rocksalt", a=5.64) * (1, 1, 2)
    atoms.rattle(0.1, seed=3)
    return atoms


def rotation(seed):
    q = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)))[0]
    return q * torch.sign(torch.linalg.det(q))  # a proper rotation


def kind_of(head):
    if head == "features":
        return "features"
    assert head in OUTPUT_KINDS, f"head {head} has no row in OUTPUT_KINDS: say how its output transforms"
    return OUTPUT_KINDS[head]


def rotate_output(out, kind, rot):
    if kind == "vector":
        return out @ rot.T
    if kind == "features":
        scalar, vector = out
        return scalar, None if vector is None else torch.einsum("ij,njf->nif", rot, vector)
    return out


def permute_output(out, kind, perm):
    if kind == "graph":
        return out
    if kind == "features":
        return out.scalar[perm], None if out.vector is None else out.vector[perm]
    return out[perm]


def assert_same(a, b, atol=1e-9):
    for x, y in zip(parts(a), parts(b)):
        assert (x is None) == (y is None)
        if x is not None:
            torch.testing.assert_close(x, y, atol=atol, rtol=1e-7)


def largest(out):
    return max(float(x.abs().max()) for x in parts(out) if x is not None)


def difference(a, b):
    return max(float((x - y).abs().max()) for x, y in zip(parts(a), parts(b)) if x is not None)


@pytest.mark.parametrize("head", DIRECTIONS)
@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_continuous_when_a_neighbour_crosses_the_cutoff(backbone, head):
    run, bb = build(backbone, head)
    rc = bb.cutoff
    # A small cluster in an open box; atom 3 sits on the cutoff sphere of atom 0 but well inside that of atom 1, so
    # it carries features (and vectors) of its own when it enters or leaves atom 0's neighbourhood.
    cell = torch.eye(3, dtype=torch.float64).view(1, 3, 3) * 40
    pbc = torch.zeros(1, 3, dtype=torch.bool)
    z, batch = torch.tensor([11, 17, 8, 29]), torch.zeros(4, dtype=torch.long)
    direction = torch.tensor([1.0, 0.2, -0.1], dtype=torch.float64)
    direction = direction / direction.norm()

    def at(distance):
        pos = torch.tensor([[0.0, 0, 0], [1.5, 0.1, 0], [0.2, 1.7, 0.3], [0, 0, 0]], dtype=torch.float64)
        pos[3] = distance * direction
        return run(z, pos, cell, pbc, batch)

    eps = 1e-7
    inside, outside = at(rc - eps), at(rc + eps)
    scale = largest(inside)
    assert difference(inside, outside) < 1e-5 * scale, f"jump {difference(inside, outside):.3g} (size {scale:.3g})"
    # ... and the neighbour does matter when it is well inside (the check above is not vacuous).
    assert difference(at(rc - 0.5), inside) > 1e-4 * scale


@pytest.mark.parametrize("head", DIRECTIONS)
@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_rotation_translation_lattice_shift_and_permutation(backbone, head):
    run, _ = build(backbone, head)
    kind = kind_of(head)
    z, pos, cell, pbc, batch = tensors(crystal())
    ref = run(z, pos, cell, pbc, batch)
    assert largest(ref) > 1e-3

    rot = rotation(1)
    moved = (pos + torch.tensor([0.3, -1.2, 7.0], dtype=torch.float64)) @ rot.T
    assert_same(run(z, moved, cell @ rot.T, pbc, batch), rotate_output(ref, kind, rot))

    # Atoms moved by lattice vectors (positions wrapped or not) are the same crystal.
    shifted = pos.clone()
    shifted[0] += cell[0, 1] - 2 * cell[0, 2]
    shifted[3] -= cell[0, 0]
    assert_same(run(z, shifted, cell, pbc, batch), ref)

    perm = torch.randperm(len(z), generator=torch.Generator().manual_seed(5))
    out = run(z[perm], pos[perm], cell, pbc, batch)
    assert_same(out, permute_output(ref, kind, perm))

    # A real displacement changes the output: the checks above could not pass with a constant model.
    displaced = pos + 0.2 * torch.randn(pos.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    assert difference(run(z, displaced, cell, pbc, batch), ref) > 1e-4


@pytest.mark.parametrize("head", DIRECTIONS)
@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_supercell_is_the_same_crystal(backbone, head):
    run, _ = build(backbone, head)
    kind = kind_of(head)
    atoms = crystal()
    ref = run(*tensors(atoms))
    out = run(*tensors(atoms * (2, 1, 1)))  # ase repeats the atoms block by block
    if kind == "graph":
        assert_same(out, ref)  # mean pooling: intensive
    else:
        n = len(atoms)
        for block in range(2):
            rows = slice(block * n, (block + 1) * n)
            part = (
                (out.scalar[rows], None if out.vector is None else out.vector[rows])
                if kind == "features"
                else out[rows]
            )
            assert_same(part, ref)


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_backbone_declares_its_vector_features(backbone):
    run, bb = build(backbone, "features")
    out = run(*tensors(crystal()))
    assert (out.vector is not None) == bb.has_vector_features
    assert out.scalar.shape == (len(crystal()), bb.out_features)
    if out.vector is not None:
        assert out.vector.shape == (len(crystal()), 3, bb.out_features) and out.vector.abs().max() > 1e-3
