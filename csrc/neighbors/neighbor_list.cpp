// Schema of the batched periodic neighbor list.
//
// positions (N, 3), cells (B, 3, 3) (rows are cell vectors), pbc (B, 3) bool, ptr (B + 1) int64
// (atoms of structure b are ptr[b] .. ptr[b+1]-1), cutoff >= 0 (strict: pairs with d < cutoff).
// Returns the full (both directions) pair list: i, j (P,) int64 and integer cell shifts (P, 3)
// int64, such that r_ij = positions[j] - positions[i] + shifts @ cells[b]. Pairs are grouped by
// ascending i. The self pair (i, i, 0) never appears; images of i itself do.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(fpcore, m) {
  m.def(
      "neighbor_list(Tensor positions, Tensor cells, Tensor pbc, Tensor ptr, float cutoff) "
      "-> (Tensor, Tensor, Tensor)");
}
