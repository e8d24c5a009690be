"""SchNet invariant backbone (Schütt et al., 2017): continuous-filter convolutions on fpcore's periodic graph.

The interaction blocks, the Gaussian basis and the shifted softplus are torch_geometric's (`InteractionBlock`,
`CFConv` inside it, `GaussianSmearing`, `ShiftedSoftplus`): same layers as the hand-written version they replace and
at least as fast on CPU (forward + backward of the cpu-scale SchNet on 2 x 32 MP structures: median 444 vs 529 ms,
overlapping ranges on a loaded machine; benchmarks/bench_pyg_pieces.py, results/pyg_pieces_cpu.json). PyG's own `SchNet` model is not used:
its `radius_graph` has no periodic boundaries, so the graph comes from `fpcore.models.build_graph`.
"""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.nn.models.schnet import GaussianSmearing, InteractionBlock

from .common import AtomFeatures, Graph, check_backbone_args, check_numbers

INITS = ("default", "xavier")

# Keys of SchNet state dicts saved before the switch to torch_geometric's blocks -> their PyG names. PyG's block
# registers its filter network twice (`mlp` and `conv.nn` are one module), so a filter key maps to both names.
LEGACY_INTERACTION_KEYS = {
    "lin_in.weight": ("conv.lin1.weight",),
    "filter.0.weight": ("mlp.0.weight", "conv.nn.0.weight"),
    "filter.0.bias": ("mlp.0.bias", "conv.nn.0.bias"),
    "filter.2.weight": ("mlp.2.weight", "conv.nn.2.weight"),
    "filter.2.bias": ("mlp.2.bias", "conv.nn.2.bias"),
    "lin_out.0.weight": ("conv.lin2.weight",),
    "lin_out.0.bias": ("conv.lin2.bias",),
    "lin_out.2.weight": ("lin.weight",),
    "lin_out.2.bias": ("lin.bias",),
}


def upgrade_schnet_state_dict(state: dict, prefix: str = "") -> dict:
    """A SchNet state dict (keys under `prefix`) with the pre-PyG key names renamed; current ones pass unchanged."""
    out = {}
    for key, value in state.items():
        if not key.startswith(prefix):
            out[key] = value
            continue
        rest = key[len(prefix) :]
        if rest == "rbf.offsets":
            out[prefix + "rbf.offset"] = value
            continue
        parts = rest.split(".", 2)
        if len(parts) == 3 and parts[0] == "interactions" and parts[2] in LEGACY_INTERACTION_KEYS:
            for new in LEGACY_INTERACTION_KEYS[parts[2]]:
                out[f"{prefix}interactions.{parts[1]}.{new}"] = value
            continue
        out[key] = value
    return out


class SchNet(nn.Module):
    """Per-atom invariant features AtomFeatures(scalar (N, hidden), vector None) from (z, graph).

    init="default": PyTorch's Linear initialisation (as before the switch to PyG); "xavier": PyG's SchNet
    initialisation (xavier-uniform, zero biases). State dicts saved before
    the switch to PyG's blocks load directly (`load_state_dict` renames their keys) or via `upgrade_state_dict`.
    """

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
        init: str = "default",
    ):
        super().__init__()
        check_backbone_args("SchNet", cutoff, hidden, n_layers, max_neighbors, max_z)
        if init not in INITS:
            raise ValueError(f"SchNet: init must be one of {INITS}, got {init!r}")
        n_filters = hidden if n_filters is None else int(n_filters)
        self.hidden, self.cutoff, self.max_neighbors, self.max_z = hidden, float(cutoff), max_neighbors, max_z
        self.embedding = nn.Embedding(max_z + 1, hidden)
        self.rbf = GaussianSmearing(0.0, self.cutoff, n_rbf)
        # CFConv multiplies each filter by the cosine cutoff: the output is smooth as atoms cross the cutoff.
        self.interactions = nn.ModuleList(
            InteractionBlock(hidden, n_rbf, n_filters, self.cutoff) for _ in range(n_layers)
        )
        if init == "default":
            # PyTorch's Linear initialisation, as fpcore's SchNet always had (PyG's blocks come xavier-initialised):
            # the trainer's losses stay comparable with earlier runs.
            for layer in self.interactions.modules():
                if isinstance(layer, nn.Linear):
                    layer.reset_parameters()
        self._register_load_state_dict_pre_hook(self._upgrade_keys)

    @staticmethod
    def _upgrade_keys(state_dict, prefix, *args):
        upgraded = upgrade_schnet_state_dict({k: v for k, v in state_dict.items() if k.startswith(prefix)}, prefix)
        if upgraded.keys() != {k for k in state_dict if k.startswith(prefix)}:
            for key in [k for k in state_dict if k.startswith(prefix)]:
                del state_dict[key]
            state_dict.update(upgraded)

    @property
    def out_features(self) -> int:
        return self.hidden

    def forward(self, z, graph: Graph) -> AtomFeatures:
        check_numbers("SchNet", z, self.max_z)
        x = self.embedding(z)
        # PyG's messages flow from edge_index[0] (source j) into edge_index[1] (target i).
        edge_index = torch.stack([graph.j, graph.i])
        rbf = self.rbf(graph.distances)
        for interaction in self.interactions:
            x = x + interaction(x, edge_index, graph.distances, rbf)
        return AtomFeatures(x, None)
