"""Python-side registrations of fpcore::neighbor_list: the fake (meta) kernel for torch.compile.

The operator returns only integer indices and shifts, so it needs no autograd formula: distance
vectors are rebuilt from them in torch (see api.compute), where gradients flow to positions and cell.
"""

import torch


@torch.library.register_fake("fpcore::neighbor_list")
def _neighbor_list_fake(positions, cells, pbc, ptr, cutoff):
    n_pairs = torch.library.get_ctx().new_dynamic_size()
    i = positions.new_empty((n_pairs,), dtype=torch.long)
    return i, torch.empty_like(i), positions.new_empty((n_pairs, 3), dtype=torch.long)
