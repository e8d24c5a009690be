"""Output heads, separate from the backbones so a pre-trained backbone can take a new head.

Every head is `forward(features: AtomFeatures, graph: Graph) -> Tensor` and runs in its own parameter dtype with
autocast off: the pooling sums, the head and (in the trainer) the loss stay in float32 even when the backbone runs
under bf16/fp16 autocast, so reported numbers are not low-precision numbers. `defaults_from(backbone)` gives the
kwargs a head takes from the backbone it sits on (n_in, and for VectorHead the cutoff and whether the backbone has
vector features); `build_head(..., backbone=...)` fills them in.

Pools are torch_geometric's `global_add_pool` / `global_mean_pool`. The MLPs stay `nn.Sequential` of Linear layers
rather than `torch_geometric.nn.MLP`, so the state-dict keys of existing checkpoints (`head.net.0.weight`, ...) still
load.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch_geometric.nn import global_add_pool, global_mean_pool
from torch_geometric.nn.models.schnet import GaussianSmearing

from .common import AtomFeatures, CosineCutoff, Graph, scatter_sum, xavier_init
from .common import activation as make_activation

POOLINGS = {"mean": global_mean_pool, "sum": global_add_pool}


INITS = ("default", "xavier")


def mlp(n_in: int, n_hidden: int, n_out: int, n_layers: int, act: str, init: str = "default") -> nn.Sequential:
    """n_layers Linear layers with `act` between them; init="xavier": xavier-uniform weights, zero biases."""
    if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 1:
        raise ValueError(f"head: n_layers must be a positive integer, got {n_layers!r}")
    if init not in INITS:
        raise ValueError(f"head: init must be one of {INITS}, got {init!r}")
    layers: list[nn.Module] = []
    width = n_in
    for _ in range(n_layers - 1):
        layers += [nn.Linear(width, n_hidden), make_activation(act)]
        width = n_hidden
    layers.append(nn.Linear(width, n_out))
    net = nn.Sequential(*layers)
    if init == "xavier":
        xavier_init(net)
    return net


def full_precision(device: torch.device):
    """Autocast off for the head: it computes in its own parameter dtype (float32 in training, float64 in tests)."""
    if torch.is_autocast_enabled(device.type):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


def param_dtype(module: nn.Module) -> torch.dtype:
    return next(module.parameters()).dtype


def check_n_out(owner: str, n_out) -> None:
    if isinstance(n_out, bool) or not isinstance(n_out, int) or n_out < 1:
        raise ValueError(f"{owner}: n_out must be a positive integer, got {n_out!r}")


class NodeHead(nn.Module):
    """Per-atom outputs (N, n_out), e.g. the fingerprints regressed in pre-training."""

    def __init__(
        self,
        n_in: int,
        n_out: int,
        hidden: int = 128,
        n_layers: int = 2,
        activation: str = "silu",
        init: str = "default",
    ):
        super().__init__()
        check_n_out("NodeHead", n_out)
        self.net = mlp(n_in, hidden, n_out, n_layers, activation, init)

    @staticmethod
    def defaults_from(backbone: nn.Module) -> dict:
        return {"n_in": backbone.out_features}

    def forward(self, features: AtomFeatures, graph: Graph) -> torch.Tensor:
        h = features.scalar
        with full_precision(h.device):
            return self.net(h.to(param_dtype(self)))


class GraphHead(nn.Module):
    """Per-structure outputs (n_graphs, n_out): atom features pooled (mean or sum) then an MLP of n_layers."""

    def __init__(
        self,
        n_in: int,
        n_out: int,
        hidden: int = 128,
        n_layers: int = 2,
        activation: str = "silu",
        pooling: str = "mean",
        init: str = "default",
    ):
        super().__init__()
        check_n_out("GraphHead", n_out)
        if pooling not in POOLINGS:
            raise ValueError(f"GraphHead: pooling must be one of {sorted(POOLINGS)}, got {pooling!r}")
        self.pooling = pooling
        self.net = mlp(n_in, hidden, n_out, n_layers, activation, init)

    @staticmethod
    def defaults_from(backbone: nn.Module) -> dict:
        return {"n_in": backbone.out_features}

    def forward(self, features: AtomFeatures, graph: Graph) -> torch.Tensor:
        h = features.scalar
        with full_precision(h.device):
            pooled = POOLINGS[self.pooling](h.to(param_dtype(self)), graph.batch, graph.n_graphs)
            return self.net(pooled)


class VectorHead(nn.Module):
    """Per-atom equivariant 3-vectors (N, 3), e.g. the noise predicted by the denoise objective, or forces.

    v_i = sum_j phi(h_i, h_j, rbf(d_ij)) * envelope(d_ij) * r_ij / d_ij  [+ gated projection of the vector features]

    Why edge-based: it works on EVERY backbone, including scalar-only ones such as SchNet (an invariant weight times a
    bond direction is equivariant by construction), it is continuous at the cutoff (cosine envelope), and it costs one
    pass over the edges, unlike the gradient of a scalar (a double backward in training). When the backbone has vector
    features (the equivariant transformer), `use_vector_features` adds sum_c g_c(h_i) W_c v_i,c: a scalar-gated linear
    mix of the vector channels, equivariant because gates and weights are invariant and there is no bias.
    The first layer of phi is split into W_i h_i + W_j h_j + W_r rbf so the node terms are computed per atom, not per
    edge.
    """

    def __init__(
        self,
        n_in: int,
        cutoff: float,
        hidden: int = 128,
        n_layers: int = 2,
        activation: str = "silu",
        n_rbf: int = 16,
        use_vector_features: bool = False,
    ):
        super().__init__()
        if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 2:
            raise ValueError(f"VectorHead: n_layers must be an integer >= 2, got {n_layers!r}")
        if not (float(cutoff) > 0):
            raise ValueError(f"VectorHead: cutoff must be > 0, got {cutoff}")
        self.use_vector_features = bool(use_vector_features)
        self.rbf = GaussianSmearing(0.0, float(cutoff), n_rbf)
        self.envelope = CosineCutoff(float(cutoff))
        self.lin_i = nn.Linear(n_in, hidden)
        self.lin_j = nn.Linear(n_in, hidden, bias=False)
        self.lin_rbf = nn.Linear(n_rbf, hidden, bias=False)
        self.phi = nn.Sequential(make_activation(activation), mlp(hidden, hidden, 1, n_layers - 1, activation))
        if self.use_vector_features:
            self.vector_gate = nn.Linear(n_in, n_in)
            self.vector_mix = nn.Linear(n_in, 1, bias=False)

    @staticmethod
    def defaults_from(backbone: nn.Module) -> dict:
        return {
            "n_in": backbone.out_features,
            "cutoff": backbone.cutoff,
            "use_vector_features": bool(getattr(backbone, "has_vector_features", False)),
        }

    def forward(self, features: AtomFeatures, graph: Graph) -> torch.Tensor:
        h = features.scalar
        with full_precision(h.device):
            dtype = param_dtype(self)
            h = h.to(dtype)
            d = graph.distances.to(dtype)
            unit = graph.vectors.to(dtype) / d.clamp_min(1e-9).unsqueeze(-1)
            node_i, node_j = self.lin_i(h), self.lin_j(h)
            pre = node_i.index_select(0, graph.i) + node_j.index_select(0, graph.j) + self.lin_rbf(self.rbf(d))
            weight = self.phi(pre) * self.envelope(d).unsqueeze(-1)
            out = scatter_sum(weight * unit, graph.i, h.shape[0])
            if self.use_vector_features:
                if features.vector is None:
                    raise ValueError(
                        "VectorHead: use_vector_features=True but the backbone returned no vector features"
                    )
                gated = features.vector.to(dtype) * self.vector_gate(h).unsqueeze(1)
                out = out + self.vector_mix(gated).squeeze(-1)
            return out
