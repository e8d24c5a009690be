"""Python-side registrations of the neighbor operators: fake kernels (torch.compile, FakeTensorMode)
and the autograd formulas of fpcore::pair_geometry.

fpcore::neighbor_list returns integer indices and shifts (and, on request, vectors and distances
that carry no gradient); differentiable geometry comes from fpcore::pair_geometry, whose backward is
fpcore::pair_geometry_backward. That backward is linear in the incoming gradients, and its own
derivative is written here with pair_geometry again, so gradients of any order exist (forces in a
loss need the second one).
"""

import torch

from .. import ops


@torch.library.register_fake("fpcore::neighbor_list")
def _neighbor_list_fake(positions, cells, pbc, ptr, cutoff, geometry=False):
    n_pairs = torch.library.get_ctx().new_dynamic_size()
    n_geometry = n_pairs if geometry else 0
    i = positions.new_empty((n_pairs,), dtype=torch.long)
    return (
        i,
        torch.empty_like(i),
        positions.new_empty((n_pairs, 3), dtype=torch.long),
        positions.new_empty((n_geometry, 3)),
        positions.new_empty((n_geometry,)),
    )


@torch.library.register_fake("fpcore::pair_geometry")
def _pair_geometry_fake(positions, cells, batch, i, j, shifts):
    return positions.new_empty((i.shape[0], 3)), positions.new_empty((i.shape[0],))


@torch.library.register_fake("fpcore::pair_geometry_backward")
def _pair_geometry_backward_fake(
    grad_vectors, grad_distances, vectors, distances, batch, i, j, shifts, n_atoms, n_cells
):
    return vectors.new_empty((n_atoms, 3)), vectors.new_empty((n_cells, 3, 3))


def _pair_geometry_setup(ctx, inputs, output):
    positions, cells, batch, i, j, shifts = inputs
    vectors, distances = output
    ctx.save_for_backward(vectors, distances, batch, i, j, shifts)
    ctx.n_atoms, ctx.n_cells = positions.shape[0], cells.shape[0]


def _pair_geometry_grad(ctx, grad_vectors, grad_distances):
    vectors, distances, batch, i, j, shifts = ctx.saved_tensors
    grad_positions, grad_cells = ops.pair_geometry_backward(
        grad_vectors=grad_vectors,
        grad_distances=grad_distances,
        vectors=vectors,
        distances=distances,
        batch=batch,
        i=i,
        j=j,
        shifts=shifts,
        n_atoms=ctx.n_atoms,
        n_structures=ctx.n_cells,
    )
    return grad_positions, grad_cells, None, None, None, None


torch.library.register_autograd("fpcore::pair_geometry", _pair_geometry_grad, setup_context=_pair_geometry_setup)


def _backward_setup(ctx, inputs, output):
    grad_vectors, grad_distances, vectors, distances, batch, i, j, shifts, n_atoms, n_cells = inputs
    ctx.save_for_backward(grad_distances, vectors, distances, batch, i, j, shifts)
    ctx.dtype, ctx.n_atoms, ctx.n_cells = vectors.dtype, n_atoms, n_cells


def _backward_grad(ctx, grad_grad_positions, grad_grad_cells):
    """Derivative of the adjoint. With g = gv + gd v / d, grad_positions = A g, its transpose maps the
    incoming (ggp, ggc) to w = ggp[j] - ggp[i] + shifts @ ggc[batch[i]] = pair_geometry(ggp, ggc)."""
    grad_distances, vectors, distances, batch, i, j, shifts = ctx.saved_tensors
    if grad_grad_positions is None:
        grad_grad_positions = vectors.new_zeros((ctx.n_atoms, 3))
    if grad_grad_cells is None:
        grad_grad_cells = vectors.new_zeros((ctx.n_cells, 3, 3))
    w = ops.pair_geometry(
        positions=grad_grad_positions, cells=grad_grad_cells, batch=batch, i=i, j=j, shifts=shifts
    ).vectors
    positive = distances > 0
    inverse_d = torch.where(positive, 1.0 / torch.where(positive, distances, 1.0), 0.0)
    w_dot_v = (w * vectors).sum(1)
    grad_grad_distances = w_dot_v * inverse_d
    grad_vectors_input = grad_distances_input = None
    if grad_distances is not None:
        # d/dv of gd v / d at fixed d, and d/dd of it; autograd chains d back to v.
        grad_vectors_input = (grad_distances * inverse_d).unsqueeze(1) * w
        grad_distances_input = -grad_distances * w_dot_v * inverse_d * inverse_d
    grads = (w, grad_grad_distances, grad_vectors_input, grad_distances_input)
    # None where an input was None or needs no gradient (autograd refuses gradients for those).
    return (
        *(g if needed else None for g, needed in zip(grads, ctx.needs_input_grad)),
        None,
        None,
        None,
        None,
        None,
        None,
    )


torch.library.register_autograd("fpcore::pair_geometry_backward", _backward_grad, setup_context=_backward_setup)
