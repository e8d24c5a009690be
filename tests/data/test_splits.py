import pytest
import torch

from fpcore.data import kfold_split, random_split
from fpcore.data.splits import split_counts


@pytest.mark.parametrize("n", [1, 2, 7, 10, 101, 1000])
def test_random_split_is_a_partition_with_requested_sizes(n):
    split = random_split(n, (0.6, 0.2, 0.2), seed=3)
    assert set(split) == {"train", "val", "test"}
    allidx = torch.cat([split["train"], split["val"], split["test"]])
    assert allidx.dtype == torch.int64
    assert torch.equal(allidx.sort().values, torch.arange(n))
    for name, frac in zip(("train", "val", "test"), (0.6, 0.2, 0.2)):
        assert abs(len(split[name]) - frac * n) < 1  # largest-remainder rounding
        assert torch.equal(split[name], split[name].sort().values)


def test_random_split_deterministic_and_seed_dependent():
    a = random_split(500, seed=111)
    b = random_split(500, seed=111)
    c = random_split(500, seed=112)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["test"], c["test"])
    assert len(set(a["test"].tolist()) & set(a["train"].tolist())) == 0


def test_split_counts_sum():
    assert split_counts(10, [0.6, 0.2, 0.2]) == [6, 2, 2]
    assert split_counts(3, [0.6, 0.2, 0.2]) == [2, 1, 0]
    assert split_counts(7, [0.5, 0.5, 0.0]) == [4, 3, 0]
    assert sum(split_counts(12345, [0.33, 0.33, 0.34])) == 12345


@pytest.mark.parametrize(
    "fractions, error, match",
    [
        ((0.6, 0.2), ValueError, "3 entries"),
        ((0.6, 0.3, 0.2), ValueError, "sum to 1"),
        ((1.2, -0.1, -0.1), ValueError, ">= 0"),
        ((float("nan"), 0.5, 0.5), ValueError, "finite"),
        (0.5, TypeError, "sequence of 3 numbers"),
    ],
)
def test_random_split_validates_fractions(fractions, error, match):
    with pytest.raises(error, match=match):
        random_split(10, fractions)


def test_bad_n_and_seed():
    with pytest.raises(ValueError, match="cannot split 0 structures"):
        random_split(0)
    with pytest.raises(TypeError, match="n must be an int"):
        random_split(10.0)
    with pytest.raises(TypeError, match="seed must be an int"):
        random_split(10, seed="a")


@pytest.mark.parametrize("n, k", [(10, 5), (103, 5), (7, 3)])
def test_kfold_split(n, k):
    folds = kfold_split(n, k=k, seed=5)
    assert len(folds) == k
    tests = torch.cat([f["test"] for f in folds])
    vals = torch.cat([f["val"] for f in folds])
    assert torch.equal(tests.sort().values, torch.arange(n))  # each index is tested exactly once
    assert torch.equal(vals.sort().values, torch.arange(n))
    for f in folds:
        assert torch.equal(torch.cat([f["train"], f["val"], f["test"]]).sort().values, torch.arange(n))
        assert abs(len(f["test"]) - n / k) < 1 and abs(len(f["train"]) - n * (k - 2) / k) < 2
    again = kfold_split(n, k=k, seed=5)
    assert all(torch.equal(f[s], g[s]) for f, g in zip(folds, again) for s in f)
    other = kfold_split(n, k=k, seed=6)
    assert any(not torch.equal(f["test"], g["test"]) for f, g in zip(folds, other))


def test_kfold_validates_k():
    with pytest.raises(ValueError, match="k must be >= 3"):
        kfold_split(10, k=2)
    with pytest.raises(ValueError, match="need at least k structures"):
        kfold_split(4, k=5)
