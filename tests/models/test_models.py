import pytest
import torch
from ase.build import bulk

from fpcore.models import BACKBONES, HEADS, AtomFeatures, build_backbone, build_graph, build_head, build_model
from fpcore.neighbors import compute

BACKBONE_KWARGS = {
    "SchNet": {"hidden": 16, "n_layers": 2, "n_rbf": 8, "cutoff": 4.0},
    "EquivariantTransformer": {"hidden": 16, "n_layers": 2, "n_heads": 4, "n_rbf": 8, "cutoff": 4.0},
}


def tensors(atoms, dtype=torch.float64):
    return (
        torch.tensor(atoms.numbers),
        torch.tensor(atoms.positions, dtype=dtype),
        torch.tensor(atoms.cell[:], dtype=dtype).view(1, 3, 3),
        torch.tensor(atoms.pbc).view(1, 3),
        torch.zeros(len(atoms), dtype=torch.long),
    )


def model(name, head="GraphHead", n_out=2, seed=0):
    torch.manual_seed(seed)
    return build_model(
        {
            "backbone": {"class": name, "kwargs": BACKBONE_KWARGS[name]},
            "head": {"class": head, "kwargs": {"n_out": n_out, "hidden": 8}},
        }
    )


def crystal():
    atoms = bulk("NaCl", "rocksalt", a=5.64) * (1, 1, 2)
    atoms.rattle(0.1, seed=3)
    return atoms


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_invariant_under_rotation_translation_and_wrapping(name):
    m = model(name, head="NodeHead", n_out=3)
    z, pos, cell, pbc, batch = tensors(crystal())
    ref = m(z, pos, cell, pbc, batch, 1)
    rot = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)))[0]
    moved = (pos + torch.tensor([0.3, -1.2, 7.0], dtype=torch.float64)) @ rot.T
    out = m(z, moved, cell @ rot.T, pbc, batch, 1)
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-4)
    # Moving an atom by a lattice vector changes nothing in a periodic crystal.
    shifted = pos.clone()
    shifted[0] += cell[0, 1] - 2 * cell[0, 2]
    torch.testing.assert_close(m(z, shifted, cell, pbc, batch, 1), ref, atol=2e-5, rtol=1e-4)
    # ... while a real displacement does (the test above could not pass with a constant model).
    assert (m(z, pos + 0.2 * torch.randn_like(pos), cell, pbc, batch, 1) - ref).abs().max() > 1e-4


def graph_of(backbone, pos, cell, pbc, batch, n_graphs=1, dtype=torch.float32):
    return build_graph(
        pos, cell, pbc, batch, n_graphs, cutoff=backbone.cutoff, max_neighbors=backbone.max_neighbors, dtype=dtype
    )


