"""SchNet-style invariant backbone (Schütt et al., 2017): continuous-filter convolutions on a periodic radius graph."""

from __future__ import annotations

from torch import nn

from .common import (
    AtomFeatures,
    CosineCutoff,
    GaussianSmearing,
    Graph,
    ShiftedSoftplus,
    check_backbone_args,
    check_numbers,
    scatter_sum,
)


class CFConv(nn.Module):
    def __init__(self, hidden: int, n_filters: int, n_rbf: int, cutoff: float):
        super().__init__()
        self.lin_in = nn.Linear(hidden, n_filters, bias=False)
        self.filter = nn.Sequential(nn.Linear(n_rbf, n_filters), ShiftedSoftplus(), nn.Linear(n_filters, n_filters))
        self.lin_out = nn.Sequential(nn.Linear(n_filters, hidden), ShiftedSoftplus(), nn.Linear(hidden, hidden))
        self.cutoff = CosineCutoff(cutoff)

    def forward(self, x, graph, rbf):
        # The cutoff envelope makes the filter, hence the energy surface, smooth as atoms cross the cutoff.
        w = self.filter(rbf) * self.cutoff(graph.distances).unsqueeze(-1)
        messages = self.lin_in(x)[graph.j] * w
        return self.lin_out(scatter_sum(messages, graph.i, x.shape[0]))


class SchNet(nn.Module):
    """Per-atom invariant features AtomFeatures(scalar (N, hidden), vector None) from (z, graph)."""

    has_vector_features = False

    def __init__(
        self,
        hidden: int = 64,
        n_layers: int = 3,
        n_filters: int | None = None,
        n_rbf: int = 50,
        cutoff: float = 8.0,
        max_neighbors: int | None = None,
        max_z: int = 100,
    ):
        super().__init__()
        check_backbone_args("SchNet", cutoff, hidden, n_layers, max_neighbors, max_z)
        n_filters = hidden if n_filters is None else int(n_filters)
        self.hidden, self.cutoff, self.max_neighbors, self.max_z = hidden, float(cutoff), max_neighbors, max_z
        self.embedding = nn.Embedding(max_z + 1, hidden)
        self.rbf = GaussianSmearing(self.cutoff, n_rbf)
        self.interactions = nn.ModuleList(CFConv(hidden, n_filters, n_rbf, self.cutoff) for _ in range(n_layers))

    @property
    def out_features(self) -> int:
        return self.hidden

    def forward(self, z, graph: Graph) -> AtomFeatures:
        check_numbers("SchNet", z, self.max_z)
        x = self.embedding(z)
        rbf = self.rbf(graph.distances)
        for interaction in self.interactions:
            x = x + interaction(x, graph, rbf)
        return AtomFeatures(x, None)
