// Schemas of the wACSF operator (maths: docs/descriptors/wacsf.md) and its backward.
//
// vectors (P, 3): neighbour-entry vectors r_j + T - r_i, grouped by centre; row_ptr (N + 1) int64:
// entries of centre i are rows row_ptr[i] .. row_ptr[i+1]-1; neighbors_j (P) int64 atom index of
// each entry; numbers (N) int64 atomic numbers (the weights Z_j). Parameter lists are used in the
// order given; an empty list switches its block off. G4 features are ordered zeta, lambda, eta, Rs
// (Rs innermost), G2 eta outer, Rs inner; blocks [G2 | G4 | G5]. cutoff_fn: one of the
// cutoff_functions.h names (cosine, tanh, poly1, poly2, poly3, poly4, exponent), as for EAD.
// Returns features (N, n_features); wacsf_backward returns dL/dvectors (P, 3).
#include <torch/library.h>

#define FPCORE_WACSF_PARAMS                                                                            \
  "float[] g2_eta, float[] g2_rs, float[] g4_zeta, float[] g4_lambda, float[] g4_eta, float[] g4_rs, " \
  "float[] g5_zeta, float[] g5_lambda, float[] g5_eta, float[] g5_rs, str cutoff_fn, float cutoff"

TORCH_LIBRARY_FRAGMENT(fpcore, m) {
  m.def("wacsf(Tensor vectors, Tensor row_ptr, Tensor neighbors_j, Tensor numbers, " FPCORE_WACSF_PARAMS ") -> Tensor");
  m.def(
      "wacsf_backward(Tensor grad_features, Tensor vectors, Tensor row_ptr, Tensor neighbors_j, "
      "Tensor numbers, " FPCORE_WACSF_PARAMS ") -> Tensor");
}
