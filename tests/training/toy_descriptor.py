"""A test-only fpcore Descriptor (radial Gaussian sums) so the trainer can be tested without EAD/WACSF/GMP."""

import math

import torch

from fpcore.descriptors import Descriptor


class RadialSum(Descriptor):
    """G_k(i) = sum_j Z_j exp(-eta_k d_ij^2) f_c(d_ij) with a cosine cutoff."""

    def __init__(self, cutoff: float = 4.0, eta=(0.5, 1.0, 2.0), dtype=torch.float64):
        super().__init__(cutoff, dtype)
        self.eta = [float(e) for e in eta]

    @property
    def n_features(self) -> int:
        return len(self.eta)

    @property
    def feature_labels(self):
        return [f"radial(eta={e})" for e in self.eta]

    def _features(self, positions, numbers, cells, batch, neighbors, row_ptr):
        d = neighbors.distances.unsqueeze(1)
        eta = torch.tensor(self.eta, dtype=d.dtype, device=d.device)
        fc = 0.5 * (torch.cos(d * math.pi / self.cutoff) + 1.0)
        terms = numbers[neighbors.j].to(d.dtype).unsqueeze(1) * torch.exp(-eta * d * d) * fc
        out = torch.zeros(positions.shape[0], len(self.eta), dtype=d.dtype, device=d.device)
        return out.index_add_(0, neighbors.i, terms)


def register():
    from fpcore.training import register_descriptor

    register_descriptor("RadialSum", RadialSum)
