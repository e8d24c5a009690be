// Schemas of the EAD (embedded atom density) descriptor operators (maths: docs/descriptors/ead.md).
//
// vectors (P, 3): pair vectors r_j + T - r_i, grouped by centre; row_ptr (N + 1) int64: pairs of
// centre i are row_ptr[i] .. row_ptr[i+1]-1; neighbors_j (P) int64: neighbour atom of each pair;
// numbers (N) int64: atomic numbers (the weights Z_j). eta, rs: radial parameters; L: maximum
// monomial order (0..8); cutoff_fn: one of the cutoff_functions.h names; cutoff: Rc.
// ead returns (N, (L + 1) * n_eta * n_rs) with index (l * n_eta + i_eta) * n_rs + i_rs.
// ead_backward returns dLoss/dvectors (P, 3) given grad_features = dLoss/dfeatures.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(fpcore, m) {
  m.def(
      "ead(Tensor vectors, Tensor row_ptr, Tensor neighbors_j, Tensor numbers, float[] eta, float[] rs, "
      "int L, str cutoff_fn, float cutoff) -> Tensor");
  m.def(
      "ead_backward(Tensor grad_features, Tensor vectors, Tensor row_ptr, Tensor neighbors_j, Tensor numbers, "
      "float[] eta, float[] rs, int L, str cutoff_fn, float cutoff) -> Tensor");
}
