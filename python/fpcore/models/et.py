"""Equivariant transformer backbone after TorchMD-Net (Thölke & De Fabritiis, ICLR 2022).

Each atom carries invariant features x (N, H) and vector features v (N, 3, H). Attention weights
are SiLU(q_i . (k_j * dk(r_ij))) * cutoff(r_ij) (no softmax: the number of neighbours carries
information), values are split into a scalar message and two gates that mix the neighbour's
vectors with the bond direction; scalars and vectors then exchange information through the
invariant <U v, V v> and a gated update of v. Written from the paper's equations.

Continuity at the cutoff: every message carries the cosine cutoff C(r_ij). The scalar messages get it through the
attention weight; the vector messages vec_j * g1 + g2 * r_ij/|r_ij| get it explicitly (`vector_cutoff=True`, as
TorchMD-Net's `vector_cutoff` option). Without it a neighbour crossing the cutoff switched a vector message of full
size on or off (see benchmarks/model_continuity.py for the measured jump); `vector_cutoff=False` reproduces that
behaviour only to load weights trained before the fix (see `fpcore.models.legacy_spec`).

Options matching the authors' TorchMD-Net conventions, all set by `preset="paper"`: `rbf_envelope=True`
(exp-normal basis times the cosine cutoff), `init="xavier"` (xavier-uniform weights, zero biases in every Linear).
Explicit kwargs override the preset.
"""

from __future__ import annotations

import torch
from torch import nn

from .common import (
    AtomFeatures,
    CosineCutoff,
    ExpNormalSmearing,
    Graph,
    activation,
    check_backbone_args,
    check_numbers,
    scatter_sum,
    xavier_init,
)

# Options of each preset; "default" is what EquivariantTransformer() builds.
ET_PRESETS = {
    "default": {"vector_cutoff": True, "rbf_envelope": False, "init": "default"},
    "paper": {"vector_cutoff": True, "rbf_envelope": True, "init": "xavier"},
}
INITS = ("default", "xavier")


class NeighborEmbedding(nn.Module):
    """x_i <- W [x_i, sum_j C(r_ij) W_rbf(rbf_ij) * E(z_j)]: the initial features already see the neighbourhood."""

    def __init__(self, hidden: int, n_rbf: int, cutoff: float, max_z: int):
        super().__init__()
        self.embedding = nn.Embedding(max_z + 1, hidden)
        self.distance_proj = nn.Linear(n_rbf, hidden)
        self.combine = nn.Linear(2 * hidden, hidden)
        self.cutoff = CosineCutoff(cutoff)

    def forward(self, z, x, graph, rbf):
        w = self.distance_proj(rbf) * self.cutoff(graph.distances).unsqueeze(-1)
        neighbours = scatter_sum(self.embedding(z)[graph.j] * w, graph.i, x.shape[0])
        return self.combine(torch.cat([x, neighbours], dim=1))


class EquivariantAttention(nn.Module):
    def __init__(self, hidden: int, n_heads: int, n_rbf: int, cutoff: float, act: str, vector_cutoff: bool = True):
        super().__init__()
        self.vector_cutoff = vector_cutoff
        if hidden % n_heads:
            raise ValueError(f"EquivariantTransformer: hidden ({hidden}) must be divisible by n_heads ({n_heads})")
        self.hidden, self.n_heads, self.head_dim = hidden, n_heads, hidden // n_heads
        self.norm = nn.LayerNorm(hidden)
        self.q_proj = nn.Linear(hidden, hidden)
        self.k_proj = nn.Linear(hidden, hidden)
        self.v_proj = nn.Linear(hidden, 3 * hidden)
        self.o_proj = nn.Linear(hidden, 3 * hidden)
        # No bias on vector channels: a bias would break rotation equivariance.
        self.vec_proj = nn.Linear(hidden, 3 * hidden, bias=False)
        self.dk_proj = nn.Linear(n_rbf, hidden)
        self.dv_proj = nn.Linear(n_rbf, 3 * hidden)
        self.act = activation(act)
        self.attn_act = activation(act)
        self.cutoff = CosineCutoff(cutoff)

    def forward(self, x, vec, graph, rbf, unit):
        n, h, d = x.shape[0], self.n_heads, self.head_dim
        x = self.norm(x)
        q = self.q_proj(x).view(n, h, d)
        k = self.k_proj(x).view(n, h, d)
        v = self.v_proj(x).view(n, h, 3 * d)
        vec1, vec2, vec3 = torch.split(self.vec_proj(vec), self.hidden, dim=-1)
        vec_dot = (vec1 * vec2).sum(dim=1)

        dk = self.act(self.dk_proj(rbf)).view(-1, h, d)
        dv = self.act(self.dv_proj(rbf)).view(-1, h, 3 * d)
        i, j = graph.i, graph.j
        attn = (q[i] * k[j] * dk).sum(dim=-1)
        envelope = self.cutoff(graph.distances)
        attn = self.attn_act(attn) * envelope.unsqueeze(-1)
        vx, gate_vec, gate_dir = torch.split(v[j] * dv, d, dim=-1)
        msg_x = (vx * attn.unsqueeze(-1)).reshape(-1, self.hidden)
        gate_vec, gate_dir = gate_vec.reshape(-1, 1, self.hidden), gate_dir.reshape(-1, 1, self.hidden)
        if self.vector_cutoff:
            gate_vec, gate_dir = gate_vec * envelope.view(-1, 1, 1), gate_dir * envelope.view(-1, 1, 1)
        msg_vec = vec[j] * gate_vec + gate_dir * unit.unsqueeze(-1)
        x_agg = scatter_sum(msg_x, i, n)
        vec_agg = scatter_sum(msg_vec, i, n)

        o1, o2, o3 = torch.split(self.o_proj(x_agg), self.hidden, dim=1)
        dx = vec_dot * o2 + o3
        dvec = vec3 * o1.unsqueeze(1) + vec_agg
        return dx, dvec


