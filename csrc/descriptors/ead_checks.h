#pragma once
// Host-side validation of the fpcore::ead / fpcore::ead_backward arguments (CPU and CUDA kernels).
#include <ATen/ATen.h>

#include <cmath>
#include <string>
#include <vector>

#include "common/checks.h"
#include "descriptors/ead_math.h"

namespace fpcore {
namespace ead {

inline Params check_arguments(const at::Tensor& vectors, const at::Tensor& row_ptr, const at::Tensor& neighbors_j,
                              const at::Tensor& numbers, at::ArrayRef<double> eta, at::ArrayRef<double> rs, int64_t L,
                              const std::string& cutoff_fn, double cutoff) {
  check_float_tensor(vectors, "vectors", 2);
  TORCH_CHECK(vectors.size(1) == 3, "fpcore.ead: 'vectors' must have shape (P, 3), got ", vectors.sizes());
  check_index_tensor(row_ptr, "row_ptr", 1);
  check_index_tensor(neighbors_j, "neighbors_j", 1);
  check_index_tensor(numbers, "numbers", 1);
  TORCH_CHECK(neighbors_j.size(0) == vectors.size(0), "fpcore.ead: 'neighbors_j' has ", neighbors_j.size(0),
              " entries but 'vectors' has ", vectors.size(0), " pairs");
  TORCH_CHECK(row_ptr.size(0) == numbers.size(0) + 1,
              "fpcore.ead: 'row_ptr' must have n_atoms + 1 = ", numbers.size(0) + 1, " entries, got ", row_ptr.size(0));
  check_same_device(vectors, "vectors", row_ptr, "row_ptr");
  check_same_device(vectors, "vectors", neighbors_j, "neighbors_j");
  check_same_device(vectors, "vectors", numbers, "numbers");
  TORCH_CHECK(L >= 0 && L <= kMaxL, "fpcore.ead: L must be in 0..", kMaxL, ", got ", L);
  TORCH_CHECK(!eta.empty() && !rs.empty(), "fpcore.ead: 'eta' and 'rs' must not be empty");
  for (double e : eta) TORCH_CHECK(std::isfinite(e) && e >= 0.0, "fpcore.ead: eta must be finite and >= 0, got ", e);
  for (double r : rs) TORCH_CHECK(std::isfinite(r), "fpcore.ead: rs must be finite, got ", r);
  TORCH_CHECK(std::isfinite(cutoff) && cutoff > 0.0, "fpcore.ead: cutoff must be positive and finite, got ", cutoff);
  CutoffFunction kind;
  TORCH_CHECK(parse_cutoff_function(cutoff_fn, kind), "fpcore.ead: unknown cutoff function '", cutoff_fn,
              "'; expected one of cosine, tanh, poly1, poly2, poly3, poly4, exponent");
  return Params{static_cast<int64_t>(eta.size()), static_cast<int64_t>(rs.size()), static_cast<int>(L), kind, cutoff};
}

inline int64_t n_features(const Params& prm) {
  return (prm.L + 1) * prm.n_eta * prm.n_rs;
}

inline void check_grad_features(const at::Tensor& grad_features, const at::Tensor& vectors, const Params& prm,
                                int64_t n_atoms) {
  TORCH_CHECK(grad_features.dim() == 2 && grad_features.size(0) == n_atoms && grad_features.size(1) == n_features(prm),
              "fpcore.ead_backward: 'grad_features' must have shape (", n_atoms, ", ", n_features(prm), "), got ",
              grad_features.sizes());
  TORCH_CHECK(grad_features.scalar_type() == vectors.scalar_type(), "fpcore.ead_backward: 'grad_features' is ",
              grad_features.scalar_type(), " but 'vectors' is ", vectors.scalar_type());
  check_same_device(vectors, "vectors", grad_features, "grad_features");
}

}  // namespace ead
}  // namespace fpcore
