// CUDA kernels of fpcore::ead and fpcore::ead_backward: one thread per centre atom running the
// same per-centre maths as the CPU (descriptors/ead_math.h). Each thread owns its slice of a
// global density scratch (N x n_eta * n_rs x n_monomials, linear in atoms) and writes only its own
// pairs' gradients, so no atomics are needed.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "common/cuda/parameter_table.h"
#include "common/index_checks.h"
#include "descriptors/ead_checks.h"
#include "descriptors/ead_math.h"

namespace fpcore {
namespace {

constexpr int kThreads = 128;

template <typename scalar_t>
__global__ void ead_forward_kernel(const scalar_t* __restrict__ vectors, const int64_t* __restrict__ row_ptr,
                                   const int64_t* __restrict__ nbr, const int64_t* __restrict__ numbers,
                                   const scalar_t* __restrict__ eta, const scalar_t* __restrict__ rs, ead::Params prm,
                                   int64_t n_atoms, int64_t scratch_size, int64_t n_features, scalar_t* scratch,
                                   scalar_t* out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n_atoms) return;
  scalar_t* rho = scratch + i * scratch_size;
  ead::accumulate_density(vectors, nbr, numbers, row_ptr[i], row_ptr[i + 1], eta, rs, prm, rho);
  ead::features_from_density(rho, prm, out + i * n_features);
}

template <typename scalar_t>
__global__ void ead_backward_kernel(const scalar_t* __restrict__ grad_output, const scalar_t* __restrict__ vectors,
                                    const int64_t* __restrict__ row_ptr, const int64_t* __restrict__ nbr,
                                    const int64_t* __restrict__ numbers, const scalar_t* __restrict__ eta,
                                    const scalar_t* __restrict__ rs, ead::Params prm, int64_t n_atoms,
                                    int64_t scratch_size, int64_t n_features, scalar_t* scratch,
                                    scalar_t* grad_vectors) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n_atoms) return;
  const int64_t p0 = row_ptr[i], p1 = row_ptr[i + 1];
  if (p1 == p0) return;
  scalar_t* rho = scratch + i * scratch_size;
  ead::accumulate_density(vectors, nbr, numbers, p0, p1, eta, rs, prm, rho);
  ead::density_adjoint(grad_output + i * n_features, prm, rho);
  ead::pair_gradients(vectors, nbr, numbers, p0, p1, eta, rs, prm, rho, grad_vectors);
}

at::Tensor ead_cuda(const at::Tensor& vectors_in, const at::Tensor& row_ptr_in, const at::Tensor& neighbors_j_in,
                    const at::Tensor& numbers_in, at::ArrayRef<double> eta, at::ArrayRef<double> rs, int64_t L,
                    c10::string_view cutoff_fn, double cutoff) {
  const ead::Params prm = ead::check_arguments(vectors_in, row_ptr_in, neighbors_j_in, numbers_in, eta, rs, L,
                                               std::string(cutoff_fn), cutoff);
  const c10::cuda::CUDAGuard guard(vectors_in.device());
  const at::Tensor vectors = vectors_in.contiguous(), row_ptr = row_ptr_in.contiguous();
  const at::Tensor neighbors_j = neighbors_j_in.contiguous(), numbers = numbers_in.contiguous();
  check_index_values("fpcore.ead", row_ptr, neighbors_j);
  const int64_t n_atoms = numbers.size(0);
  const int64_t scratch_size = prm.n_eta * prm.n_rs * ead::n_monomials(prm.L), F = ead::n_features(prm);
  at::Tensor out = at::zeros({n_atoms, F}, vectors.options());
  if (n_atoms == 0) return out;
  at::Tensor scratch = at::empty({n_atoms, scratch_size}, vectors.options());
  const at::Tensor eta_t = device_parameter_table(eta, vectors.options());
  const at::Tensor rs_t = device_parameter_table(rs, vectors.options());
  const int blocks = static_cast<int>((n_atoms + kThreads - 1) / kThreads);
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(vectors.scalar_type(), "ead_cuda", [&] {
    ead_forward_kernel<scalar_t><<<blocks, kThreads, 0, stream>>>(
        vectors.data_ptr<scalar_t>(), row_ptr.data_ptr<int64_t>(), neighbors_j.data_ptr<int64_t>(),
        numbers.data_ptr<int64_t>(), eta_t.data_ptr<scalar_t>(), rs_t.data_ptr<scalar_t>(), prm, n_atoms, scratch_size,
        F, scratch.data_ptr<scalar_t>(), out.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

at::Tensor ead_backward_cuda(const at::Tensor& grad_output_in, const at::Tensor& vectors_in,
                             const at::Tensor& row_ptr_in, const at::Tensor& neighbors_j_in,
                             const at::Tensor& numbers_in, at::ArrayRef<double> eta, at::ArrayRef<double> rs, int64_t L,
                             c10::string_view cutoff_fn, double cutoff) {
  const ead::Params prm = ead::check_arguments(vectors_in, row_ptr_in, neighbors_j_in, numbers_in, eta, rs, L,
                                               std::string(cutoff_fn), cutoff);
  const int64_t n_atoms = numbers_in.size(0);
  ead::check_grad_features(grad_output_in, vectors_in, prm, n_atoms);
  const c10::cuda::CUDAGuard guard(vectors_in.device());
  const at::Tensor vectors = vectors_in.contiguous(), row_ptr = row_ptr_in.contiguous();
  const at::Tensor neighbors_j = neighbors_j_in.contiguous(), numbers = numbers_in.contiguous();
  check_index_values("fpcore.ead", row_ptr, neighbors_j);
  const at::Tensor grad_output = grad_output_in.contiguous();
  const int64_t scratch_size = prm.n_eta * prm.n_rs * ead::n_monomials(prm.L), F = ead::n_features(prm);
  at::Tensor grad_vectors = at::zeros_like(vectors);
  if (n_atoms == 0 || vectors.size(0) == 0) return grad_vectors;
  at::Tensor scratch = at::empty({n_atoms, scratch_size}, vectors.options());
  const at::Tensor eta_t = device_parameter_table(eta, vectors.options());
  const at::Tensor rs_t = device_parameter_table(rs, vectors.options());
  const int blocks = static_cast<int>((n_atoms + kThreads - 1) / kThreads);
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(vectors.scalar_type(), "ead_backward_cuda", [&] {
    ead_backward_kernel<scalar_t><<<blocks, kThreads, 0, stream>>>(
        grad_output.data_ptr<scalar_t>(), vectors.data_ptr<scalar_t>(), row_ptr.data_ptr<int64_t>(),
        neighbors_j.data_ptr<int64_t>(), numbers.data_ptr<int64_t>(), eta_t.data_ptr<scalar_t>(),
        rs_t.data_ptr<scalar_t>(), prm, n_atoms, scratch_size, F, scratch.data_ptr<scalar_t>(),
        grad_vectors.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return grad_vectors;
}

}  // namespace

TORCH_LIBRARY_IMPL(fpcore, CUDA, m) {
  m.impl("ead", &ead_cuda);
  m.impl("ead_backward", &ead_backward_cuda);
}

}  // namespace fpcore
