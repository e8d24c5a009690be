// Test-only operators (issue 11, finding 2): the per-centre maths of the CUDA kernels run on the CPU.
//
// The fast CPU kernels (descriptors/cpu/) restructure the maths for speed, so the shared per-centre
// functions of descriptors/*_math.h are otherwise only executed by the CUDA kernels, which cannot run
// where there is no GPU. These operators call the SAME functions with the SAME arguments as the CUDA
// kernels (descriptors/cuda/*.cu), one host loop over centres instead of one thread per centre, so
// tests/descriptors/test_device_maths.py can compare them with the real CPU operators in CI.
//
// Test-only, not part of the public API (hence the leading underscore): they take the schemas of the operators
// they mirror and have CPU kernels only (no autograd, no fake kernels, no Python wrapper).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "common/index_checks.h"
#include "descriptors/gmp_checks.h"
#include "descriptors/gmp_math.h"
#include "descriptors/wacsf_checks.h"

namespace fpcore {
namespace testing {
namespace {

using List = at::ArrayRef<double>;

// Mirrors Prepared/prepare() of descriptors/cuda/wacsf_cuda.cu (scratch sizes included), on the CPU.
struct WacsfInputs {
  wacsf::HostParams h;
  at::Tensor vectors, row_ptr, neighbors_j, numbers, table, cache, work;
};

WacsfInputs prepare_wacsf(const char* op, const at::Tensor& vectors, const at::Tensor& row_ptr,
                          const at::Tensor& neighbors_j, const at::Tensor& numbers, List g2_eta, List g2_rs,
                          List g4_zeta, List g4_lambda, List g4_eta, List g4_rs, List g5_zeta, List g5_lambda,
                          List g5_eta, List g5_rs, c10::string_view cutoff_fn, double cutoff) {
  wacsf::check_inputs(vectors, row_ptr, neighbors_j, numbers);
  WacsfInputs s;
  s.h = wacsf::make_params(g2_eta, g2_rs, g4_zeta, g4_lambda, g4_eta, g4_rs, g5_zeta, g5_lambda, g5_eta, g5_rs,
                           cutoff_fn, cutoff);
  s.vectors = vectors.contiguous();
  s.row_ptr = row_ptr.contiguous();
  s.neighbors_j = neighbors_j.contiguous();
  s.numbers = numbers.contiguous();
  check_index_values(op, s.row_ptr, s.neighbors_j);
  const auto options = vectors.options();
  s.table = at::tensor(s.h.table, at::TensorOptions().dtype(at::kDouble)).to(options);
  s.cache = at::empty({std::max<int64_t>(vectors.size(0) * s.h.pair_stride, 1)}, options);
  s.work = at::empty({std::max<int64_t>((row_ptr.size(0) - 1) * s.h.centre_stride, 1)}, options);
  return s;
}

at::Tensor device_maths_wacsf(const at::Tensor& vectors, const at::Tensor& row_ptr, const at::Tensor& neighbors_j,
                              const at::Tensor& numbers, List g2_eta, List g2_rs, List g4_zeta, List g4_lambda,
                              List g4_eta, List g4_rs, List g5_zeta, List g5_lambda, List g5_eta, List g5_rs,
                              c10::string_view cutoff_fn, double cutoff) {
  WacsfInputs s =
      prepare_wacsf("fpcore._device_maths_wacsf", vectors, row_ptr, neighbors_j, numbers, g2_eta, g2_rs, g4_zeta,
                    g4_lambda, g4_eta, g4_rs, g5_zeta, g5_lambda, g5_eta, g5_rs, cutoff_fn, cutoff);
  const int64_t n_atoms = row_ptr.size(0) - 1;
  at::Tensor out = at::empty({n_atoms, s.h.n_features}, vectors.options());
  if (n_atoms == 0 || s.h.n_features == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(vectors.scalar_type(), "device_maths_wacsf", [&] {
    const wacsf::Params<scalar_t> P = wacsf::view_params<scalar_t>(s.h, s.table.data_ptr<scalar_t>());
    const int64_t* ptr = s.row_ptr.data_ptr<int64_t>();
    const scalar_t* vec = s.vectors.data_ptr<scalar_t>();
    const int64_t* nbr = s.neighbors_j.data_ptr<int64_t>();
    const int64_t* num = s.numbers.data_ptr<int64_t>();
    scalar_t* cache = s.cache.data_ptr<scalar_t>();
    scalar_t* work = s.work.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    // Body of forward_kernel in wacsf_cuda.cu, with i the thread index.
    for (int64_t i = 0; i < n_atoms; ++i) {
      const int64_t b = ptr[i];
      wacsf::centre_forward(P, ptr[i + 1] - b, vec + 3 * b, nbr + b, num, cache + b * P.pair_stride,
                            work + i * P.centre_stride, o + i * P.n_features);
    }
  });
  return out;
}

at::Tensor device_maths_wacsf_backward(const at::Tensor& grad_features, const at::Tensor& vectors,
                                       const at::Tensor& row_ptr, const at::Tensor& neighbors_j,
                                       const at::Tensor& numbers, List g2_eta, List g2_rs, List g4_zeta, List g4_lambda,
                                       List g4_eta, List g4_rs, List g5_zeta, List g5_lambda, List g5_eta, List g5_rs,
                                       c10::string_view cutoff_fn, double cutoff) {
  WacsfInputs s =
      prepare_wacsf("fpcore._device_maths_wacsf_backward", vectors, row_ptr, neighbors_j, numbers, g2_eta, g2_rs,
                    g4_zeta, g4_lambda, g4_eta, g4_rs, g5_zeta, g5_lambda, g5_eta, g5_rs, cutoff_fn, cutoff);
  const int64_t n_atoms = row_ptr.size(0) - 1;
  wacsf::check_grad(grad_features, vectors, n_atoms, s.h.n_features);
  const at::Tensor grad = grad_features.contiguous();
  at::Tensor grad_vectors = at::zeros_like(s.vectors);
  if (n_atoms == 0 || s.h.n_features == 0) return grad_vectors;
  AT_DISPATCH_FLOATING_TYPES(vectors.scalar_type(), "device_maths_wacsf_backward", [&] {
    const wacsf::Params<scalar_t> P = wacsf::view_params<scalar_t>(s.h, s.table.data_ptr<scalar_t>());
    const int64_t* ptr = s.row_ptr.data_ptr<int64_t>();
    const scalar_t* vec = s.vectors.data_ptr<scalar_t>();
    const int64_t* nbr = s.neighbors_j.data_ptr<int64_t>();
    const int64_t* num = s.numbers.data_ptr<int64_t>();
    const scalar_t* g = grad.data_ptr<scalar_t>();
    scalar_t* cache = s.cache.data_ptr<scalar_t>();
    scalar_t* work = s.work.data_ptr<scalar_t>();
    scalar_t* gv = grad_vectors.data_ptr<scalar_t>();
    // Body of backward_kernel in wacsf_cuda.cu, with i the thread index.
    for (int64_t i = 0; i < n_atoms; ++i) {
      const int64_t b = ptr[i];
      wacsf::centre_backward(P, ptr[i + 1] - b, vec + 3 * b, nbr + b, num, g + i * P.n_features,
                             cache + b * P.pair_stride, work + i * P.centre_stride, gv + 3 * b);
    }
  });
  return grad_vectors;
}

// The tables and index tensors of fpcore::gmp, checked and made contiguous as in descriptors/cuda/gmp_cuda.cu.
struct GmpInputs {
  at::Tensor vectors, row_ptr, neighbors_j, species, group_consts, group_ptr, group_features, group_max_order, orders,
      offsets, c1, radii2, coeffs, multiplicity;

  template <typename T>
  gmp::Tables<T> tables() const {
    return gmp::make_tables<T>(group_consts, group_ptr, group_features, group_max_order, orders, offsets, c1, radii2,
                               coeffs, multiplicity);
  }
};

GmpInputs prepare_gmp(const char* op, const at::Tensor& vectors, const at::Tensor& row_ptr,
                      const at::Tensor& neighbors_j, const at::Tensor& species, const at::Tensor& group_consts,
                      const at::Tensor& group_ptr, const at::Tensor& group_features, const at::Tensor& group_max_order,
                      const at::Tensor& orders, const at::Tensor& offsets, const at::Tensor& c1,
                      const at::Tensor& radii2, const at::Tensor& coeffs, const at::Tensor& multiplicity,
                      int64_t n_moments) {
  gmp::check_inputs(vectors, row_ptr, neighbors_j, species, group_consts, group_ptr, group_features, group_max_order,
                    orders, offsets, c1, radii2, coeffs, multiplicity, n_moments);
  GmpInputs s{vectors.contiguous(),
              row_ptr.contiguous(),
              neighbors_j.contiguous(),
              species.contiguous(),
              group_consts.contiguous(),
              group_ptr.contiguous(),
              group_features.contiguous(),
              group_max_order.contiguous(),
              orders.contiguous(),
              offsets.contiguous(),
              c1.contiguous(),
              radii2.contiguous(),
              coeffs.contiguous(),
              multiplicity.contiguous()};
  gmp::check_indices_and_tables(op, s.row_ptr, s.neighbors_j, s.species, "species", s.group_consts.size(1), s.group_ptr,
                                s.group_features, s.group_max_order, s.orders, s.offsets, n_moments);
  return s;
}

std::tuple<at::Tensor, at::Tensor> device_maths_gmp(const at::Tensor& vectors, const at::Tensor& row_ptr,
                                                    const at::Tensor& neighbors_j, const at::Tensor& species,
                                                    const at::Tensor& group_consts, const at::Tensor& group_ptr,
                                                    const at::Tensor& group_features, const at::Tensor& group_max_order,
                                                    const at::Tensor& orders, const at::Tensor& offsets,
                                                    const at::Tensor& c1, const at::Tensor& radii2,
                                                    const at::Tensor& coeffs, const at::Tensor& multiplicity,
                                                    int64_t n_moments, bool square) {
  const GmpInputs s =
      prepare_gmp("fpcore._device_maths_gmp", vectors, row_ptr, neighbors_j, species, group_consts, group_ptr,
                  group_features, group_max_order, orders, offsets, c1, radii2, coeffs, multiplicity, n_moments);
  const int64_t N = s.species.size(0), F = s.orders.size(0);
  at::Tensor features = at::zeros({N, F}, vectors.options());
  at::Tensor moments = at::zeros({N, n_moments}, vectors.options());
  if (N == 0) return {features, moments};
  AT_DISPATCH_FLOATING_TYPES(vectors.scalar_type(), "device_maths_gmp", [&] {
    const gmp::Tables<scalar_t> t = s.tables<scalar_t>();
    const scalar_t* vec = s.vectors.data_ptr<scalar_t>();
    const int64_t* rp = s.row_ptr.data_ptr<int64_t>();
    const int64_t* nj = s.neighbors_j.data_ptr<int64_t>();
    const int64_t* sp = s.species.data_ptr<int64_t>();
    scalar_t* out = features.data_ptr<scalar_t>();
    scalar_t* mom = moments.data_ptr<scalar_t>();
    // Body of gmp_forward_kernel in gmp_cuda.cu with one thread per block: the block's shared moments are
    // the centre's row of `moments`, and the atomics become plain additions.
    for (int64_t i = 0; i < N; ++i) {
      scalar_t* Q = mom + i * n_moments;
      auto add = [Q](int64_t m, scalar_t value) { Q[m] += value; };
      gmp::accumulate_entry(t, scalar_t(0), scalar_t(0), scalar_t(0), sp[i], add);  // self term
      for (int64_t p = rp[i]; p < rp[i + 1]; ++p)
        gmp::accumulate_entry(t, vec[3 * p], vec[3 * p + 1], vec[3 * p + 2], sp[nj[p]], add);
      for (int64_t f = 0; f < t.n_features; ++f) out[i * t.n_features + f] = gmp::feature_value(t, f, Q, square);
    }
  });
  return {features, moments};
}

at::Tensor device_maths_gmp_backward(const at::Tensor& grad_features_in, const c10::optional<at::Tensor>& grad_moments,
                                     const at::Tensor& moments_in, const at::Tensor& vectors, const at::Tensor& row_ptr,
                                     const at::Tensor& neighbors_j, const at::Tensor& species,
                                     const at::Tensor& group_consts, const at::Tensor& group_ptr,
                                     const at::Tensor& group_features, const at::Tensor& group_max_order,
                                     const at::Tensor& orders, const at::Tensor& offsets, const at::Tensor& c1,
                                     const at::Tensor& radii2, const at::Tensor& coeffs, const at::Tensor& multiplicity,
                                     int64_t n_moments, bool square) {
  const GmpInputs s =
      prepare_gmp("fpcore._device_maths_gmp_backward", vectors, row_ptr, neighbors_j, species, group_consts, group_ptr,
                  group_features, group_max_order, orders, offsets, c1, radii2, coeffs, multiplicity, n_moments);
  const int64_t N = s.species.size(0), F = s.orders.size(0);
  gmp::check_backward_inputs(grad_features_in, grad_moments, moments_in, vectors, N, F, n_moments);
  const bool has_gm = grad_moments.has_value() && grad_moments->defined();
  const at::Tensor grad_features = grad_features_in.contiguous(), moments = moments_in.contiguous();
  const at::Tensor gmom_t = has_gm ? grad_moments->contiguous() : at::Tensor();
  at::Tensor grad_vectors = at::zeros_like(s.vectors);
  if (N == 0) return grad_vectors;
  AT_DISPATCH_FLOATING_TYPES(vectors.scalar_type(), "device_maths_gmp_backward", [&] {
    const gmp::Tables<scalar_t> t = s.tables<scalar_t>();
    const scalar_t* vec = s.vectors.data_ptr<scalar_t>();
    const int64_t* rp = s.row_ptr.data_ptr<int64_t>();
    const int64_t* nj = s.neighbors_j.data_ptr<int64_t>();
    const int64_t* sp = s.species.data_ptr<int64_t>();
    const scalar_t* gf = grad_features.data_ptr<scalar_t>();
    const scalar_t* mom = moments.data_ptr<scalar_t>();
    const scalar_t* gmom = has_gm ? gmom_t.data_ptr<scalar_t>() : nullptr;
    scalar_t* gv = grad_vectors.data_ptr<scalar_t>();
    std::vector<scalar_t> G(static_cast<size_t>(std::max<int64_t>(n_moments, 1)));
    // Body of gmp_backward_kernel in gmp_cuda.cu with one thread per block (G: the block's shared memory).
    for (int64_t i = 0; i < N; ++i) {
      if (rp[i] == rp[i + 1]) continue;
      for (int64_t m = 0; m < n_moments; ++m) G[m] = gmom ? gmom[i * n_moments + m] : scalar_t(0);
      const scalar_t* Q = mom + i * n_moments;
      for (int64_t f = 0; f < t.n_features; ++f)
        gmp::feature_backward(t, f, Q, gf[i * t.n_features + f], square, G.data());
      for (int64_t p = rp[i]; p < rp[i + 1]; ++p)
        gmp::entry_gradient(t, vec[3 * p], vec[3 * p + 1], vec[3 * p + 2], sp[nj[p]], G.data(), gv + 3 * p);
    }
  });
  return grad_vectors;
}

}  // namespace
}  // namespace testing

#define FPCORE_DEVICE_MATHS_WACSF_PARAMS                                                               \
  "float[] g2_eta, float[] g2_rs, float[] g4_zeta, float[] g4_lambda, float[] g4_eta, float[] g4_rs, " \
  "float[] g5_zeta, float[] g5_lambda, float[] g5_eta, float[] g5_rs, str cutoff_fn, float cutoff"

TORCH_LIBRARY_FRAGMENT(fpcore, m) {
  m.def(
      "_device_maths_wacsf(Tensor vectors, Tensor row_ptr, Tensor neighbors_j, Tensor "
      "numbers, " FPCORE_DEVICE_MATHS_WACSF_PARAMS ") -> Tensor");
  m.def(
      "_device_maths_wacsf_backward(Tensor grad_features, Tensor vectors, Tensor row_ptr, Tensor neighbors_j, "
      "Tensor numbers, " FPCORE_DEVICE_MATHS_WACSF_PARAMS ") -> Tensor");
  m.def(
      "_device_maths_gmp(Tensor vectors, Tensor row_ptr, Tensor neighbors_j, Tensor numbers, Tensor group_consts, "
      "Tensor group_ptr, Tensor group_features, Tensor group_max_order, Tensor orders, Tensor offsets, "
      "Tensor c1, Tensor radii2, Tensor coeffs, Tensor multiplicity, int n_moments, bool square) "
      "-> (Tensor, Tensor)");
  m.def(
      "_device_maths_gmp_backward(Tensor grad_features, Tensor? grad_moments, Tensor moments, Tensor vectors, "
      "Tensor row_ptr, Tensor neighbors_j, Tensor numbers, Tensor group_consts, Tensor group_ptr, "
      "Tensor group_features, Tensor group_max_order, Tensor orders, Tensor offsets, Tensor c1, "
      "Tensor radii2, Tensor coeffs, Tensor multiplicity, int n_moments, bool square) -> Tensor");
}

TORCH_LIBRARY_IMPL(fpcore, CPU, m) {
  m.impl("_device_maths_wacsf", &testing::device_maths_wacsf);
  m.impl("_device_maths_wacsf_backward", &testing::device_maths_wacsf_backward);
  m.impl("_device_maths_gmp", &testing::device_maths_gmp);
  m.impl("_device_maths_gmp_backward", &testing::device_maths_gmp_backward);
}

}  // namespace fpcore
