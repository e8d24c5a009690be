// CUDA kernels of fpcore::wacsf and fpcore::wacsf_backward: one thread per centre atom running the
// same per-centre maths as the CPU kernel (descriptors/wacsf_math.h). Per-entry caches and the
// per-centre workspace live in global scratch buffers (memory linear in pairs). Each entry belongs
// to one centre, so the backward writes its rows without atomics.
//
// Index values (row_ptr, neighbors_j) are checked on the device first (common/index_checks.h).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
// c10's stream header (the stream at::cuda::getCurrentCUDAStream returns) avoids ATen/cuda's
// CUDAContext.h, which needs the cuSPARSE/cuBLAS headers.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "common/cuda/parameter_table.h"
#include "common/index_checks.h"
#include "descriptors/wacsf_checks.h"

namespace fpcore {
namespace wacsf {
namespace {

using List = at::ArrayRef<double>;
constexpr int kThreads = 128;

template <typename scalar_t>
__global__ void forward_kernel(Params<scalar_t> P, int64_t n_atoms, const int64_t* __restrict__ ptr,
                               const scalar_t* __restrict__ vec, const int64_t* __restrict__ nbr,
                               const int64_t* __restrict__ numbers, scalar_t* cache, scalar_t* work, scalar_t* out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n_atoms) return;
  const int64_t b = ptr[i];
  centre_forward(P, ptr[i + 1] - b, vec + 3 * b, nbr + b, numbers, cache + b * P.pair_stride,
                 work + i * P.centre_stride, out + i * P.n_features);
}

template <typename scalar_t>
__global__ void backward_kernel(Params<scalar_t> P, int64_t n_atoms, const int64_t* __restrict__ ptr,
                                const scalar_t* __restrict__ vec, const int64_t* __restrict__ nbr,
                                const int64_t* __restrict__ numbers, const scalar_t* __restrict__ grad_out,
                                scalar_t* cache, scalar_t* work, scalar_t* grad) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n_atoms) return;
  const int64_t b = ptr[i];
  centre_backward(P, ptr[i + 1] - b, vec + 3 * b, nbr + b, numbers, grad_out + i * P.n_features,
                  cache + b * P.pair_stride, work + i * P.centre_stride, grad + 3 * b);
}

struct Prepared {
  HostParams h;
  at::Tensor vectors, row_ptr, neighbors_j, numbers, table, cache, work;
};

Prepared prepare(const at::Tensor& vectors, const at::Tensor& row_ptr, const at::Tensor& neighbors_j,
                 const at::Tensor& numbers, List g2_eta, List g2_rs, List g4_zeta, List g4_lambda, List g4_eta,
                 List g4_rs, List g5_zeta, List g5_lambda, List g5_eta, List g5_rs, c10::string_view cutoff_fn,
                 double cutoff) {
  check_inputs(vectors, row_ptr, neighbors_j, numbers);
  Prepared s;
  s.h = make_params(g2_eta, g2_rs, g4_zeta, g4_lambda, g4_eta, g4_rs, g5_zeta, g5_lambda, g5_eta, g5_rs, cutoff_fn,
                    cutoff);
  s.vectors = vectors.contiguous();
  s.row_ptr = row_ptr.contiguous();
  s.neighbors_j = neighbors_j.contiguous();
  s.numbers = numbers.contiguous();
  check_index_values("fpcore.wacsf", s.row_ptr, s.neighbors_j);
  const auto options = vectors.options();
  // The small parameter table travels to the device on each call, asynchronously (common/cuda/parameter_table.h).
  s.table = device_parameter_table(s.h.table, options);
  s.cache = at::empty({std::max<int64_t>(vectors.size(0) * s.h.pair_stride, 1)}, options);
  s.work = at::empty({std::max<int64_t>((row_ptr.size(0) - 1) * s.h.centre_stride, 1)}, options);
  return s;
}

