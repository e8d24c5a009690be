"""Host synchronisations of the descriptor operators on a GPU (issue 11, finding 5).

Each call may synchronise once: the index checks' one small device-to-host copy (common/index_checks.h), which
also carries GMP's feature-table check. The parameter tables must add none: wACSF and EAD stage theirs through
pinned memory (asynchronous copies), GMP no longer copies its five feature tables to the host. torch's sync debug
mode warns on every synchronising copy, so counting its warnings counts the syncs. CPU-only machines skip this."""

import warnings

import ase.build
import pytest
import torch

import fpcore

from ..conftest import OTHER_DEVICES
from .test_wacsf import RICH, op_inputs


def count_syncs(call):
    torch.cuda.synchronize()
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            call()
    finally:
        torch.cuda.set_sync_debug_mode(previous)
    return sum("synchronizing CUDA operation" in str(w.message) for w in caught)


def inputs(device, dtype, cutoff):
    structures = [ase.build.bulk("Cu", "fcc", a=3.61, cubic=True), ase.build.molecule("CH3CH2OH")]
    return [t.to(device) for t in op_inputs(structures, cutoff, dtype)]


@pytest.mark.parametrize("device", OTHER_DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("descriptor", ["wacsf", "ead", "gmp"])
def test_one_sync_per_operator_call(descriptor, dtype, device):
    if descriptor == "wacsf":
        params = tuple(fpcore.WACSF(**RICH)._op_params.values())
        vectors, row_ptr, j, numbers = inputs(device, dtype, RICH["cutoff"])
        forward = lambda: torch.ops.fpcore.wacsf(vectors, row_ptr, j, numbers, *params)  # noqa: E731
        grad = torch.ones_like(forward())
        backward = lambda: torch.ops.fpcore.wacsf_backward(grad, vectors, row_ptr, j, numbers, *params)  # noqa: E731
    elif descriptor == "ead":
        params = ([0.4, 1.2], [0.0, 1.0, 2.0], 3, "poly2", 3.2)
        vectors, row_ptr, j, numbers = inputs(device, dtype, 3.2)
        forward = lambda: torch.ops.fpcore.ead(vectors, row_ptr, j, numbers, *params)  # noqa: E731
        grad = torch.ones_like(forward())
        backward = lambda: torch.ops.fpcore.ead_backward(grad, vectors, row_ptr, j, numbers, *params)  # noqa: E731
    else:
        gmp = fpcore.GMP(orders=[-1, 0, 1, 2, 4], sigmas=[0.4, 1.0], dtype=dtype).to(device)
        tables = gmp._tables(dtype, torch.device(device))
        vectors, row_ptr, j, numbers = inputs(device, dtype, 3.5)
        consts = (gmp.n_moments, gmp.square)
        forward = lambda: torch.ops.fpcore.gmp(vectors, row_ptr, j, numbers, *tables, *consts)  # noqa: E731
        features, moments = forward()
        grad = torch.ones_like(features)
        backward = lambda: torch.ops.fpcore.gmp_backward(  # noqa: E731
            grad, None, moments, vectors, row_ptr, j, numbers, *tables, *consts
        )
    forward(), backward()  # first calls: the caching allocators fill
    assert count_syncs(forward) == 1
    assert count_syncs(backward) == 1
