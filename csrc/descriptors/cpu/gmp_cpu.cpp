// CPU kernels of fpcore::gmp and fpcore::gmp_backward: parallel over centre atoms, per-centre
// moment scratch, memory linear in pairs.
#include <ATen/Parallel.h>
#include <torch/library.h>
#include <ATen/ATen.h>

#include <vector>

#include "descriptors/gmp_checks.h"
#include "descriptors/gmp_math.h"

namespace fpcore {
namespace {

using gmp::Tables;

// Index contents: row_ptr a valid CSR over all pairs, j and species in range.
void check_indices(const at::Tensor& row_ptr, const at::Tensor& neighbors_j, const at::Tensor& species,
                   int64_t n_species) {
  const int64_t N = species.size(0), P = neighbors_j.size(0);
  const int64_t* rp = row_ptr.data_ptr<int64_t>();
  TORCH_CHECK(rp[0] == 0 && rp[N] == P, "fpcore.gmp: 'row_ptr' must run from 0 to the number of pairs ", P,
              ", got ", rp[0], "..", rp[N]);
  for (int64_t i = 0; i < N; ++i)
    TORCH_CHECK(rp[i] <= rp[i + 1], "fpcore.gmp: 'row_ptr' must be non-decreasing (atom ", i, ")");
  const int64_t* j = neighbors_j.data_ptr<int64_t>();
  for (int64_t p = 0; p < P; ++p)
    TORCH_CHECK(j[p] >= 0 && j[p] < N, "fpcore.gmp: neighbors_j[", p, "] = ", j[p], " is not an atom index");
  const int64_t* s = species.data_ptr<int64_t>();
  for (int64_t i = 0; i < N; ++i)
    TORCH_CHECK(s[i] >= 0 && s[i] < n_species, "fpcore.gmp: species[", i, "] = ", s[i],
                " is outside the density table (", n_species, " rows)");
}

std::tuple<at::Tensor, at::Tensor> gmp_cpu(const at::Tensor& vectors_in, const at::Tensor& row_ptr_in,
                                           const at::Tensor& neighbors_j_in, const at::Tensor& species_in,
                                           const at::Tensor& group_consts_in, const at::Tensor& group_ptr_in,
                                           const at::Tensor& group_features_in, const at::Tensor& group_max_order_in,
                                           const at::Tensor& orders_in, const at::Tensor& offsets_in,
                                           const at::Tensor& c1_in, const at::Tensor& radii2_in,
                                           const at::Tensor& coeffs_in, const at::Tensor& multiplicity_in,
                                           int64_t n_moments, bool square) {
  gmp::check_inputs(vectors_in, row_ptr_in, neighbors_j_in, species_in, group_consts_in, group_ptr_in,
                    group_features_in, group_max_order_in, orders_in, offsets_in, c1_in, radii2_in, coeffs_in,
                    multiplicity_in, n_moments);
  gmp::check_feature_tables(group_ptr_in, group_features_in, group_max_order_in, orders_in, offsets_in, n_moments);
  const at::Tensor vectors = vectors_in.contiguous(), row_ptr = row_ptr_in.contiguous();
  const at::Tensor neighbors_j = neighbors_j_in.contiguous(), species = species_in.contiguous();
  const at::Tensor group_consts = group_consts_in.contiguous(), group_ptr = group_ptr_in.contiguous();
  const at::Tensor group_features = group_features_in.contiguous(), gmax = group_max_order_in.contiguous();
  const at::Tensor orders = orders_in.contiguous(), offsets = offsets_in.contiguous();
  const at::Tensor c1 = c1_in.contiguous(), radii2 = radii2_in.contiguous();
  const at::Tensor coeffs = coeffs_in.contiguous(), multiplicity = multiplicity_in.contiguous();
  check_indices(row_ptr, neighbors_j, species, group_consts.size(1));

  const int64_t N = species.size(0), F = orders.size(0);
  at::Tensor features = at::zeros({N, F}, vectors.options());
  at::Tensor moments = at::zeros({N, n_moments}, vectors.options());
  AT_DISPATCH_FLOATING_TYPES(vectors.scalar_type(), "gmp_cpu", [&] {
    const Tables<scalar_t> t = gmp::make_tables<scalar_t>(group_consts, group_ptr, group_features, gmax, orders,
                                                          offsets, c1, radii2, coeffs, multiplicity);
    const scalar_t* vec = vectors.data_ptr<scalar_t>();
    const int64_t* rp = row_ptr.data_ptr<int64_t>();
    const int64_t* nj = neighbors_j.data_ptr<int64_t>();
    const int64_t* sp = species.data_ptr<int64_t>();
    scalar_t* out = features.data_ptr<scalar_t>();
    scalar_t* mom = moments.data_ptr<scalar_t>();
    at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        scalar_t* Q = mom + i * n_moments;
        auto add = [Q](int64_t m, scalar_t value) { Q[m] += value; };
        gmp::accumulate_entry(t, scalar_t(0), scalar_t(0), scalar_t(0), sp[i], add);  // self term
        for (int64_t p = rp[i]; p < rp[i + 1]; ++p)
          gmp::accumulate_entry(t, vec[3 * p], vec[3 * p + 1], vec[3 * p + 2], sp[nj[p]], add);
        for (int64_t f = 0; f < F; ++f) out[i * F + f] = gmp::feature_value(t, f, Q, square);
      }
    });
  });
  return {features, moments};
}

