"""Python-side registrations of fpcore::gmp: fake (meta) kernels and the autograd formula.

The forward returns (features, moments); the backward maps dL/dfeatures (and dL/dmoments, if the
moments were used) to dL/dvectors in one C++ pass. Double backward is not implemented: asking for it
raises a RuntimeError instead of silently returning wrong (zero) second derivatives.
"""

import torch

from .. import ops

_N_TABLES = len(ops.GMPTables._fields)


@torch.library.register_fake("fpcore::gmp")
def _gmp_fake(
    vectors,
    row_ptr,
    neighbors_j,
    species,
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
    n_atoms = species.shape[0]
    return vectors.new_empty((n_atoms, orders.shape[0])), vectors.new_empty((n_atoms, n_moments))


@torch.library.register_fake("fpcore::gmp_backward")
def _gmp_backward_fake(grad_features, grad_moments, moments, vectors, *rest):
    # new_empty, not empty_like: the kernel returns a contiguous tensor whatever the strides of vectors.
    return vectors.new_empty(vectors.shape)


def _setup_context(ctx, inputs, output):
    vectors, row_ptr, neighbors_j, species, *rest = inputs
    tables, (n_moments, square) = rest[:_N_TABLES], rest[_N_TABLES:]
    ctx.save_for_backward(output[1], vectors, row_ptr, neighbors_j, species, *tables)
    ctx.n_moments, ctx.square = n_moments, square


def _backward(ctx, grad_features, grad_moments):
    moments, vectors, row_ptr, neighbors_j, species, *tables = ctx.saved_tensors
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
        species=species,
        tables=tables,
        n_moments=ctx.n_moments,
        square=ctx.square,
    )
    return (grad_vectors,) + (None,) * (3 + _N_TABLES + 2)


torch.library.register_autograd("fpcore::gmp", _backward, setup_context=_setup_context)


def _double_backward_setup(ctx, inputs, output):
    pass


def _double_backward(ctx, grad):
    raise RuntimeError(
        "fpcore.GMP: double backward (the derivative of the GMP gradient, e.g. create_graph=True for "
        "force training) is not implemented"
    )


torch.library.register_autograd("fpcore::gmp_backward", _double_backward, setup_context=_double_backward_setup)
