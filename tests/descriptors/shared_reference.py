"""Access to ../shared/reference (structures, parameters, reference values) and its acceptance rule."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest

from ..conftest import SHARED

REFERENCE = SHARED / "reference"


def require_reference():
    if not (REFERENCE / "params.json").exists():
        pytest.skip(f"shared reference data not found at {REFERENCE}")


@functools.cache
def params() -> dict:
    require_reference()
    return json.loads((REFERENCE / "params.json").read_text())


@functools.cache
def structures() -> dict:
    """name -> ase.Atoms, read back from structures.extxyz as the reference codes read them."""
    require_reference()
    from ase.io import read

    return {atoms.info["name"]: atoms for atoms in read(REFERENCE / "structures.extxyz", index=":")}


@functools.cache
def values() -> dict:
    require_reference()
    return dict(np.load(REFERENCE / "reference.npz"))


@functools.cache
def derivatives() -> dict:
    require_reference()
    return dict(np.load(REFERENCE / "derivatives.npz"))


def assert_matches(got, want, column_scale, what: str, rtol: float | None = None):
    """The acceptance rule of ../shared/reference/README.md: |x - ref| <= rtol * max(|ref|, scale[f]).

    The feature axis is axis 1.
    """
    rtol = params()["tolerance"]["rtol"] if rtol is None else rtol
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != reference {want.shape}"
    scale = np.asarray(column_scale, dtype=np.float64).reshape((1, -1) + (1,) * (want.ndim - 2))
    bound = rtol * np.maximum(np.abs(want), scale)
    excess = np.abs(got - want) - bound
    if np.any(excess > 0):
        worst = np.unravel_index(np.argmax(excess / np.maximum(bound, 1e-300)), want.shape)
        raise AssertionError(
            f"{what}: {int(np.sum(excess > 0))} of {want.size} entries outside the acceptance rule; worst at "
            f"{worst}: got {got[worst]!r}, reference {want[worst]!r}, bound {bound[worst]:.3g}"
        )
