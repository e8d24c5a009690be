"""Element-aware splits and the warning for val/test elements absent from training (fpcore.data.splits)."""

import warnings

import pytest
import torch
from ase import Atoms

from fpcore.data import StructureDataset, element_coverage_warning, load_dataset, random_split, structure_elements
from fpcore.data.splits import cover_elements, uncovered_elements

from .helpers import write_extxyz


def _split(train, val, test):
    return {"train": torch.tensor(train), "val": torch.tensor(val), "test": torch.tensor(test)}


def test_uncovered_elements_and_cover_moves_only_what_is_needed():
    elements = [frozenset({29}), frozenset({29, 79}), frozenset({13}), frozenset({29}), frozenset({79, 46})]
    split = _split([0, 3], [1, 2], [4])
    missing = uncovered_elements(split, elements)
    assert missing == {"val": {79: [1], 13: [2]}, "test": {46: [4], 79: [4]}}
    covered = cover_elements(split, elements)
    assert covered["train"].tolist() == [0, 1, 2, 3, 4] and covered["val"].tolist() == [] == covered["test"].tolist()
    assert uncovered_elements(covered, elements) == {"val": {}, "test": {}}
    # Nothing to move: the split is returned unchanged.
    same = cover_elements(_split([0, 1, 2, 4], [3], []), elements)
    assert same["train"].tolist() == [0, 1, 2, 4] and same["val"].tolist() == [3]


def test_warning_names_elements_split_and_count():
    elements = [frozenset({29}), frozenset({29, 79}), frozenset({79}), frozenset({29})]
    text = element_coverage_warning(_split([0, 3], [1, 2], []), elements)
    assert text.startswith("element(s) absent from the training split appear in val: Au (2 structure(s))")
    assert element_coverage_warning(_split([0, 1], [2, 3], []), elements) is None


def test_random_split_with_elements_is_disjoint_covering_and_deterministic():
    gen = torch.Generator().manual_seed(0)
    # 200 structures over 12 elements, two of them rare (one structure each).
    elements = [frozenset(torch.randint(20, 30, (2,), generator=gen).tolist()) for _ in range(198)]
    elements += [frozenset({3}), frozenset({4, 20})]
    plain = random_split(200, (0.6, 0.2, 0.2), seed=5)
    aware = random_split(200, (0.6, 0.2, 0.2), seed=5, elements=elements)
    again = random_split(200, (0.6, 0.2, 0.2), seed=5, elements=elements)
    assert all(torch.equal(aware[k], again[k]) for k in aware)
    parts = [set(aware[k].tolist()) for k in ("train", "val", "test")]
    assert sum(map(len, parts)) == 200 and len(set().union(*parts)) == 200
    assert uncovered_elements(aware, elements) == {"val": {}, "test": {}}
    moved = set(aware["train"].tolist()) - set(plain["train"].tolist())
    assert moved <= {198, 199} and set(plain["train"].tolist()) <= set(aware["train"].tolist())
    with pytest.raises(ValueError, match="elements has 3 entries for 200 structures"):
        random_split(200, seed=5, elements=elements[:3])


def test_structure_elements_of_a_dataset(tmp_path):
    structures = [Atoms("Cu2", positions=[[0, 0, 0], [1.8, 0, 0]], cell=[5, 5, 5], pbc=True) for _ in range(2)]
    structures.append(Atoms("AuCu", positions=[[0, 0, 0], [2.5, 0, 0]], cell=[5, 5, 5], pbc=True))
    write_extxyz(tmp_path / "s.extxyz", structures)
    ds = load_dataset(tmp_path / "s.extxyz", cache_dir=False)
    assert isinstance(ds, StructureDataset)
    assert structure_elements(ds) == [frozenset({29}), frozenset({29}), frozenset({29, 79})]
    # Any dataset of Data objects with z works too.
    assert structure_elements([ds[0], ds[2]]) == [frozenset({29}), frozenset({29, 79})]


def test_trainer_warns_about_a_validation_element_missing_from_training(tmp_path, monkeypatch):
    from fpcore.training import resolve_config, run_training

    structures = []
    for k in range(12):
        symbols = "Cu2" if k < 11 else "Au2"
        a = Atoms(symbols, positions=[[0, 0, 0], [1.8 + 0.01 * k, 0, 0]], cell=[4, 4, 4], pbc=True)
        a.info["e"] = float(k)
        structures.append(a)
    write_extxyz(tmp_path / "d.extxyz", structures)
    split = {"train": list(range(10)), "val": [10, 11], "test": []}
    (tmp_path / "split.json").write_text(__import__("json").dumps(split))
    cfg = resolve_config(
        "finetune",
        None,
        [
            f"data.source={tmp_path / 'd.extxyz'}",
            "data.targets=[e]",
            f"data.split_file={tmp_path / 'split.json'}",
            f"data.cache_dir={tmp_path / 'cache'}",
            "model.backbone_kwargs={hidden: 8, n_layers: 1, n_rbf: 4}",
            "model.head_hidden=8",
            "optim.epochs=1",
            "run.progress=false",
            "run.plots=false",
        ],
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_training("finetune", cfg, run_dir=tmp_path / "run")
    texts = [str(w.message) for w in caught]
    assert any("absent from the training split appear in val: Au (1 structure(s))" in t for t in texts), texts