at::Tensor gmp_backward_cpu(const at::Tensor& grad_features_in, const c10::optional<at::Tensor>& grad_moments_in,
                            const at::Tensor& moments_in, const at::Tensor& vectors_in, const at::Tensor& row_ptr_in,
                            const at::Tensor& neighbors_j_in, const at::Tensor& species_in,
                            const at::Tensor& group_consts_in, const at::Tensor& group_ptr_in,
                            const at::Tensor& group_features_in, const at::Tensor& group_max_order_in,
                            const at::Tensor& orders_in, const at::Tensor& offsets_in, const at::Tensor& c1_in,
                            const at::Tensor& radii2_in, const at::Tensor& coeffs_in,
                            const at::Tensor& multiplicity_in, int64_t n_moments, bool square) {
  gmp::check_inputs(vectors_in, row_ptr_in, neighbors_j_in, species_in, group_consts_in, group_ptr_in,
                    group_features_in, group_max_order_in, orders_in, offsets_in, c1_in, radii2_in, coeffs_in,
                    multiplicity_in, n_moments);
  gmp::check_feature_tables(group_ptr_in, group_features_in, group_max_order_in, orders_in, offsets_in, n_moments);
  const int64_t N = species_in.size(0), F = orders_in.size(0);
  TORCH_CHECK(grad_features_in.sizes() == at::IntArrayRef({N, F}) &&
                  grad_features_in.scalar_type() == vectors_in.scalar_type(),
              "fpcore.gmp_backward: 'grad_features' must be (N, F) = (", N, ", ", F, ") of the dtype of 'vectors'");
  TORCH_CHECK(moments_in.sizes() == at::IntArrayRef({N, n_moments}) &&
                  moments_in.scalar_type() == vectors_in.scalar_type(),
              "fpcore.gmp_backward: 'moments' must be (N, n_moments) of the dtype of 'vectors'");
  const bool has_gm = grad_moments_in.has_value() && grad_moments_in->defined();
  if (has_gm)
    TORCH_CHECK(grad_moments_in->sizes() == moments_in.sizes() &&
                    grad_moments_in->scalar_type() == vectors_in.scalar_type(),
                "fpcore.gmp_backward: 'grad_moments' must match 'moments'");
  const at::Tensor vectors = vectors_in.contiguous(), row_ptr = row_ptr_in.contiguous();
  const at::Tensor neighbors_j = neighbors_j_in.contiguous(), species = species_in.contiguous();
  const at::Tensor group_consts = group_consts_in.contiguous(), group_ptr = group_ptr_in.contiguous();
  const at::Tensor group_features = group_features_in.contiguous(), gmax = group_max_order_in.contiguous();
  const at::Tensor orders = orders_in.contiguous(), offsets = offsets_in.contiguous();
  const at::Tensor c1 = c1_in.contiguous(), radii2 = radii2_in.contiguous();
  const at::Tensor coeffs = coeffs_in.contiguous(), multiplicity = multiplicity_in.contiguous();
  const at::Tensor grad_features = grad_features_in.contiguous(), moments = moments_in.contiguous();
  const at::Tensor grad_moments = has_gm ? grad_moments_in->contiguous() : at::Tensor();
  check_indices(row_ptr, neighbors_j, species, group_consts.size(1));

  at::Tensor grad_vectors = at::zeros_like(vectors);
  AT_DISPATCH_FLOATING_TYPES(vectors.scalar_type(), "gmp_backward_cpu", [&] {
    const Tables<scalar_t> t = gmp::make_tables<scalar_t>(group_consts, group_ptr, group_features, gmax, orders,
                                                          offsets, c1, radii2, coeffs, multiplicity);
    const scalar_t* vec = vectors.data_ptr<scalar_t>();
    const int64_t* rp = row_ptr.data_ptr<int64_t>();
    const int64_t* nj = neighbors_j.data_ptr<int64_t>();
    const int64_t* sp = species.data_ptr<int64_t>();
    const scalar_t* gf = grad_features.data_ptr<scalar_t>();
    const scalar_t* mom = moments.data_ptr<scalar_t>();
    const scalar_t* gmom = has_gm ? grad_moments.data_ptr<scalar_t>() : nullptr;
    scalar_t* gv = grad_vectors.data_ptr<scalar_t>();
    at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
      std::vector<scalar_t> G(n_moments);
      for (int64_t i = begin; i < end; ++i) {
        if (rp[i] == rp[i + 1]) continue;  // only the constant self term
        const scalar_t* Q = mom + i * n_moments;
        for (int64_t m = 0; m < n_moments; ++m) G[m] = gmom ? gmom[i * n_moments + m] : scalar_t(0);
        for (int64_t f = 0; f < F; ++f) gmp::feature_backward(t, f, Q, gf[i * F + f], square, G.data());
        for (int64_t p = rp[i]; p < rp[i + 1]; ++p)
          gmp::entry_gradient(t, vec[3 * p], vec[3 * p + 1], vec[3 * p + 2], sp[nj[p]], G.data(), gv + 3 * p);
      }
    });
  });
  return grad_vectors;
}

}  // namespace

TORCH_LIBRARY_IMPL(fpcore, CPU, m) {
  m.impl("gmp", &gmp_cpu);
  m.impl("gmp_backward", &gmp_backward_cpu);
}

}  // namespace fpcore
