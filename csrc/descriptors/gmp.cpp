// Schemas of the GMP (Gaussian multipole) descriptor operator (maths: docs/descriptors/gmp.md).
//
// gmp: vectors (P, 3) neighbour-minus-centre pair vectors grouped by centre (row_ptr, N + 1),
// neighbors_j (P) int64, numbers (N) int64 atomic numbers (the row of the density tables).
// Tables built by python/fpcore/descriptors/gmp.py, in the dtype of vectors unless int64:
//   group_consts (K, Z, G, 5)  per sigma group (and the order -1 group): C2, lam, 1/(2 gamma), max r^2,
//                              group index; per (Z, G) the K rows are sorted by descending max r^2
//   group_ptr (K + 1), group_features (F), group_max_order (K)  features of each group
//   orders (F), offsets (F) int64   order of each feature, first moment column of each feature
//   c1 (F, Z, G)     amplitude C1 (B for order -1), radii2 (F, Z, G) squared inclusion radii (-1: none)
//   coeffs (10, 55, 55), multiplicity (10, 55)  solid-harmonic monomial coefficients and n!/(lx!ly!lz!)
// The self term (j = i, T = 0) is added by the kernel; it is constant, so it has no gradient.
// Returns features (N, F) and the moments (N, n_moments) that the backward reuses.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(fpcore, m) {
  m.def(
      "gmp(Tensor vectors, Tensor row_ptr, Tensor neighbors_j, Tensor numbers, Tensor group_consts, "
      "Tensor group_ptr, Tensor group_features, Tensor group_max_order, Tensor orders, Tensor offsets, "
      "Tensor c1, Tensor radii2, Tensor coeffs, Tensor multiplicity, int n_moments, bool square) "
      "-> (Tensor, Tensor)");
  // grad_moments may be None (the moments are an internal output).
  m.def(
      "gmp_backward(Tensor grad_features, Tensor? grad_moments, Tensor moments, Tensor vectors, "
      "Tensor row_ptr, Tensor neighbors_j, Tensor numbers, Tensor group_consts, Tensor group_ptr, "
      "Tensor group_features, Tensor group_max_order, Tensor orders, Tensor offsets, Tensor c1, "
      "Tensor radii2, Tensor coeffs, Tensor multiplicity, int n_moments, bool square) -> Tensor");
}