def test_et_vectors_are_equivariant():
    m = model("EquivariantTransformer").backbone
    z, pos, cell, pbc, batch = tensors(crystal())
    x, vec = m(z, graph_of(m, pos, cell, pbc, batch))
    rot = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2)))[0]
    x2, vec2 = m(z, graph_of(m, pos @ rot.T, cell @ rot.T, pbc, batch))
    torch.testing.assert_close(x2, x, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(vec2, torch.einsum("ij,njh->nih", rot.float(), vec), atol=2e-5, rtol=1e-4)
    assert vec.abs().max() > 1e-3


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_mean_pooled_graph_output_is_intensive(name):
    # A supercell is the same crystal: per-atom embeddings repeat, so the mean-pooled prediction is unchanged.
    m = model(name)
    atoms = crystal()
    ref = m(*tensors(atoms), 1)
    out = m(*tensors(atoms * (2, 1, 1)), 1)
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_batched_equals_separate(name):
    m = model(name)
    a, b = crystal(), bulk("Cu", "fcc", a=3.6)
    za, pa, ca, pba, _ = tensors(a)
    zb, pb, cb, pbb, _ = tensors(b)
    batch = torch.cat([torch.zeros(len(a), dtype=torch.long), torch.ones(len(b), dtype=torch.long)])
    out = m(torch.cat([za, zb]), torch.cat([pa, pb]), torch.cat([ca, cb]), torch.cat([pba, pbb]), batch, 2)
    torch.testing.assert_close(out[0:1], m(*tensors(a), 1), atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(out[1:2], m(*tensors(b), 1), atol=2e-5, rtol=1e-4)


def test_max_neighbors_keeps_the_nearest():
    z, pos, cell, pbc, batch = tensors(crystal())
    full = compute(pos, cell, pbc, batch, 6.0)
    g = build_graph(pos, cell, pbc, batch, 1, cutoff=6.0, max_neighbors=7, dtype=torch.float64)
    counts = torch.bincount(g.i, minlength=len(z))
    assert int(counts.max()) == 7 and bool((g.i[1:] >= g.i[:-1]).all())
    for atom in (0, 5):
        kept = torch.sort(g.distances[g.i == atom]).values
        nearest = torch.sort(full.distances[full.i == atom]).values[:7]
        torch.testing.assert_close(kept, nearest)


def test_rebuild_from_spec_and_state_dict():
    m = model("EquivariantTransformer")
    m2 = build_model(m.spec)
    m2.load_state_dict(m.state_dict())
    args = tensors(crystal())
    torch.testing.assert_close(m2(*args, 1), m(*args, 1))
    assert m.spec["backbone"]["class"] == "EquivariantTransformer"


def test_default_et_matches_the_paper_sizes():
    from fpcore.models import EquivariantTransformer

    et = EquivariantTransformer()
    assert (et.hidden, len(et.layers), et.layers[0].n_heads, et.rbf.means.numel(), et.cutoff) == (128, 8, 8, 50, 8.0)


def test_bad_inputs():
    with pytest.raises(ValueError, match="unknown backbone 'nope'"):
        build_model(
            {"backbone": {"class": "nope", "kwargs": {}}, "head": {"class": "GraphHead", "kwargs": {"n_out": 1}}}
        )
    with pytest.raises(ValueError, match="bad arguments"):
        build_model(
            {
                "backbone": {"class": "SchNet", "kwargs": {"hiden": 3}},
                "head": {"class": "GraphHead", "kwargs": {"n_out": 1}},
            }
        )
    with pytest.raises(ValueError, match="divisible"):
        build_model(
            {
                "backbone": {"class": "et", "kwargs": {"hidden": 10, "n_heads": 3}},
                "head": {"class": "GraphHead", "kwargs": {"n_out": 1}},
            }
        )
    m = model("SchNet")
    z, pos, cell, pbc, batch = tensors(crystal())
    with pytest.raises(ValueError, match="atomic numbers"):
        m(z * 0, pos, cell, pbc, batch, 1)


def test_cosine_cutoff_makes_output_continuous_at_the_cutoff():
    # Two atoms in a big box crossing the cutoff: the prediction must not jump.
    m = model("SchNet", head="NodeHead", n_out=1)
    cell = torch.eye(3, dtype=torch.float64).view(1, 3, 3) * 20
    pbc = torch.zeros(1, 3, dtype=torch.bool)
    z = torch.tensor([11, 17])
    outs = []
    for d in (4.0 - 1e-7, 4.0 + 1e-7):
        pos = torch.tensor([[0.0, 0.0, 0.0], [d, 0.0, 0.0]], dtype=torch.float64)
        outs.append(m(z, pos, cell, pbc, torch.zeros(2, dtype=torch.long), 1))
    assert float((outs[0] - outs[1]).abs().max()) < 1e-5


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_max_neighbors_does_not_depend_on_atom_order(name):
    # All atoms of an fcc Cu supercell are symmetry-equivalent; 12 nearest + 6 second neighbours: cutting at 14
    # falls inside the second shell, which must be kept whole (18 pairs) for every atom, whatever its index.
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 2, 2)
    z, pos, cell, pbc, batch = tensors(atoms)
    g = build_graph(pos, cell, pbc, batch, 1, cutoff=4.0, max_neighbors=14, dtype=torch.float64)
    assert torch.bincount(g.i, minlength=len(atoms)).tolist() == [18] * len(atoms)
    kwargs = dict(BACKBONE_KWARGS[name], max_neighbors=14)
    torch.manual_seed(0)
    m = build_model(
        {"backbone": {"class": name, "kwargs": kwargs}, "head": {"class": "NodeHead", "kwargs": {"n_out": 4}}}
    )
    m = m.double()
    out = m(z, pos, cell, pbc, batch, 1)
    torch.testing.assert_close(out, out[:1].expand_as(out), atol=1e-10, rtol=1e-10)


def test_max_neighbors_whole_shells_handles_atoms_without_neighbours():
    cell = torch.eye(3, dtype=torch.float64).view(1, 3, 3) * 30
    pos = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [0, 1.5, 0], [20.0, 20, 20]], dtype=torch.float64)
    pbc = torch.zeros(1, 3, dtype=torch.bool)
    g = build_graph(pos, cell, pbc, torch.zeros(4, dtype=torch.long), 1, cutoff=3.0, max_neighbors=1)
    assert sorted(zip(g.i.tolist(), g.j.tolist())) == [(0, 1), (1, 0), (2, 0)]


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_vector_head_is_equivariant_on_every_backbone(name):
    torch.manual_seed(0)
    backbone = build_backbone(name, BACKBONE_KWARGS[name])
    head = build_head("VectorHead", {"hidden": 8}, backbone=backbone)
    assert head.use_vector_features == backbone.has_vector_features
    z, pos, cell, pbc, batch = tensors(crystal())
    out = head(backbone(z, graph_of(backbone, pos, cell, pbc, batch)), graph_of(backbone, pos, cell, pbc, batch))
    assert out.shape == (len(z), 3) and out.abs().max() > 1e-4
    rot = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4)))[0]
    g2 = graph_of(backbone, pos @ rot.T, cell @ rot.T, pbc, batch)
    torch.testing.assert_close(head(backbone(z, g2), g2), out @ rot.T.float(), atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("head_name", sorted(HEADS))
def test_heads_compute_in_float32_under_autocast(head_name):
    torch.manual_seed(0)
    backbone = build_backbone("SchNet", BACKBONE_KWARGS["SchNet"])
    kwargs = {"hidden": 8} if head_name == "VectorHead" else {"hidden": 8, "n_out": 2}
    head = build_head(head_name, kwargs, backbone=backbone)
    z, pos, cell, pbc, batch = tensors(crystal())
    g = graph_of(backbone, pos, cell, pbc, batch)
    ref_features = backbone(z, g)
    ref = head(ref_features, g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        features = backbone(z, g)
        out = head(features, g)
    assert (features.scalar - ref_features.scalar).abs().max() > 1e-4  # autocast did act on the backbone
    assert out.dtype == torch.float32
    # Only the backbone's bf16 rounding remains (the head itself and its pooling ran in float32).
    head_on_rounded = head(AtomFeatures(features.scalar.float(), None), g)
    torch.testing.assert_close(out, head_on_rounded)
    assert (out - ref).abs().max() < 0.1 * ref.abs().max()


def test_paper_preset_sets_the_authors_conventions():
    from fpcore.models import PRESETS, EquivariantTransformer

    et = EquivariantTransformer(hidden=16, n_layers=2, n_heads=4, n_rbf=8, preset="paper")
    assert et.options == {"vector_cutoff": True, "rbf_envelope": True, "init": "xavier"}
    linears = [m for m in et.modules() if isinstance(m, torch.nn.Linear)]
    assert all(m.bias is None or not m.bias.any() for m in linears)
    # xavier-uniform bound sqrt(6 / (fan_in + fan_out)) instead of PyTorch's 1/sqrt(fan_in)
    w = et.layers[0].q_proj.weight
    assert float(w.abs().max()) <= (6 / 32) ** 0.5 and float(w.abs().max()) > 16**-0.5
    # the basis goes to zero at the cutoff with the envelope, not without
    d = torch.tensor([8.0 - 1e-4])
    assert float(et.rbf(d).max()) < 1e-6 < float(EquivariantTransformer(n_rbf=8).rbf(d).max())
    # explicit kwargs override the preset
    assert EquivariantTransformer(hidden=16, n_heads=4, preset="paper", init="default").options["init"] == "default"
    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        EquivariantTransformer(preset="nope")

    preset = PRESETS["paper"]
    m = build_model(
        {
            "backbone": preset["backbone"],
            "head": {"class": "GraphHead", "kwargs": dict(preset["head"], n_out=1)},
        }
    )
    assert sum(isinstance(layer, torch.nn.Linear) for layer in m.head.net) == 3 and m.head.pooling == "sum"
    assert not any(layer.bias.any() for layer in m.head.net if isinstance(layer, torch.nn.Linear))
    assert preset["optimizer"]["weight_decay"] == 0.01


def test_legacy_spec_rebuilds_the_et_as_trained_before_the_cutoff_fix():
    from fpcore.models import legacy_spec

    old = model("EquivariantTransformer")
    legacy = build_model(legacy_spec(old.spec))
    assert legacy.spec["backbone"]["kwargs"]["vector_cutoff"] is False
    legacy.load_state_dict(old.state_dict())  # same keys
    args = tensors(crystal())
    # Same weights, different vector messages near the cutoff: different outputs.
    assert (legacy(*args, 1) - old(*args, 1)).abs().max() > 1e-6
    assert legacy_spec(model("SchNet").spec) == model("SchNet").spec


def test_schnet_state_dict_of_the_hand_written_version_loads_and_computes_the_same():
    # Key names and layer order of SchNet before it used torch_geometric's InteractionBlock; its forward written out.
    from fpcore.models import upgrade_state_dict

    torch.manual_seed(3)
    h, n_rbf, rc = 16, 8, 4.0
    old = {"embedding.weight": torch.randn(101, h), "rbf.offsets": torch.linspace(0, rc, n_rbf)}
    for layer in range(2):
        p = f"interactions.{layer}."
        old[p + "lin_in.weight"] = torch.randn(h, h) / 4
        for name, shape in (
            ("filter.0", (h, n_rbf)),
            ("filter.2", (h, h)),
            ("lin_out.0", (h, h)),
            ("lin_out.2", (h, h)),
        ):
            old[p + name + ".weight"], old[p + name + ".bias"] = torch.randn(shape) / 4, torch.randn(shape[0]) / 4

    def ssp(x):
        return torch.nn.functional.softplus(x) - torch.log(torch.tensor(2.0))

    z, pos, cell, pbc, batch = tensors(crystal(), torch.float32)
    g = build_graph(pos, cell, pbc, batch, 1, cutoff=rc)
    rbf = torch.exp(-0.5 / (rc / (n_rbf - 1)) ** 2 * (g.distances.unsqueeze(-1) - old["rbf.offsets"]) ** 2)
    envelope = 0.5 * (torch.cos(g.distances * torch.pi / rc) + 1)
    x = old["embedding.weight"][z]
    for layer in range(2):
        w = {k.split(".", 2)[2]: v for k, v in old.items() if k.startswith(f"interactions.{layer}.")}
        filt = ssp(rbf @ w["filter.0.weight"].T + w["filter.0.bias"]) @ w["filter.2.weight"].T + w["filter.2.bias"]
        msg = (x @ w["lin_in.weight"].T)[g.j] * filt * envelope.unsqueeze(-1)
        agg = torch.zeros_like(x).index_add_(0, g.i, msg)
        y = ssp(agg @ w["lin_out.0.weight"].T + w["lin_out.0.bias"]) @ w["lin_out.2.weight"].T + w["lin_out.2.bias"]
        x = x + y

    backbone = build_backbone("SchNet", {"hidden": h, "n_layers": 2, "n_rbf": n_rbf, "cutoff": rc})
    backbone.load_state_dict(old)  # old key names accepted directly
    torch.testing.assert_close(backbone(z, g).scalar, x, atol=1e-5, rtol=1e-5)
    # ... and through the model-level helper, as a checkpoint loader would use it.
    spec = {"backbone": {"class": "SchNet", "kwargs": {}}, "head": {"class": "GraphHead", "kwargs": {}}}
    upgraded = upgrade_state_dict(spec, {"backbone." + k: v for k, v in old.items()} | {"head.net.0.bias": 1})
    assert set(upgraded) == {"backbone." + k for k in backbone.state_dict()} | {"head.net.0.bias"}
