// CPU kernels of fpcore::wacsf and fpcore::wacsf_backward: parallel over centre atoms. Every
// neighbour entry belongs to exactly one centre, so the backward writes its rows without races.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <vector>

#include "descriptors/wacsf_params.h"

namespace fpcore {
namespace wacsf {
namespace {

using List = at::ArrayRef<double>;

// row_ptr must be a valid CSR pointer over the P entries, and every j an atom index.
void check_index_values(const at::Tensor& row_ptr, const at::Tensor& neighbors_j, int64_t n_pairs) {
  const int64_t n_atoms = row_ptr.size(0) - 1;
  const int64_t* ptr = row_ptr.data_ptr<int64_t>();
  TORCH_CHECK(ptr[0] == 0 && ptr[n_atoms] == n_pairs, "fpcore.wacsf: 'row_ptr' must start at 0 and end at the "
              "number of pairs ", n_pairs, ", got ", ptr[0], " .. ", ptr[n_atoms]);
  for (int64_t i = 0; i < n_atoms; ++i)
    TORCH_CHECK(ptr[i] <= ptr[i + 1], "fpcore.wacsf: 'row_ptr' must be non-decreasing (entry ", i, ")");
  const int64_t* j = neighbors_j.data_ptr<int64_t>();
  for (int64_t p = 0; p < n_pairs; ++p)
    TORCH_CHECK(j[p] >= 0 && j[p] < n_atoms, "fpcore.wacsf: 'neighbors_j' entry ", p, " = ", j[p],
                " is not an atom index in [0, ", n_atoms, ")");
}

// Runs `body(centre, cache, work)` over all centres with per-thread scratch buffers.
template <typename scalar_t, typename Body>
void for_each_centre(const Params<scalar_t>& P, const int64_t* ptr, int64_t n_atoms, Body body) {
  // Triplet work grows as n^2 per centre, so small chunks keep the threads balanced.
  at::parallel_for(0, n_atoms, 4, [&](int64_t begin, int64_t end) {
    int64_t max_n = 0;
    for (int64_t i = begin; i < end; ++i) max_n = std::max(max_n, ptr[i + 1] - ptr[i]);
    std::vector<scalar_t> cache(static_cast<size_t>(std::max<int64_t>(max_n * P.pair_stride, 1)));
    std::vector<scalar_t> work(static_cast<size_t>(std::max<int64_t>(P.centre_stride, 1)));
    for (int64_t i = begin; i < end; ++i) body(i, cache.data(), work.data());
  });
}

at::Tensor wacsf_cpu(const at::Tensor& vectors_in, const at::Tensor& row_ptr_in, const at::Tensor& neighbors_j_in,
                     const at::Tensor& numbers_in, List g2_eta, List g2_rs, List g4_zeta, List g4_lambda,
                     List g4_eta, List g4_rs, List g5_zeta, List g5_lambda, List g5_eta, List g5_rs,
                     int64_t cutoff_fn, double cutoff) {
  check_inputs(vectors_in, row_ptr_in, neighbors_j_in, numbers_in);
  const HostParams h = make_params(g2_eta, g2_rs, g4_zeta, g4_lambda, g4_eta, g4_rs, g5_zeta, g5_lambda, g5_eta,
                                   g5_rs, cutoff_fn, cutoff);
  const at::Tensor vectors = vectors_in.contiguous(), row_ptr = row_ptr_in.contiguous();
  const at::Tensor neighbors_j = neighbors_j_in.contiguous(), numbers = numbers_in.contiguous();
  const int64_t n_atoms = row_ptr.size(0) - 1;
  check_index_values(row_ptr, neighbors_j, vectors.size(0));
  at::Tensor out = at::empty({n_atoms, h.n_features}, vectors.options());
  AT_DISPATCH_FLOATING_TYPES(vectors.scalar_type(), "wacsf_cpu", [&] {
    std::vector<scalar_t> table(h.table.begin(), h.table.end());
    const Params<scalar_t> P = view_params<scalar_t>(h, table.data());
    const int64_t* ptr = row_ptr.data_ptr<int64_t>();
    const int64_t* nbr = neighbors_j.data_ptr<int64_t>();
    const int64_t* z = numbers.data_ptr<int64_t>();
    const scalar_t* vec = vectors.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    for_each_centre<scalar_t>(P, ptr, n_atoms, [&](int64_t i, scalar_t* cache, scalar_t* work) {
      const int64_t b = ptr[i];
      centre_forward(P, ptr[i + 1] - b, vec + 3 * b, nbr + b, z, cache, work, o + i * P.n_features);
    });
  });
  return out;
}

at::Tensor wacsf_backward_cpu(const at::Tensor& grad_in, const at::Tensor& vectors_in, const at::Tensor& row_ptr_in,
                              const at::Tensor& neighbors_j_in, const at::Tensor& numbers_in, List g2_eta,
                              List g2_rs, List g4_zeta, List g4_lambda, List g4_eta, List g4_rs, List g5_zeta,
                              List g5_lambda, List g5_eta, List g5_rs, int64_t cutoff_fn, double cutoff) {
  check_inputs(vectors_in, row_ptr_in, neighbors_j_in, numbers_in);
  const HostParams h = make_params(g2_eta, g2_rs, g4_zeta, g4_lambda, g4_eta, g4_rs, g5_zeta, g5_lambda, g5_eta,
                                   g5_rs, cutoff_fn, cutoff);
  const int64_t n_atoms = row_ptr_in.size(0) - 1;
  check_grad(grad_in, vectors_in, n_atoms, h.n_features);
  const at::Tensor vectors = vectors_in.contiguous(), row_ptr = row_ptr_in.contiguous();
  const at::Tensor neighbors_j = neighbors_j_in.contiguous(), numbers = numbers_in.contiguous();
  const at::Tensor grad = grad_in.contiguous();
  check_index_values(row_ptr, neighbors_j, vectors.size(0));
  at::Tensor grad_vectors = at::empty_like(vectors);
  AT_DISPATCH_FLOATING_TYPES(vectors.scalar_type(), "wacsf_backward_cpu", [&] {
    std::vector<scalar_t> table(h.table.begin(), h.table.end());
    const Params<scalar_t> P = view_params<scalar_t>(h, table.data());
    const int64_t* ptr = row_ptr.data_ptr<int64_t>();
    const int64_t* nbr = neighbors_j.data_ptr<int64_t>();
    const int64_t* z = numbers.data_ptr<int64_t>();
    const scalar_t* vec = vectors.data_ptr<scalar_t>();
    const scalar_t* g = grad.data_ptr<scalar_t>();
    scalar_t* gv = grad_vectors.data_ptr<scalar_t>();
    for_each_centre<scalar_t>(P, ptr, n_atoms, [&](int64_t i, scalar_t* cache, scalar_t* work) {
      const int64_t b = ptr[i];
      centre_backward(P, ptr[i + 1] - b, vec + 3 * b, nbr + b, z, g + i * P.n_features, cache, work, gv + 3 * b);
    });
  });
  return grad_vectors;
}

}  // namespace
}  // namespace wacsf

TORCH_LIBRARY_IMPL(fpcore, CPU, m) {
  m.impl("wacsf", &wacsf::wacsf_cpu);
  m.impl("wacsf_backward", &wacsf::wacsf_backward_cpu);
}

}  // namespace fpcore
