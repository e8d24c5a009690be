"""Python-side registrations of fpcore::wacsf and fpcore::wacsf_backward.

Fake kernels (torch.compile / meta tensors) and the autograd formula: the gradient of the features
with respect to the pair vectors comes from the analytic backward operator. Double backward is not
implemented: differentiating wacsf_backward raises a clear NotImplementedError.
"""

from __future__ import annotations

import torch

# Argument names after the tensors, in schema order (see csrc/descriptors/wacsf.cpp).
PARAM_NAMES = (
    "g2_eta", "g2_rs", "g4_zeta", "g4_lambda", "g4_eta", "g4_rs",
    "g5_zeta", "g5_lambda", "g5_eta", "g5_rs", "cutoff_fn", "cutoff",
)  # fmt: skip


def n_features(g2_eta, g2_rs, g4_zeta, g4_lambda, g4_eta, g4_rs, g5_zeta, g5_lambda, g5_eta, g5_rs) -> int:
    return (
        len(g2_eta) * len(g2_rs)
        + len(g4_zeta) * len(g4_lambda) * len(g4_eta) * len(g4_rs)
        + len(g5_zeta) * len(g5_lambda) * len(g5_eta) * len(g5_rs)
    )


@torch.library.register_fake("fpcore::wacsf")
def _wacsf_fake(vectors, row_ptr, neighbors_j, numbers, *params):
    torch._check(vectors.dim() == 2 and vectors.shape[1] == 3, lambda: "vectors must have shape (P, 3)")
    return vectors.new_empty((row_ptr.shape[0] - 1, n_features(*params[:10])))


@torch.library.register_fake("fpcore::wacsf_backward")
def _wacsf_backward_fake(grad_features, vectors, row_ptr, neighbors_j, numbers, *params):
    # new_empty, not empty_like: the kernel returns a contiguous tensor whatever the strides of vectors.
    return vectors.new_empty(vectors.shape)


def _setup_context(ctx, inputs, output):
    vectors, row_ptr, neighbors_j, numbers, *params = inputs
    ctx.save_for_backward(vectors, row_ptr, neighbors_j, numbers)
    ctx.params = params


def _backward(ctx, grad_features):
    vectors, row_ptr, neighbors_j, numbers = ctx.saved_tensors
    grad_vectors = None
    if ctx.needs_input_grad[0]:
        grad_vectors = torch.ops.fpcore.wacsf_backward(
            grad_features.contiguous(), vectors, row_ptr, neighbors_j, numbers, *ctx.params
        )
    return (grad_vectors, None, None, None) + (None,) * len(ctx.params)


torch.library.register_autograd("fpcore::wacsf", _backward, setup_context=_setup_context)


def _no_double_backward(ctx, grad):
    raise NotImplementedError(
        "fpcore.WACSF: second derivatives (differentiating the gradient of the features, e.g. training on "
        "forces with create_graph=True) are not implemented; only first derivatives are available"
    )


def _setup_backward_context(ctx, inputs, output):
    pass


torch.library.register_autograd("fpcore::wacsf_backward", _no_double_backward, setup_context=_setup_backward_context)
