#pragma once
// Input validation shared by every operator: messages name the argument and what was expected.
#include <ATen/ATen.h>

#include <string>

namespace fpcore {

inline void check_float_tensor(const at::Tensor& t, const char* name, int64_t dim) {
  TORCH_CHECK(t.dim() == dim, "fpcore: '", name, "' must have ", dim, " dimensions, got shape ", t.sizes());
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, "fpcore: '", name,
              "' must be float32 or float64, got ", t.scalar_type());
}

inline void check_index_tensor(const at::Tensor& t, const char* name, int64_t dim) {
  TORCH_CHECK(t.dim() == dim, "fpcore: '", name, "' must have ", dim, " dimensions, got shape ", t.sizes());
  TORCH_CHECK(t.scalar_type() == at::kLong, "fpcore: '", name, "' must be int64, got ", t.scalar_type());
}

inline void check_same_device(const at::Tensor& a, const char* name_a, const at::Tensor& b, const char* name_b) {
  TORCH_CHECK(a.device() == b.device(), "fpcore: '", name_a, "' is on ", a.device(), " but '", name_b, "' is on ",
              b.device());
}

}  // namespace fpcore
