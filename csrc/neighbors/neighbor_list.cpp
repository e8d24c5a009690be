// Schema of the batched periodic neighbor list.
//
// positions (N, 3), cells (B, 3, 3) (rows are cell vectors), pbc (B, 3) bool, ptr (B + 1) int64
// (atoms of structure b are ptr[b] .. ptr[b+1]-1), cutoff >= 0 (strict: pairs with d < cutoff).
// Returns the full (both directions) pair list: i, j (P,) int64 and integer cell shifts (P, 3)
// int64, such that r_ij = positions[j] - positions[i] + shifts @ cells[b]. Pairs are grouped by
// ascending i. The self pair (i, i, 0) never appears; images of i itself do.
// With geometry = true it also returns vectors r_ij (P, 3) and distances |r_ij| (P,) in the dtype
// of the positions, computed while the pairs are written, exactly as fpcore::pair_geometry does
// (not differentiable: use pair_geometry for gradients); otherwise those two are empty ((0, 3), (0,)).
// The pair list is refused before allocation when it would exceed FPCORE_MAX_PAIR_MEMORY_GB
// (neighbors/pair_memory.h).
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(fpcore, m) {
  m.def(
      "neighbor_list(Tensor positions, Tensor cells, Tensor pbc, Tensor ptr, float cutoff, bool geometry=False) "
      "-> (Tensor, Tensor, Tensor, Tensor, Tensor)");
}
