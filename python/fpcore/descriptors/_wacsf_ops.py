"""Python-side registrations of fpcore::wacsf and fpcore::wacsf_backward.

Fake kernels (torch.compile / meta tensors) and the autograd formula: the gradient of the features
with respect to the pair vectors comes from the analytic backward operator. Double backward is not
implemented: differentiating wacsf_backward raises a clear NotImplementedError.
"""

from __future__ import annotations

import torch

from .. import ops
from .base import register_no_double_backward

# Argument names after the tensors, in schema order (see csrc/descriptors/wacsf.cpp).
PARAM_NAMES = (
    "g2_eta", "g2_rs", "g4_zeta", "g4_lambda", "g4_eta", "g4_rs",
    "g5_zeta", "g5_lambda", "g5_eta", "g5_rs", "cutoff_fn", "cutoff",
)  # fmt: skip


def n_features(params: dict) -> int:
    """Columns of the features of the operator's keyword arguments `params` (PARAM_NAMES)."""
    return sum(
        len(params[f"{block}_zeta"])
        * len(params[f"{block}_lambda"])
        * len(params[f"{block}_eta"])
        * len(params[f"{block}_rs"])
        for block in ("g4", "g5")
    ) + len(params["g2_eta"]) * len(params["g2_rs"])


@torch.library.register_fake("fpcore::wacsf")
def _wacsf_fake(vectors, row_ptr, neighbors_j, numbers, *params):
    torch._check(vectors.dim() == 2 and vectors.shape[1] == 3, lambda: "vectors must have shape (P, 3)")
    return vectors.new_empty((row_ptr.shape[0] - 1, n_features(dict(zip(PARAM_NAMES, params)))))


@torch.library.register_fake("fpcore::wacsf_backward")
def _wacsf_backward_fake(grad_features, vectors, row_ptr, neighbors_j, numbers, *params):
    # new_empty, not empty_like: the kernel returns a contiguous tensor whatever the strides of vectors.
    return vectors.new_empty(vectors.shape)


def _setup_context(ctx, inputs, output):
    vectors, row_ptr, neighbors_j, numbers, *params = inputs
    ctx.save_for_backward(vectors, row_ptr, neighbors_j, numbers)
    ctx.params = dict(zip(PARAM_NAMES, params))


def _backward(ctx, grad_features):
    vectors, row_ptr, neighbors_j, numbers = ctx.saved_tensors
    grad_vectors = None
    if ctx.needs_input_grad[0]:
        grad_vectors = ops.wacsf_backward(
            grad_features=grad_features.contiguous(),
            vectors=vectors,
            row_ptr=row_ptr,
            neighbors_j=neighbors_j,
            numbers=numbers,
            **ctx.params,
        )
    return (grad_vectors, None, None, None) + (None,) * len(ctx.params)


torch.library.register_autograd("fpcore::wacsf", _backward, setup_context=_setup_context)


register_no_double_backward("fpcore::wacsf_backward", "fpcore.WACSF")
