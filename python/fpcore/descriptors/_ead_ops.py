"""Python-side registrations of fpcore::ead and fpcore::ead_backward.

* fake (meta) kernels, for torch.compile and opcheck;
* autograd of `ead`: its backward is the fused `ead_backward` kernel (dLoss/dvectors);
* autograd of `ead_backward` (double backward, needed to train on forces): computed from a plain,
  pair-vectorised PyTorch formulation of the same maths (`ead_torch`), so it is exact but uses
  O(pairs * n_monomials * n_eta * n_rs) memory and runs at PyTorch speed.
"""

from __future__ import annotations

import math

import torch

from .. import ops

_PARAM_NAMES = ("eta", "rs", "L", "cutoff_fn", "cutoff")  # after the tensors, in schema order


def _n_features(eta, rs, L) -> int:
    return (L + 1) * len(eta) * len(rs)


@torch.library.register_fake("fpcore::ead")
def _ead_fake(vectors, row_ptr, neighbors_j, numbers, eta, rs, L, cutoff_fn, cutoff):
    torch._check(vectors.dim() == 2 and vectors.shape[1] == 3, lambda: "fpcore.ead: vectors must be (P, 3)")
    return vectors.new_empty((numbers.shape[0], _n_features(eta, rs, L)))


@torch.library.register_fake("fpcore::ead_backward")
def _ead_backward_fake(grad_features, vectors, row_ptr, neighbors_j, numbers, eta, rs, L, cutoff_fn, cutoff):
    # new_empty, not empty_like: the kernel returns a contiguous tensor whatever the strides of vectors.
    return vectors.new_empty(vectors.shape)


def _setup_context(ctx, inputs, output):
    vectors, row_ptr, neighbors_j, numbers, eta, rs, L, cutoff_fn, cutoff = inputs
    ctx.save_for_backward(vectors, row_ptr, neighbors_j, numbers)
    ctx.params = dict(zip(_PARAM_NAMES, (eta, rs, L, cutoff_fn, cutoff)))


def _ead_backward(ctx, grad_features):
    vectors, row_ptr, neighbors_j, numbers = ctx.saved_tensors
    grad_vectors = None
    if ctx.needs_input_grad[0]:
        grad_vectors = ops.ead_backward(
            grad_features=grad_features.contiguous(),
            vectors=vectors,
            row_ptr=row_ptr,
            neighbors_j=neighbors_j,
            numbers=numbers,
            **ctx.params,
        )
    return grad_vectors, None, None, None, None, None, None, None, None


torch.library.register_autograd("fpcore::ead", _ead_backward, setup_context=_setup_context)


def _setup_context_double(ctx, inputs, output):
    grad_features, vectors, row_ptr, neighbors_j, numbers, eta, rs, L, cutoff_fn, cutoff = inputs
    ctx.save_for_backward(grad_features, vectors, row_ptr, neighbors_j, numbers)
    ctx.params = dict(zip(_PARAM_NAMES, (eta, rs, L, cutoff_fn, cutoff)))


def _ead_double_backward(ctx, grad_grad_vectors):
    grad_features, vectors, row_ptr, neighbors_j, numbers = ctx.saved_tensors
    wanted = [ctx.needs_input_grad[0], ctx.needs_input_grad[1]]
    grads = [None, None]
    if any(wanted):
        with torch.enable_grad():
            g = grad_features.detach().requires_grad_(True)
            v = vectors.detach().requires_grad_(True)
            features = ead_torch(v, row_ptr, neighbors_j, numbers, **ctx.params)
            (gv,) = torch.autograd.grad(features, v, g, create_graph=True)
            inputs = [t for t, w in zip((g, v), wanted) if w]
            result = torch.autograd.grad(gv, inputs, grad_grad_vectors, allow_unused=True)
        it = iter(result)
        grads = [next(it) if w else None for w in wanted]
        grads = [torch.zeros_like(t) if (w and r is None) else r for t, w, r in zip((g, v), wanted, grads)]
    return grads[0], grads[1], None, None, None, None, None, None, None, None


torch.library.register_autograd("fpcore::ead_backward", _ead_double_backward, setup_context=_setup_context_double)


def _cutoff_function(name: str, d: torch.Tensor, rc: float) -> torch.Tensor:
    x = d / rc
    if name == "cosine":
        value = 0.5 * (torch.cos(math.pi * x) + 1)
    elif name == "tanh":
        value = torch.tanh(1 - x) ** 3
    elif name == "poly1":
        value = x**2 * (2 * x - 3) + 1
    elif name == "poly2":
        value = x**3 * (x * (15 - 6 * x) - 10) + 1
    elif name == "poly3":
        value = x**4 * (x * (x * (20 * x - 70) + 84) - 35) + 1
    elif name == "poly4":
        value = x**5 * (x * (x * (x * (315 - 70 * x) - 540) + 420) - 126) + 1
    elif name == "exponent":
        inside = 1 - torch.where(d < rc, x, torch.zeros_like(x)) ** 2  # keeps the masked branch finite
        value = torch.exp(1 - 1 / inside)
    else:
        raise ValueError(f"fpcore.ead: unknown cutoff function {name!r}")
    return torch.where(d < rc, value, torch.zeros_like(value))


def ead_torch(vectors, row_ptr, neighbors_j, numbers, eta, rs, L, cutoff_fn, cutoff) -> torch.Tensor:
    """The `ead` operator in differentiable PyTorch (used for double backward), vectorised over pairs."""
    n_atoms = numbers.shape[0]
    centre = torch.repeat_interleave(
        torch.arange(n_atoms, device=vectors.device), row_ptr.diff(), output_size=vectors.shape[0]
    )
    d = torch.linalg.vector_norm(vectors, dim=1)
    eta_t = torch.tensor(eta, dtype=vectors.dtype, device=vectors.device)
    rs_t = torch.tensor(rs, dtype=vectors.dtype, device=vectors.device)
    weight = numbers[neighbors_j].to(vectors.dtype) * _cutoff_function(cutoff_fn, d, cutoff)
    radial = weight[:, None, None] * torch.exp(-eta_t[:, None] * (d[:, None, None] - rs_t) ** 2)  # (P, ne, nr)
    radial = radial.reshape(radial.shape[0], len(eta) * len(rs))  # -1 is ambiguous with no pairs
    powers = [torch.ones_like(vectors)]
    for _ in range(L):
        powers.append(powers[-1] * vectors)
    features, total = [], 0.0
    for l in range(L + 1):
        for lx in range(l, -1, -1):
            for ly in range(l - lx, -1, -1):
                lz = l - lx - ly
                mono = powers[lx][:, 0] * powers[ly][:, 1] * powers[lz][:, 2]
                rho = torch.zeros(n_atoms, radial.shape[1], dtype=vectors.dtype, device=vectors.device)
                rho = rho.index_add(0, centre, radial * mono[:, None])
                total = total + rho**2 / (math.factorial(lx) * math.factorial(ly) * math.factorial(lz))
        features.append(total * (math.factorial(l) / cutoff ** (2 * l)))
    return torch.cat(features, dim=1)
