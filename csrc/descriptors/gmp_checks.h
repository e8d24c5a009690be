#pragma once
// Argument validation of fpcore::gmp / gmp_backward shared by the CPU and CUDA kernels, and the raw
// table views. Index contents (row_ptr, j, numbers) are checked by common/index_checks.h on both backends.
#include <ATen/ATen.h>

#include <vector>

#include "common/checks.h"
#include "common/index_checks.h"
#include "descriptors/gmp_math.h"

namespace fpcore {
namespace gmp {

inline void check_inputs(const at::Tensor& vectors, const at::Tensor& row_ptr, const at::Tensor& neighbors_j,
                         const at::Tensor& numbers, const at::Tensor& group_consts, const at::Tensor& group_ptr,
                         const at::Tensor& group_features, const at::Tensor& group_max_order, const at::Tensor& orders,
                         const at::Tensor& offsets, const at::Tensor& c1, const at::Tensor& radii2,
                         const at::Tensor& coeffs, const at::Tensor& multiplicity, int64_t n_moments) {
  check_float_tensor(vectors, "vectors", 2);
  TORCH_CHECK(vectors.size(1) == 3, "fpcore.gmp: 'vectors' must have shape (P, 3), got ", vectors.sizes());
  check_index_tensor(row_ptr, "row_ptr", 1);
  TORCH_CHECK(row_ptr.size(0) >= 1, "fpcore.gmp: 'row_ptr' must have N + 1 >= 1 entries");
  check_index_tensor(neighbors_j, "neighbors_j", 1);
  TORCH_CHECK(neighbors_j.size(0) == vectors.size(0), "fpcore.gmp: 'neighbors_j' has ", neighbors_j.size(0),
              " entries but 'vectors' has ", vectors.size(0), " pairs");
  check_index_tensor(numbers, "numbers", 1);
  TORCH_CHECK(numbers.size(0) == row_ptr.size(0) - 1, "fpcore.gmp: 'numbers' has ", numbers.size(0),
              " entries but 'row_ptr' describes ", row_ptr.size(0) - 1, " atoms");
  check_float_tensor(group_consts, "group_consts", 4);
  TORCH_CHECK(group_consts.size(3) == kGroupConsts, "fpcore.gmp: 'group_consts' must be (K, Z, G, 5)");
  const int64_t K = group_consts.size(0), Z = group_consts.size(1), G = group_consts.size(2);
  check_index_tensor(group_ptr, "group_ptr", 1);
  TORCH_CHECK(group_ptr.size(0) == K + 1, "fpcore.gmp: 'group_ptr' must have K + 1 = ", K + 1, " entries");
  check_index_tensor(group_features, "group_features", 1);
  check_index_tensor(group_max_order, "group_max_order", 1);
  TORCH_CHECK(group_max_order.size(0) == K, "fpcore.gmp: 'group_max_order' must have K = ", K, " entries");
  check_index_tensor(orders, "orders", 1);
  check_index_tensor(offsets, "offsets", 1);
  const int64_t F = orders.size(0);
  TORCH_CHECK(offsets.size(0) == F && group_features.size(0) == F,
              "fpcore.gmp: 'offsets' and 'group_features' must have one entry per feature (", F, ")");
  check_float_tensor(c1, "c1", 3);
  check_float_tensor(radii2, "radii2", 3);
  TORCH_CHECK(c1.sizes() == at::IntArrayRef({F, Z, G}) && radii2.sizes() == c1.sizes(),
              "fpcore.gmp: 'c1' and 'radii2' must have shape (F, Z, G) = (", F, ", ", Z, ", ", G, ")");
  check_float_tensor(coeffs, "coeffs", 3);
  TORCH_CHECK(coeffs.sizes() == at::IntArrayRef({kMaxOrder + 1, kMaxMonomials, kMaxMonomials}),
              "fpcore.gmp: 'coeffs' must have shape (10, 55, 55)");
  check_float_tensor(multiplicity, "multiplicity", 2);
  TORCH_CHECK(multiplicity.sizes() == at::IntArrayRef({kMaxOrder + 1, kMaxMonomials}),
              "fpcore.gmp: 'multiplicity' must have shape (10, 55)");
  for (const at::Tensor* t : {&group_consts, &c1, &radii2, &coeffs, &multiplicity}) {
    TORCH_CHECK(t->scalar_type() == vectors.scalar_type(),
                "fpcore.gmp: the float tables must have the dtype of "
                "'vectors' (",
                vectors.scalar_type(), "), got ", t->scalar_type());
  }
  for (const at::Tensor* t : {&row_ptr, &neighbors_j, &numbers, &group_consts, &group_ptr, &group_features,
                              &group_max_order, &orders, &offsets, &c1, &radii2, &coeffs, &multiplicity}) {
    TORCH_CHECK(t->device() == vectors.device(), "fpcore.gmp: every input must be on ", vectors.device(),
                ", found one on ", t->device());
  }
  TORCH_CHECK(n_moments >= 0, "fpcore.gmp: 'n_moments' must be >= 0");
}

// Host-side validation of the small feature tables, naming the first inconsistency (copied to the CPU when
// they live on a GPU: the CUDA operators call it only once feature_table_errors has found one).
inline void check_feature_tables(const at::Tensor& group_ptr_in, const at::Tensor& group_features_in,
                                 const at::Tensor& group_max_order_in, const at::Tensor& orders_in,
                                 const at::Tensor& offsets_in, int64_t n_moments) {
  const at::Tensor group_ptr = group_ptr_in.cpu(), group_features = group_features_in.cpu();
  const at::Tensor orders = orders_in.cpu(), offsets = offsets_in.cpu(), gmax = group_max_order_in.cpu();
  const int64_t F = orders.size(0), K = gmax.size(0);
  auto o = orders.accessor<int64_t, 1>();
  auto off = offsets.accessor<int64_t, 1>();
  for (int64_t f = 0; f < F; ++f) {
    TORCH_CHECK(o[f] >= -1 && o[f] <= kMaxOrder, "fpcore.gmp: order ", o[f], " of feature ", f, " is outside -1..",
                kMaxOrder);
    TORCH_CHECK(off[f] >= 0 && off[f] + n_monomials(o[f]) <= n_moments, "fpcore.gmp: moment offset of feature ", f,
                " is out of range for n_moments = ", n_moments);
  }
  auto p = group_ptr.accessor<int64_t, 1>();
  auto gf = group_features.accessor<int64_t, 1>();
  auto gm = gmax.accessor<int64_t, 1>();
  TORCH_CHECK(p[0] == 0 && p[K] == F, "fpcore.gmp: 'group_ptr' must run from 0 to F = ", F);
  for (int64_t k = 0; k < K; ++k) {
    TORCH_CHECK(p[k] <= p[k + 1], "fpcore.gmp: 'group_ptr' must be non-decreasing");
    TORCH_CHECK(gm[k] >= -1 && gm[k] <= kMaxOrder, "fpcore.gmp: 'group_max_order' out of range");
    for (int64_t q = p[k]; q < p[k + 1]; ++q) {
      TORCH_CHECK(gf[q] >= 0 && gf[q] < F, "fpcore.gmp: 'group_features' entry out of range");
      TORCH_CHECK(o[gf[q]] <= gm[k], "fpcore.gmp: feature order exceeds its group's max order");
    }
  }
}

// The conditions of check_feature_tables as tensor operations: a 0-dim bool, true when the tables are
// inconsistent, computed on the tables' device without reading them on the host. Shapes, dtypes and
// devices must have passed check_inputs.
inline at::Tensor feature_table_errors(const at::Tensor& group_ptr, const at::Tensor& group_features,
                                       const at::Tensor& group_max_order, const at::Tensor& orders,
                                       const at::Tensor& offsets, int64_t n_moments) {
  const int64_t F = orders.size(0), K = group_max_order.size(0);
  // n_monomials of every order; orders outside -1..kMaxOrder are flagged and clamped only to stay in range
  const at::Tensor o = orders.clamp(-1, kMaxOrder);
  const at::Tensor monomials = at::where(o < 0, at::ones_like(o), at::floor_divide((o + 1) * (o + 2), 2));
  std::vector<at::Tensor> bad = {
      (orders < -1) | (orders > kMaxOrder) | (offsets < 0) | (offsets + monomials > n_moments),
      group_ptr.narrow(0, 0, 1) != 0,
      group_ptr.narrow(0, K, 1) != F,
      group_ptr.diff() < 0,
      (group_max_order < -1) | (group_max_order > kMaxOrder),
      (group_features < 0) | (group_features >= F),
  };
  if (K > 0 && F > 0) {
    // group of each entry q of group_features: group_ptr[k] <= q < group_ptr[k + 1]
    const at::Tensor q = at::arange(F, group_ptr.options());
    const at::Tensor k = (at::searchsorted(group_ptr, q, /*out_int32=*/false, /*right=*/true) - 1).clamp(0, K - 1);
    const at::Tensor feature_order = o.index_select(0, group_features.clamp(0, F - 1));
    bad.push_back(feature_order > group_max_order.index_select(0, k));
  }
  for (at::Tensor& b : bad) b = b.any().reshape({1});
  return at::cat(bad).any();
}

// check_index_values and the feature tables with the one device-to-host copy of the index checks: the
// CUDA operators' path, where check_feature_tables would copy five tables to the host on every call.
inline void check_indices_and_tables(const char* op, const at::Tensor& row_ptr, const at::Tensor& neighbors_j,
                                     const at::Tensor& species, const char* species_name, int64_t n_species,
                                     const at::Tensor& group_ptr, const at::Tensor& group_features,
                                     const at::Tensor& group_max_order, const at::Tensor& orders,
                                     const at::Tensor& offsets, int64_t n_moments) {
  const at::Tensor table_errors =
      feature_table_errors(group_ptr, group_features, group_max_order, orders, offsets, n_moments);
  if (!check_index_values(op, row_ptr, neighbors_j, &species, species_name, n_species, &table_errors)) return;
  check_feature_tables(group_ptr, group_features, group_max_order, orders, offsets, n_moments);  // names the error
  TORCH_CHECK(false, op, ": inconsistent feature tables (group_ptr, group_features, group_max_order, orders, offsets)");
}

// grad_features (N, F), moments (N, n_moments) and the optional grad_moments (like moments) of
// gmp_backward: shape, dtype and device of 'vectors'.
inline void check_backward_inputs(const at::Tensor& grad_features, const c10::optional<at::Tensor>& grad_moments,
                                  const at::Tensor& moments, const at::Tensor& vectors, int64_t n_atoms,
                                  int64_t n_features, int64_t n_moments) {
  TORCH_CHECK(grad_features.sizes() == at::IntArrayRef({n_atoms, n_features}) &&
                  grad_features.scalar_type() == vectors.scalar_type(),
              "fpcore.gmp_backward: 'grad_features' must be (N, F) = (", n_atoms, ", ", n_features,
              ") of the dtype of 'vectors', got ", grad_features.sizes(), " ", grad_features.scalar_type());
  TORCH_CHECK(
      moments.sizes() == at::IntArrayRef({n_atoms, n_moments}) && moments.scalar_type() == vectors.scalar_type(),
      "fpcore.gmp_backward: 'moments' must be (N, n_moments) = (", n_atoms, ", ", n_moments,
      ") of the dtype of 'vectors', got ", moments.sizes(), " ", moments.scalar_type());
  check_same_device(vectors, "vectors", grad_features, "grad_features");
  check_same_device(vectors, "vectors", moments, "moments");
  if (grad_moments.has_value() && grad_moments->defined()) {
    TORCH_CHECK(grad_moments->sizes() == moments.sizes() && grad_moments->scalar_type() == vectors.scalar_type(),
                "fpcore.gmp_backward: 'grad_moments' must match 'moments' (", moments.sizes(), "), got ",
                grad_moments->sizes());
    check_same_device(vectors, "vectors", *grad_moments, "grad_moments");
  }
}

template <typename T>
Tables<T> make_tables(const at::Tensor& group_consts, const at::Tensor& group_ptr, const at::Tensor& group_features,
                      const at::Tensor& group_max_order, const at::Tensor& orders, const at::Tensor& offsets,
                      const at::Tensor& c1, const at::Tensor& radii2, const at::Tensor& coeffs,
                      const at::Tensor& multiplicity) {
  Tables<T> t;
  t.group_consts = group_consts.data_ptr<T>();
  t.group_ptr = group_ptr.data_ptr<int64_t>();
  t.group_features = group_features.data_ptr<int64_t>();
  t.group_max_order = group_max_order.data_ptr<int64_t>();
  t.orders = orders.data_ptr<int64_t>();
  t.offsets = offsets.data_ptr<int64_t>();
  t.c1 = c1.data_ptr<T>();
  t.radii2 = radii2.data_ptr<T>();
  t.coeffs = coeffs.data_ptr<T>();
  t.multiplicity = multiplicity.data_ptr<T>();
  t.n_groups = group_consts.size(0);
  t.n_species = group_consts.size(1);
  t.n_gauss = group_consts.size(2);
  t.n_features = orders.size(0);
  return t;
}

}  // namespace gmp
}  // namespace fpcore