class EquivariantTransformer(nn.Module):
    """AtomFeatures(scalar (N, hidden) invariant, vector (N, 3, hidden) equivariant) from (z, graph)."""

    has_vector_features = True

    def __init__(
        self,
        hidden: int = 128,
        n_layers: int = 8,
        n_heads: int = 8,
        n_rbf: int = 50,
        cutoff: float = 8.0,
        max_neighbors: int | None = None,
        max_z: int = 100,
        activation: str = "silu",
        vector_cutoff: bool | None = None,
        rbf_envelope: bool | None = None,
        init: str | None = None,
        preset: str | None = None,
    ):
        super().__init__()
        check_backbone_args("EquivariantTransformer", cutoff, hidden, n_layers, max_neighbors, max_z)
        if preset is not None and preset not in ET_PRESETS:
            raise ValueError(f"EquivariantTransformer: unknown preset {preset!r}; known: {sorted(ET_PRESETS)}")
        given = {"vector_cutoff": vector_cutoff, "rbf_envelope": rbf_envelope, "init": init}
        options = dict(ET_PRESETS[preset or "default"])
        options.update({k: v for k, v in given.items() if v is not None})
        if options["init"] not in INITS:
            raise ValueError(f"EquivariantTransformer: init must be one of {INITS}, got {options['init']!r}")
        self.options = options
        self.hidden, self.cutoff, self.max_neighbors, self.max_z = hidden, float(cutoff), max_neighbors, max_z
        self.embedding = nn.Embedding(max_z + 1, hidden)
        self.rbf = ExpNormalSmearing(self.cutoff, n_rbf, envelope=bool(options["rbf_envelope"]))
        self.neighbor_embedding = NeighborEmbedding(hidden, n_rbf, self.cutoff, max_z)
        self.layers = nn.ModuleList(
            EquivariantAttention(hidden, n_heads, n_rbf, self.cutoff, activation, bool(options["vector_cutoff"]))
            for _ in range(n_layers)
        )
        self.out_norm = nn.LayerNorm(hidden)
        if options["init"] == "xavier":
            xavier_init(self)

    @property
    def out_features(self) -> int:
        return self.hidden

    def forward(self, z, graph: Graph) -> AtomFeatures:
        check_numbers("EquivariantTransformer", z, self.max_z)
        rbf = self.rbf(graph.distances)
        # Periodic images put no pair at zero distance, but guard the division anyway.
        unit = graph.vectors / graph.distances.clamp_min(1e-9).unsqueeze(-1)
        x = self.neighbor_embedding(z, self.embedding(z), graph, rbf)
        vec = torch.zeros(x.shape[0], 3, self.hidden, dtype=x.dtype, device=x.device)
        for layer in self.layers:
            dx, dvec = layer(x, vec, graph, rbf, unit)
            x = x + dx
            vec = vec + dvec
        return AtomFeatures(self.out_norm(x), vec)
