"""Equivariant transformer backbone after TorchMD-Net (Thölke & De Fabritiis, ICLR 2022).

Each atom carries invariant features x (N, H) and vector features v (N, 3, H). Attention weights
are SiLU(q_i . (k_j * dk(r_ij))) * cutoff(r_ij) (no softmax: the number of neighbours carries
information), values are split into a scalar message and two gates that mix the neighbour's
vectors with the bond direction; scalars and vectors then exchange information through the
invariant <U v, V v> and a gated update of v. Written from the paper's equations.
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
)


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
    def __init__(self, hidden: int, n_heads: int, n_rbf: int, cutoff: float, act: str):
        super().__init__()
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
        attn = self.attn_act(attn) * self.cutoff(graph.distances).unsqueeze(-1)
        vx, gate_vec, gate_dir = torch.split(v[j] * dv, d, dim=-1)
        msg_x = (vx * attn.unsqueeze(-1)).reshape(-1, self.hidden)
        msg_vec = vec[j] * gate_vec.reshape(-1, 1, self.hidden) + gate_dir.reshape(-1, 1, self.hidden) * unit.unsqueeze(
            -1
        )
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
    ):
        super().__init__()
        check_backbone_args("EquivariantTransformer", cutoff, hidden, n_layers, max_neighbors, max_z)
        self.hidden, self.cutoff, self.max_neighbors, self.max_z = hidden, float(cutoff), max_neighbors, max_z
        self.embedding = nn.Embedding(max_z + 1, hidden)
        self.rbf = ExpNormalSmearing(self.cutoff, n_rbf)
        self.neighbor_embedding = NeighborEmbedding(hidden, n_rbf, self.cutoff, max_z)
        self.layers = nn.ModuleList(
            EquivariantAttention(hidden, n_heads, n_rbf, self.cutoff, activation) for _ in range(n_layers)
        )
        self.out_norm = nn.LayerNorm(hidden)

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
