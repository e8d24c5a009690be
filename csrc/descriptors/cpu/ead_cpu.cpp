// CPU kernels of fpcore::ead and fpcore::ead_backward: parallel over centre atoms; each centre's
// density rho (n_eta * n_rs x n_monomials) lives in a per-thread scratch buffer, and each pair's
// gradient is written only by its centre, so the backward is race-free without atomics.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "common/index_checks.h"
#include "descriptors/ead_checks.h"
#include "descriptors/ead_math.h"

namespace fpcore {
namespace {

at::Tensor ead_cpu(const at::Tensor& vectors_in, const at::Tensor& row_ptr_in, const at::Tensor& neighbors_j_in,
                   const at::Tensor& numbers_in, at::ArrayRef<double> eta, at::ArrayRef<double> rs, int64_t L,
                   c10::string_view cutoff_fn, double cutoff) {
  const ead::Params prm = ead::check_arguments(vectors_in, row_ptr_in, neighbors_j_in, numbers_in, eta, rs, L,
                                               std::string(cutoff_fn), cutoff);
  const at::Tensor vectors = vectors_in.contiguous(), row_ptr = row_ptr_in.contiguous();
  const at::Tensor neighbors_j = neighbors_j_in.contiguous(), numbers = numbers_in.contiguous();
  const int64_t n_atoms = numbers.size(0);
  check_index_values("fpcore.ead", row_ptr, neighbors_j);
  const int64_t K = prm.n_eta * prm.n_rs, M = ead::n_monomials(prm.L), F = ead::n_features(prm);
  at::Tensor out = at::zeros({n_atoms, F}, vectors.options());
  AT_DISPATCH_FLOATING_TYPES(vectors.scalar_type(), "ead_cpu", [&] {
    const std::vector<scalar_t> eta_t(eta.begin(), eta.end()), rs_t(rs.begin(), rs.end());
    const scalar_t* vec = vectors.data_ptr<scalar_t>();
    const int64_t* ptr = row_ptr.data_ptr<int64_t>();
    const int64_t* nbr = neighbors_j.data_ptr<int64_t>();
    const int64_t* z = numbers.data_ptr<int64_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    at::parallel_for(0, n_atoms, 16, [&](int64_t begin, int64_t end) {
      std::vector<scalar_t> rho(K * M);
      for (int64_t i = begin; i < end; ++i) {
        ead::accumulate_density(vec, nbr, z, ptr[i], ptr[i + 1], eta_t.data(), rs_t.data(), prm, rho.data());
        ead::features_from_density(rho.data(), prm, o + i * F);
      }
    });
  });
  return out;
}

at::Tensor ead_backward_cpu(const at::Tensor& grad_features_in, const at::Tensor& vectors_in,
                            const at::Tensor& row_ptr_in, const at::Tensor& neighbors_j_in,
                            const at::Tensor& numbers_in, at::ArrayRef<double> eta, at::ArrayRef<double> rs, int64_t L,
                            c10::string_view cutoff_fn, double cutoff) {
  const ead::Params prm = ead::check_arguments(vectors_in, row_ptr_in, neighbors_j_in, numbers_in, eta, rs, L,
                                               std::string(cutoff_fn), cutoff);
  const int64_t n_atoms = numbers_in.size(0);
  ead::check_grad_features(grad_features_in, vectors_in, prm, n_atoms);
  const at::Tensor vectors = vectors_in.contiguous(), row_ptr = row_ptr_in.contiguous();
  const at::Tensor neighbors_j = neighbors_j_in.contiguous(), numbers = numbers_in.contiguous();
  const at::Tensor grad_features = grad_features_in.contiguous();
  check_index_values("fpcore.ead", row_ptr, neighbors_j);
  const int64_t K = prm.n_eta * prm.n_rs, M = ead::n_monomials(prm.L), F = ead::n_features(prm);
  at::Tensor grad_vectors = at::empty_like(vectors);  // pair_gradients writes every pair's row
  AT_DISPATCH_FLOATING_TYPES(vectors.scalar_type(), "ead_backward_cpu", [&] {
    const std::vector<scalar_t> eta_t(eta.begin(), eta.end()), rs_t(rs.begin(), rs.end());
    const scalar_t* vec = vectors.data_ptr<scalar_t>();
    const scalar_t* go = grad_features.data_ptr<scalar_t>();
    const int64_t* ptr = row_ptr.data_ptr<int64_t>();
    const int64_t* nbr = neighbors_j.data_ptr<int64_t>();
    const int64_t* z = numbers.data_ptr<int64_t>();
    scalar_t* gv = grad_vectors.data_ptr<scalar_t>();
    at::parallel_for(0, n_atoms, 16, [&](int64_t begin, int64_t end) {
      std::vector<scalar_t> rho(K * M);
      // The Gaussians of a centre's pairs, computed once for rho and reused by the pair gradients (they were
      // half of the backward's transcendental calls).
      int64_t max_pairs = 0;
      for (int64_t i = begin; i < end; ++i) max_pairs = std::max(max_pairs, ptr[i + 1] - ptr[i]);
      std::vector<scalar_t> gauss(max_pairs * K);
      for (int64_t i = begin; i < end; ++i) {
        if (ptr[i + 1] == ptr[i]) continue;
        ead::accumulate_density(vec, nbr, z, ptr[i], ptr[i + 1], eta_t.data(), rs_t.data(), prm, rho.data(),
                                gauss.data());
        ead::density_adjoint(go + i * F, prm, rho.data());
        ead::pair_gradients(vec, nbr, z, ptr[i], ptr[i + 1], eta_t.data(), rs_t.data(), prm, rho.data(), gv,
                            gauss.data());
      }
    });
  });
  return grad_vectors;
}

}  // namespace

TORCH_LIBRARY_IMPL(fpcore, CPU, m) {
  m.impl("ead", &ead_cpu);
  m.impl("ead_backward", &ead_backward_cpu);
}

}  // namespace fpcore
