"""Python-side registrations of fpcore::gmp: fake (meta) kernels and the autograd formula.

The forward returns (features, moments); the backward maps dL/dfeatures (and dL/dmoments, if the
moments were used) to dL/dvectors in one C++ pass. Double backward is not implemented: asking for it
raises NotImplementedError (as wACSF) instead of silently returning wrong (zero) second derivatives.
"""

import torch

from .. import ops
from .base import register_no_double_backward

_N_TABLES = len(ops.GMPTables._fields)


@torch.library.register_fake("fpcore::gmp")
def _gmp_fake(
    vectors,
    row_ptr,
    neighbors_j,
    numbers,
    group_consts,
    group_ptr,
    group_features,
    group_max_order,
    orders,
    offsets,
    c1,
    radii2,
    coeffs,
    multiplicity,
    n_moments,
    square,
):
    n_atoms = numbers.shape[0]
    return vectors.new_empty((n_atoms, orders.shape[0])), vectors.new_empty((n_atoms, n_moments))


@torch.library.register_fake("fpcore::gmp_backward")
def _gmp_backward_fake(grad_features, grad_moments, moments, vectors, *rest):
    # new_empty, not empty_like: the kernel returns a contiguous tensor whatever the strides of vectors.
    return vectors.new_empty(vectors.shape)


def _setup_context(ctx, inputs, output):
    vectors, row_ptr, neighbors_j, numbers, *rest = inputs
    tables, (n_moments, square) = rest[:_N_TABLES], rest[_N_TABLES:]
    ctx.save_for_backward(output[1], vectors, row_ptr, neighbors_j, numbers, *tables)
    ctx.n_moments, ctx.square = n_moments, square


def _backward(ctx, grad_features, grad_moments):
    moments, vectors, row_ptr, neighbors_j, numbers, *tables = ctx.saved_tensors
    tables = ops.GMPTables(*tables)
    if grad_features is None:
        grad_features = moments.new_zeros((moments.shape[0], tables.orders.shape[0]))
    grad_vectors = ops.gmp_backward(
        grad_features=grad_features.contiguous(),
        grad_moments=grad_moments,
        moments=moments,
        vectors=vectors,
        row_ptr=row_ptr,
        neighbors_j=neighbors_j,
        numbers=numbers,
        tables=tables,
        n_moments=ctx.n_moments,
        square=ctx.square,
    )
    return (grad_vectors,) + (None,) * (3 + _N_TABLES + 2)


torch.library.register_autograd("fpcore::gmp", _backward, setup_context=_setup_context)


register_no_double_backward("fpcore::gmp_backward", "fpcore.GMP")
