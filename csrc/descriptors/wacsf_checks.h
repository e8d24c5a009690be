#pragma once
// Host side of fpcore::wacsf: argument checks and the packed parameter table shared by the CPU and
// CUDA kernels (the CUDA kernel copies the same table to the device).
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "common/checks.h"
#include "descriptors/wacsf_math.h"

namespace fpcore {
namespace wacsf {

// Above this an integral zeta still uses pow(): int_pow's cost is logarithmic, but such powers are
// meaningless anyway and pow keeps the behaviour of the reference.
constexpr double kMaxIntegerZeta = 1 << 20;

struct HostParams {
  std::vector<double> table;
  // Offsets into `table` (doubles), converted to pointers once the table lives on its device.
  int64_t n_g2_eta = 0, n_g2_rs = 0, off_g2_eta = 0, off_g2_rs = 0;
  struct Block {
    int64_t n_zeta = 0, n_lambda = 0, n_eta = 0, n_rs = 0, column = 0;
    int64_t off_zeta = 0, off_zeta_int = 0, off_lambda = 0, off_eta = 0, off_rs_factor = 0;
  } block[2];
  CutoffFunction cutoff_fn = CutoffFunction::Cosine;
  double cutoff = 0.0;
  int64_t n_features = 0, pair_stride = 3, centre_stride = 0;
};

inline void check_finite_list(at::ArrayRef<double> values, const char* name) {
  for (double v : values) TORCH_CHECK(std::isfinite(v), "fpcore.wacsf: ", name, " must be finite, got ", v);
}

inline int64_t append(std::vector<double>& table, at::ArrayRef<double> values) {
  const int64_t offset = static_cast<int64_t>(table.size());
  table.insert(table.end(), values.begin(), values.end());
  return offset;
}

inline HostParams make_params(at::ArrayRef<double> g2_eta, at::ArrayRef<double> g2_rs, at::ArrayRef<double> g4_zeta,
                              at::ArrayRef<double> g4_lambda, at::ArrayRef<double> g4_eta, at::ArrayRef<double> g4_rs,
                              at::ArrayRef<double> g5_zeta, at::ArrayRef<double> g5_lambda, at::ArrayRef<double> g5_eta,
                              at::ArrayRef<double> g5_rs, c10::string_view cutoff_fn, double cutoff) {
  TORCH_CHECK(std::isfinite(cutoff) && cutoff > 0.0, "fpcore.wacsf: cutoff must be positive and finite, got ", cutoff);
  CutoffFunction kind;
  TORCH_CHECK(parse_cutoff_function(std::string(cutoff_fn), kind), "fpcore.wacsf: unknown cutoff function '", cutoff_fn,
              "'; expected one of cosine, tanh, poly1, poly2, poly3, poly4, exponent");
  check_finite_list(g2_eta, "g2_eta");
  check_finite_list(g2_rs, "g2_rs");
  HostParams h;
  h.cutoff = cutoff;
  h.cutoff_fn = kind;
  h.n_g2_eta = static_cast<int64_t>(g2_eta.size());
  h.n_g2_rs = static_cast<int64_t>(g2_rs.size());
  h.off_g2_eta = append(h.table, g2_eta);
  h.off_g2_rs = append(h.table, g2_rs);
  int64_t column = h.n_g2_eta * h.n_g2_rs;

  at::ArrayRef<double> lists[2][4] = {{g4_zeta, g4_lambda, g4_eta, g4_rs}, {g5_zeta, g5_lambda, g5_eta, g5_rs}};
  const char* names[2][4] = {{"g4_zeta", "g4_lambda", "g4_eta", "g4_rs"}, {"g5_zeta", "g5_lambda", "g5_eta", "g5_rs"}};
  for (int blk = 0; blk < 2; ++blk) {
    const auto& zeta = lists[blk][0];
    const auto& lambda = lists[blk][1];
    const auto& eta = lists[blk][2];
    const auto& rs = lists[blk][3];
    for (int k = 0; k < 4; ++k) check_finite_list(lists[blk][k], names[blk][k]);
    bool all_integer = true;
    for (double z : zeta) {
      // zeta < 1 makes d/dcos (1 + lambda cos)^zeta infinite where the base reaches 0.
      TORCH_CHECK(z >= 1.0, "fpcore.wacsf: ", names[blk][0], " values must be >= 1, got ", z);
      all_integer = all_integer && z == std::floor(z) && z <= kMaxIntegerZeta;
    }
    if (!all_integer)
      for (double l : lambda)
        TORCH_CHECK(std::abs(l) <= 1.0, "fpcore.wacsf: a non-integer zeta needs |lambda| <= 1 in ", names[blk][1],
                    " (otherwise (1 + lambda cos)^zeta is undefined), got ", l);
    HostParams::Block& b = h.block[blk];
    b.n_zeta = static_cast<int64_t>(zeta.size());
    b.n_lambda = static_cast<int64_t>(lambda.size());
    b.n_eta = static_cast<int64_t>(eta.size());
    b.n_rs = static_cast<int64_t>(rs.size());
    b.column = column;
    const int64_t n_zl = b.n_zeta * b.n_lambda;
    const int64_t n_feat = n_zl * b.n_eta * b.n_rs;
    column += n_feat;
    b.off_zeta = append(h.table, zeta);
    b.off_zeta_int = static_cast<int64_t>(h.table.size());
    for (double z : zeta) h.table.push_back(z == std::floor(z) && z <= kMaxIntegerZeta ? z : 0.0);
    b.off_lambda = append(h.table, lambda);
    b.off_eta = append(h.table, eta);
    b.off_rs_factor = static_cast<int64_t>(h.table.size());
    const double m = blk == 0 ? 3.0 : 2.0;  // docs/descriptors/wacsf.md, G4/G5: each squared distance loses Rs^2
    for (double e : eta)
      for (double r : rs) h.table.push_back(std::exp(m * e * r * r));
    if (n_feat > 0) h.pair_stride += 2 * b.n_eta;
    h.centre_stride += 2 * n_zl + n_zl * b.n_eta;
  }
  h.n_features = column;
  return h;
}

// The Rs factors exp(m eta Rs^2) can overflow float32 where float64 still holds them.
template <typename T>
void check_table_fits(const HostParams& h) {
  for (double v : h.table)
    TORCH_CHECK(std::isfinite(static_cast<T>(v)), "fpcore.wacsf: a G4/G5 factor exp(m eta Rs^2) = ", v, " overflows ",
                sizeof(T) == 4 ? "float32" : "float64", "; use smaller eta * Rs^2 or float64");
}

// |lambda| > 1 (allowed with an integral zeta) lets h = (1 + lambda cos) / 2 reach (1 + |lambda|) / 2 > 1, so the
// angular factor 2 h^zeta and its derivative zeta |lambda| h^(zeta-1) can exceed the dtype: refuse such parameters
// up front (naming them) rather than return inf or NaN. With |lambda| <= 1 both are bounded by 2 and zeta.
template <typename T>
void check_angular_fits(const HostParams& h) {
  const char* names[2][2] = {{"g4_zeta", "g4_lambda"}, {"g5_zeta", "g5_lambda"}};
  const double log_max = std::log(static_cast<double>(std::numeric_limits<T>::max()));
  for (int blk = 0; blk < 2; ++blk) {
    const HostParams::Block& b = h.block[blk];
    for (int64_t zi = 0; zi < b.n_zeta; ++zi)
      for (int64_t li = 0; li < b.n_lambda; ++li) {
        const double zeta = h.table[b.off_zeta + zi], lambda = std::abs(h.table[b.off_lambda + li]);
        const double log_h = std::log((1.0 + lambda) / 2.0);
        if (!(log_h > 0.0)) continue;
        const double log_value = std::log(2.0) + zeta * log_h;
        const double log_derivative = std::log(zeta * lambda) + (zeta - 1.0) * log_h;
        TORCH_CHECK(std::max(log_value, log_derivative) < log_max, "fpcore.wacsf: ", names[blk][1], " = ",
                    h.table[b.off_lambda + li], " with ", names[blk][0], " = ", zeta,
                    " gives angular factors 2 ((1 + |lambda|) / 2)^zeta up to exp(", log_value, ") that overflow ",
                    sizeof(T) == 4 ? "float32" : "float64", "; use |lambda| <= 1 (bounded at any zeta) or a smaller ",
                    names[blk][0]);
      }
  }
}

// Params view of a table of scalar_t already converted and placed on its device.
template <typename T>
Params<T> view_params(const HostParams& h, const T* table) {
  check_table_fits<T>(h);
  check_angular_fits<T>(h);
  Params<T> p;
  p.n_g2_eta = h.n_g2_eta;
  p.n_g2_rs = h.n_g2_rs;
  p.g2_eta = table + h.off_g2_eta;
  p.g2_rs = table + h.off_g2_rs;
  for (int blk = 0; blk < 2; ++blk) {
    const HostParams::Block& s = h.block[blk];
    Angular<T>& b = p.block[blk];
    b.n_zeta = s.n_zeta;
    b.n_lambda = s.n_lambda;
    b.n_eta = s.n_eta;
    b.n_rs = s.n_rs;
    b.column = s.column;
    b.with_jk = blk == 0;
    b.zeta = table + s.off_zeta;
    b.zeta_int = table + s.off_zeta_int;
    b.lambda = table + s.off_lambda;
    b.eta = table + s.off_eta;
    b.rs_factor = table + s.off_rs_factor;
  }
  p.cutoff_fn = h.cutoff_fn;
  p.cutoff = static_cast<T>(h.cutoff);
  p.n_features = h.n_features;
  p.pair_stride = h.pair_stride;
  p.centre_stride = h.centre_stride;
  return p;
}

// Shapes, dtypes and devices of the tensor arguments (values of row_ptr/j are checked per backend).
inline void check_inputs(const at::Tensor& vectors, const at::Tensor& row_ptr, const at::Tensor& neighbors_j,
                         const at::Tensor& numbers) {
  check_float_tensor(vectors, "vectors", 2);
  TORCH_CHECK(vectors.size(1) == 3, "fpcore.wacsf: 'vectors' must have shape (P, 3), got ", vectors.sizes());
  check_index_tensor(row_ptr, "row_ptr", 1);
  check_index_tensor(neighbors_j, "neighbors_j", 1);
  check_index_tensor(numbers, "numbers", 1);
  TORCH_CHECK(row_ptr.size(0) >= 1, "fpcore.wacsf: 'row_ptr' must have n_atoms + 1 >= 1 entries");
  TORCH_CHECK(neighbors_j.size(0) == vectors.size(0), "fpcore.wacsf: 'neighbors_j' has ", neighbors_j.size(0),
              " entries but 'vectors' has ", vectors.size(0), " rows");
  TORCH_CHECK(numbers.size(0) == row_ptr.size(0) - 1, "fpcore.wacsf: 'numbers' has ", numbers.size(0),
              " entries but 'row_ptr' describes ", row_ptr.size(0) - 1, " atoms");
  check_same_device(vectors, "vectors", row_ptr, "row_ptr");
  check_same_device(vectors, "vectors", neighbors_j, "neighbors_j");
  check_same_device(vectors, "vectors", numbers, "numbers");
}

inline void check_grad(const at::Tensor& grad, const at::Tensor& vectors, int64_t n_atoms, int64_t n_features) {
  TORCH_CHECK(grad.dim() == 2 && grad.size(0) == n_atoms && grad.size(1) == n_features,
              "fpcore.wacsf_backward: 'grad_features' must have shape (", n_atoms, ", ", n_features, "), got ",
              grad.sizes());
  TORCH_CHECK(grad.scalar_type() == vectors.scalar_type(), "fpcore.wacsf_backward: 'grad_features' dtype ",
              grad.scalar_type(), " differs from 'vectors' dtype ", vectors.scalar_type());
  check_same_device(vectors, "vectors", grad, "grad_features");
}

}  // namespace wacsf
}  // namespace fpcore