at::Tensor wacsf_cuda(const at::Tensor& vectors, const at::Tensor& row_ptr, const at::Tensor& neighbors_j,
                      const at::Tensor& numbers, List g2_eta, List g2_rs, List g4_zeta, List g4_lambda, List g4_eta,
                      List g4_rs, List g5_zeta, List g5_lambda, List g5_eta, List g5_rs, c10::string_view cutoff_fn,
                      double cutoff) {
  Prepared s = prepare(vectors, row_ptr, neighbors_j, numbers, g2_eta, g2_rs, g4_zeta, g4_lambda, g4_eta, g4_rs,
                       g5_zeta, g5_lambda, g5_eta, g5_rs, cutoff_fn, cutoff);
  // After the argument checks in prepare(), so mixed-device inputs get fpcore's message.
  const c10::cuda::CUDAGuard guard(vectors.device());
  const int64_t n_atoms = row_ptr.size(0) - 1;
  at::Tensor out = at::empty({n_atoms, s.h.n_features}, vectors.options());
  if (n_atoms == 0 || s.h.n_features == 0) return out;
  const auto stream = c10::cuda::getCurrentCUDAStream();
  const unsigned blocks = static_cast<unsigned>((n_atoms + kThreads - 1) / kThreads);
  AT_DISPATCH_FLOATING_TYPES(vectors.scalar_type(), "wacsf_cuda", [&] {
    const Params<scalar_t> P = view_params<scalar_t>(s.h, s.table.data_ptr<scalar_t>());
    forward_kernel<scalar_t><<<blocks, kThreads, 0, stream>>>(
        P, n_atoms, s.row_ptr.data_ptr<int64_t>(), s.vectors.data_ptr<scalar_t>(), s.neighbors_j.data_ptr<int64_t>(),
        s.numbers.data_ptr<int64_t>(), s.cache.data_ptr<scalar_t>(), s.work.data_ptr<scalar_t>(),
        out.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor wacsf_backward_cuda(const at::Tensor& grad_features, const at::Tensor& vectors, const at::Tensor& row_ptr,
                               const at::Tensor& neighbors_j, const at::Tensor& numbers, List g2_eta, List g2_rs,
                               List g4_zeta, List g4_lambda, List g4_eta, List g4_rs, List g5_zeta, List g5_lambda,
                               List g5_eta, List g5_rs, c10::string_view cutoff_fn, double cutoff) {
  Prepared s = prepare(vectors, row_ptr, neighbors_j, numbers, g2_eta, g2_rs, g4_zeta, g4_lambda, g4_eta, g4_rs,
                       g5_zeta, g5_lambda, g5_eta, g5_rs, cutoff_fn, cutoff);
  const int64_t n_atoms = row_ptr.size(0) - 1;
  check_grad(grad_features, vectors, n_atoms, s.h.n_features);
  // After the argument checks, so mixed-device inputs get fpcore's message.
  const c10::cuda::CUDAGuard guard(vectors.device());
  const at::Tensor grad = grad_features.contiguous();
  at::Tensor grad_vectors = at::zeros_like(s.vectors);
  if (n_atoms == 0 || s.h.n_features == 0) return grad_vectors;
  const auto stream = c10::cuda::getCurrentCUDAStream();
  const unsigned blocks = static_cast<unsigned>((n_atoms + kThreads - 1) / kThreads);
  AT_DISPATCH_FLOATING_TYPES(vectors.scalar_type(), "wacsf_backward_cuda", [&] {
    const Params<scalar_t> P = view_params<scalar_t>(s.h, s.table.data_ptr<scalar_t>());
    backward_kernel<scalar_t><<<blocks, kThreads, 0, stream>>>(
        P, n_atoms, s.row_ptr.data_ptr<int64_t>(), s.vectors.data_ptr<scalar_t>(), s.neighbors_j.data_ptr<int64_t>(),
        s.numbers.data_ptr<int64_t>(), grad.data_ptr<scalar_t>(), s.cache.data_ptr<scalar_t>(),
        s.work.data_ptr<scalar_t>(), grad_vectors.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return grad_vectors;
}

}  // namespace
}  // namespace wacsf

TORCH_LIBRARY_IMPL(fpcore, CUDA, m) {
  m.impl("wacsf", &wacsf::wacsf_cuda);
  m.impl("wacsf_backward", &wacsf::wacsf_backward_cuda);
}

}  // namespace fpcore
