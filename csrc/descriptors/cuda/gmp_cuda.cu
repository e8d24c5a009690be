// CUDA kernels of fpcore::gmp and fpcore::gmp_backward: one thread block per centre atom, threads
// stride over the centre's pairs. The forward accumulates the centre's moments in double whatever the
// input dtype (float32 sums lose ~20x the CPU's accuracy at order 8, where the features cancel
// strongly), with atomics: the summation order varies from run to run, so results are not bitwise
// reproducible, except under torch.use_deterministic_algorithms(True), where each centre is summed by
// one thread in entry order. The backward gives each pair's gradient to exactly one thread, so it needs
// no atomics. Moments live in shared memory when they fit, else in a global scratch buffer, so every
// configuration the CPU accepts runs.
// Index contents (row_ptr, j, numbers) and the feature tables are checked on the device first, with one
// small device-to-host copy per call (common/index_checks.h, descriptors/gmp_checks.h).
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "common/index_checks.h"
#include "descriptors/gmp_checks.h"
#include "descriptors/gmp_math.h"

namespace fpcore {
namespace {

using gmp::Tables;
constexpr int kThreads = 128;
// Dynamic shared memory every CUDA device grants a block without an opt-in attribute.
constexpr size_t kSharedBytes = 48 * 1024;

// scratch: nullptr when the moments fit in shared memory, else n_moments values per centre.
template <typename T>
__global__ void gmp_forward_kernel(Tables<T> t, const T* __restrict__ vec, const int64_t* __restrict__ rp,
                                   const int64_t* __restrict__ nj, const int64_t* __restrict__ sp, int64_t n_moments,
                                   bool square, T* __restrict__ out, T* __restrict__ mom, double* scratch) {
  extern __shared__ unsigned char smem[];
  const int64_t i = blockIdx.x;
  double* Q = scratch == nullptr ? reinterpret_cast<double*>(smem) : scratch + i * n_moments;
  for (int64_t m = threadIdx.x; m < n_moments; m += blockDim.x) Q[m] = 0.0;
  __syncthreads();
  auto add = [Q](int64_t m, T value) { atomicAdd(Q + m, static_cast<double>(value)); };
  if (threadIdx.x == 0) gmp::accumulate_entry(t, T(0), T(0), T(0), sp[i], add);  // self term
  for (int64_t p = rp[i] + threadIdx.x; p < rp[i + 1]; p += blockDim.x)
    gmp::accumulate_entry(t, vec[3 * p], vec[3 * p + 1], vec[3 * p + 2], sp[nj[p]], add);
  __syncthreads();
  for (int64_t m = threadIdx.x; m < n_moments; m += blockDim.x) mom[i * n_moments + m] = static_cast<T>(Q[m]);
  for (int64_t f = threadIdx.x; f < t.n_features; f += blockDim.x)
    out[i * t.n_features + f] = gmp::feature_value(t, f, Q, square);
}

template <typename T>
__global__ void gmp_backward_kernel(Tables<T> t, const T* __restrict__ vec, const int64_t* __restrict__ rp,
                                    const int64_t* __restrict__ nj, const int64_t* __restrict__ sp, int64_t n_moments,
                                    bool square, const T* __restrict__ gf, const T* __restrict__ mom,
                                    const T* __restrict__ gmom, T* __restrict__ gv, T* scratch) {
  extern __shared__ unsigned char smem[];
  const int64_t i = blockIdx.x;
  T* G = scratch == nullptr ? reinterpret_cast<T*>(smem) : scratch + i * n_moments;
  if (rp[i] == rp[i + 1]) return;  // only the constant self term: whole block leaves together
  for (int64_t m = threadIdx.x; m < n_moments; m += blockDim.x) G[m] = gmom ? gmom[i * n_moments + m] : T(0);
  __syncthreads();
  // features own disjoint moment ranges, so threads over features never collide
  const T* Q = mom + i * n_moments;
  for (int64_t f = threadIdx.x; f < t.n_features; f += blockDim.x)
    gmp::feature_backward(t, f, Q, gf[i * t.n_features + f], square, G);
  __syncthreads();
  for (int64_t p = rp[i] + threadIdx.x; p < rp[i + 1]; p += blockDim.x)
    gmp::entry_gradient(t, vec[3 * p], vec[3 * p + 1], vec[3 * p + 2], sp[nj[p]], G, gv + 3 * p);
}

// Per-centre buffer of n_moments values of `type`: shared memory when it fits (returns its size), else a
// global scratch tensor of N rows (shared size 0).
size_t moment_buffer(int64_t n_atoms, int64_t n_moments, at::ScalarType type, const at::TensorOptions& options,
                     at::Tensor& scratch) {
  const size_t bytes = static_cast<size_t>(n_moments) * at::elementSize(type);
  if (bytes <= kSharedBytes) return bytes;
  scratch = at::empty({n_atoms * n_moments}, options.dtype(type));
  return 0;
}

std::tuple<at::Tensor, at::Tensor> gmp_cuda(const at::Tensor& vectors_in, const at::Tensor& row_ptr_in,
                                            const at::Tensor& neighbors_j_in, const at::Tensor& numbers_in,
                                            const at::Tensor& group_consts_in, const at::Tensor& group_ptr_in,
                                            const at::Tensor& group_features_in, const at::Tensor& group_max_order_in,
                                            const at::Tensor& orders_in, const at::Tensor& offsets_in,
                                            const at::Tensor& c1_in, const at::Tensor& radii2_in,
                                            const at::Tensor& coeffs_in, const at::Tensor& multiplicity_in,
                                            int64_t n_moments, bool square) {
  gmp::check_inputs(vectors_in, row_ptr_in, neighbors_j_in, numbers_in, group_consts_in, group_ptr_in,
                    group_features_in, group_max_order_in, orders_in, offsets_in, c1_in, radii2_in, coeffs_in,
                    multiplicity_in, n_moments);
  const c10::cuda::CUDAGuard guard(vectors_in.device());
  const at::Tensor vectors = vectors_in.contiguous(), row_ptr = row_ptr_in.contiguous();
  const at::Tensor neighbors_j = neighbors_j_in.contiguous(), numbers = numbers_in.contiguous();
  const at::Tensor group_consts = group_consts_in.contiguous(), group_ptr = group_ptr_in.contiguous();
  const at::Tensor group_features = group_features_in.contiguous(), gmax = group_max_order_in.contiguous();
  const at::Tensor orders = orders_in.contiguous(), offsets = offsets_in.contiguous();
  const at::Tensor c1 = c1_in.contiguous(), radii2 = radii2_in.contiguous();
  const at::Tensor coeffs = coeffs_in.contiguous(), multiplicity = multiplicity_in.contiguous();
  // The feature tables are checked on the device and read back with the index checks' one small copy, where
  // checking them on the host would copy five tables to it (five syncs) on every call.
  gmp::check_indices_and_tables("fpcore.gmp", row_ptr, neighbors_j, numbers, "numbers", group_consts.size(1), group_ptr,
                                group_features, gmax, orders, offsets, n_moments);
  const int64_t N = numbers.size(0), F = orders.size(0);
  at::Tensor features = at::zeros({N, F}, vectors.options());
  at::Tensor moments = at::zeros({N, n_moments}, vectors.options());
  if (N == 0) return {features, moments};
  at::Tensor scratch;
  const size_t shm = moment_buffer(N, n_moments, at::kDouble, vectors.options(), scratch);
  // One thread per centre adds the entries in order: the double sums no longer depend on atomic timing.
  const int threads = at::globalContext().deterministicAlgorithms() ? 1 : kThreads;
  AT_DISPATCH_FLOATING_TYPES(vectors.scalar_type(), "gmp_cuda", [&] {
    const Tables<scalar_t> t = gmp::make_tables<scalar_t>(group_consts, group_ptr, group_features, gmax, orders,
                                                          offsets, c1, radii2, coeffs, multiplicity);
    gmp_forward_kernel<scalar_t><<<N, threads, shm, c10::cuda::getCurrentCUDAStream()>>>(
        t, vectors.data_ptr<scalar_t>(), row_ptr.data_ptr<int64_t>(), neighbors_j.data_ptr<int64_t>(),
        numbers.data_ptr<int64_t>(), n_moments, square, features.data_ptr<scalar_t>(), moments.data_ptr<scalar_t>(),
        scratch.defined() ? scratch.data_ptr<double>() : nullptr);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {features, moments};
}

at::Tensor gmp_backward_cuda(const at::Tensor& grad_features_in, const c10::optional<at::Tensor>& grad_moments_in,
                             const at::Tensor& moments_in, const at::Tensor& vectors_in, const at::Tensor& row_ptr_in,
                             const at::Tensor& neighbors_j_in, const at::Tensor& numbers_in,
                             const at::Tensor& group_consts_in, const at::Tensor& group_ptr_in,
                             const at::Tensor& group_features_in, const at::Tensor& group_max_order_in,
                             const at::Tensor& orders_in, const at::Tensor& offsets_in, const at::Tensor& c1_in,
                             const at::Tensor& radii2_in, const at::Tensor& coeffs_in,
                             const at::Tensor& multiplicity_in, int64_t n_moments, bool square) {
  gmp::check_inputs(vectors_in, row_ptr_in, neighbors_j_in, numbers_in, group_consts_in, group_ptr_in,
                    group_features_in, group_max_order_in, orders_in, offsets_in, c1_in, radii2_in, coeffs_in,
                    multiplicity_in, n_moments);
  const int64_t N = numbers_in.size(0), F = orders_in.size(0);
  gmp::check_backward_inputs(grad_features_in, grad_moments_in, moments_in, vectors_in, N, F, n_moments);
  const bool has_gm = grad_moments_in.has_value() && grad_moments_in->defined();
  const c10::cuda::CUDAGuard guard(vectors_in.device());
  const at::Tensor vectors = vectors_in.contiguous(), row_ptr = row_ptr_in.contiguous();
  const at::Tensor neighbors_j = neighbors_j_in.contiguous(), numbers = numbers_in.contiguous();
  const at::Tensor group_consts = group_consts_in.contiguous(), group_ptr = group_ptr_in.contiguous();
  const at::Tensor group_features = group_features_in.contiguous(), gmax = group_max_order_in.contiguous();
  const at::Tensor orders = orders_in.contiguous(), offsets = offsets_in.contiguous();
  const at::Tensor c1 = c1_in.contiguous(), radii2 = radii2_in.contiguous();
  const at::Tensor coeffs = coeffs_in.contiguous(), multiplicity = multiplicity_in.contiguous();
  // The feature tables are checked on the device and read back with the index checks' one small copy, where
  // checking them on the host would copy five tables to it (five syncs) on every call.
  gmp::check_indices_and_tables("fpcore.gmp", row_ptr, neighbors_j, numbers, "numbers", group_consts.size(1), group_ptr,
                                group_features, gmax, orders, offsets, n_moments);
  const at::Tensor grad_features = grad_features_in.contiguous(), moments = moments_in.contiguous();
  const at::Tensor grad_moments = has_gm ? grad_moments_in->contiguous() : at::Tensor();
  at::Tensor grad_vectors = at::zeros_like(vectors);
  if (N == 0) return grad_vectors;
  at::Tensor scratch;
  const size_t shm = moment_buffer(N, n_moments, vectors.scalar_type(), vectors.options(), scratch);
  AT_DISPATCH_FLOATING_TYPES(vectors.scalar_type(), "gmp_backward_cuda", [&] {
    const Tables<scalar_t> t = gmp::make_tables<scalar_t>(group_consts, group_ptr, group_features, gmax, orders,
                                                          offsets, c1, radii2, coeffs, multiplicity);
    gmp_backward_kernel<scalar_t><<<N, kThreads, shm, c10::cuda::getCurrentCUDAStream()>>>(
        t, vectors.data_ptr<scalar_t>(), row_ptr.data_ptr<int64_t>(), neighbors_j.data_ptr<int64_t>(),
        numbers.data_ptr<int64_t>(), n_moments, square, grad_features.data_ptr<scalar_t>(),
        moments.data_ptr<scalar_t>(), has_gm ? grad_moments.data_ptr<scalar_t>() : nullptr,
        grad_vectors.data_ptr<scalar_t>(), scratch.defined() ? scratch.data_ptr<scalar_t>() : nullptr);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return grad_vectors;
}

}  // namespace

TORCH_LIBRARY_IMPL(fpcore, CUDA, m) {
  m.impl("gmp", &gmp_cuda);
  m.impl("gmp_backward", &gmp_backward_cuda);
}

}  // namespace fpcore
