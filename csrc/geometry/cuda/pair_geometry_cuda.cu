// CUDA kernels of fpcore::pair_geometry and its adjoint: one thread per pair. The adjoint
// scatter-adds with atomicAdd (float64 atomics need sm_60+), so its float rounding order, unlike
// the CPU kernel's, varies from run to run. Out-of-range indices stop the kernel with a device
// assertion (checking them on the host would cost a synchronisation).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/macros/Macros.h>
#include <torch/library.h>

#include "geometry/pair_geometry_checks.h"
#include "geometry/pair_geometry_launch.h"
#include "geometry/pair_geometry_math.h"

namespace fpcore {
namespace {

constexpr int kThreads = 256;

int64_t blocks_for(int64_t n) {
  return (n + kThreads - 1) / kThreads;
}

template <typename scalar_t>
__global__ void forward_kernel(const scalar_t* __restrict__ pos, const scalar_t* __restrict__ cell,
                               const int64_t* __restrict__ structure, const int64_t* __restrict__ pi,
                               const int64_t* __restrict__ pj, const int64_t* __restrict__ shift, int64_t n_pairs,
                               int64_t n_atoms, int64_t n_structures, scalar_t* __restrict__ vec,
                               scalar_t* __restrict__ dist) {
  const int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (p >= n_pairs) return;
  const int64_t a = pi[p], b = pj[p];
  CUDA_KERNEL_ASSERT(a >= 0 && a < n_atoms && b >= 0 && b < n_atoms);
  const int64_t s = structure[a];
  CUDA_KERNEL_ASSERT(s >= 0 && s < n_structures);
  scalar_t v[3];
  geometry::pair_vector(pos + 3 * a, pos + 3 * b, cell + 9 * s, shift + 3 * p, v);
  for (int c = 0; c < 3; ++c) vec[3 * p + c] = v[c];
  dist[p] = geometry::pair_distance(v);
}

template <typename scalar_t>
__global__ void backward_kernel(const scalar_t* __restrict__ grad_v, const scalar_t* __restrict__ grad_d,
                                const scalar_t* __restrict__ vec, const scalar_t* __restrict__ dist,
                                const int64_t* __restrict__ structure, const int64_t* __restrict__ pi,
                                const int64_t* __restrict__ pj, const int64_t* __restrict__ shift, int64_t n_pairs,
                                int64_t n_atoms, int64_t n_structures, scalar_t* __restrict__ grad_pos,
                                scalar_t* __restrict__ grad_cell) {
  const int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (p >= n_pairs) return;
  const int64_t a = pi[p], b = pj[p];
  CUDA_KERNEL_ASSERT(a >= 0 && a < n_atoms && b >= 0 && b < n_atoms);
  const int64_t s = structure[a];
  CUDA_KERNEL_ASSERT(s >= 0 && s < n_structures);
  scalar_t g[3];
  geometry::vector_gradient(grad_v ? grad_v + 3 * p : nullptr, grad_d ? grad_d[p] : scalar_t(0), vec + 3 * p, dist[p],
                            g);
  for (int c = 0; c < 3; ++c) {
    atomicAdd(grad_pos + 3 * a + c, -g[c]);
    atomicAdd(grad_pos + 3 * b + c, g[c]);
  }
  const int64_t* sh = shift + 3 * p;
  if (sh[0] | sh[1] | sh[2]) {
    for (int k = 0; k < 3; ++k) {
      if (sh[k] == 0) continue;
      const scalar_t sk = static_cast<scalar_t>(sh[k]);
      for (int c = 0; c < 3; ++c) atomicAdd(grad_cell + 9 * s + 3 * k + c, sk * g[c]);
    }
  }
}

}  // namespace

void pair_geometry_cuda_into(const at::Tensor& positions, const at::Tensor& cells, const at::Tensor& batch,
                             const at::Tensor& i, const at::Tensor& j, const at::Tensor& shifts, at::Tensor& vectors,
                             at::Tensor& distances) {
  const int64_t n_pairs = i.size(0);
  if (n_pairs == 0) return;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(positions.scalar_type(), "fpcore_pair_geometry_cuda", [&] {
    forward_kernel<scalar_t><<<blocks_for(n_pairs), kThreads, 0, stream>>>(
        positions.data_ptr<scalar_t>(), cells.data_ptr<scalar_t>(), batch.data_ptr<int64_t>(), i.data_ptr<int64_t>(),
        j.data_ptr<int64_t>(), shifts.data_ptr<int64_t>(), n_pairs, positions.size(0), cells.size(0),
        vectors.data_ptr<scalar_t>(), distances.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

namespace {

std::tuple<at::Tensor, at::Tensor> pair_geometry_cuda(const at::Tensor& positions_in, const at::Tensor& cells_in,
                                                      const at::Tensor& batch_in, const at::Tensor& i_in,
                                                      const at::Tensor& j_in, const at::Tensor& shifts_in) {
  check_pair_geometry_inputs(positions_in, cells_in, batch_in, i_in, j_in, shifts_in);
  const c10::cuda::OptionalCUDAGuard guard(positions_in.device());
  auto vectors = at::empty({i_in.size(0), 3}, positions_in.options());
  auto distances = at::empty({i_in.size(0)}, positions_in.options());
  pair_geometry_cuda_into(positions_in.contiguous(), cells_in.contiguous(), batch_in.contiguous(), i_in.contiguous(),
                          j_in.contiguous(), shifts_in.contiguous(), vectors, distances);
  return {vectors, distances};
}

std::tuple<at::Tensor, at::Tensor> pair_geometry_backward_cuda(
    const c10::optional<at::Tensor>& grad_vectors_in, const c10::optional<at::Tensor>& grad_distances_in,
    const at::Tensor& vectors_in, const at::Tensor& distances_in, const at::Tensor& batch_in, const at::Tensor& i_in,
    const at::Tensor& j_in, const at::Tensor& shifts_in, int64_t n_atoms, int64_t n_structures) {
  check_pair_geometry_backward_inputs(grad_vectors_in, grad_distances_in, vectors_in, distances_in, batch_in, i_in,
                                      j_in, shifts_in, n_atoms, n_structures);
  const c10::cuda::OptionalCUDAGuard guard(vectors_in.device());
  at::Tensor grad_vectors, grad_distances;
  if (grad_vectors_in.has_value() && grad_vectors_in->defined()) grad_vectors = grad_vectors_in->contiguous();
  if (grad_distances_in.has_value() && grad_distances_in->defined()) grad_distances = grad_distances_in->contiguous();
  const auto vectors = vectors_in.contiguous(), distances = distances_in.contiguous(), batch = batch_in.contiguous();
  const auto i = i_in.contiguous(), j = j_in.contiguous(), shifts = shifts_in.contiguous();
  const int64_t n_pairs = i.size(0);
  auto grad_positions = at::zeros({n_atoms, 3}, vectors.options());
  auto grad_cells = at::zeros({n_structures, 3, 3}, vectors.options());
  if (n_pairs == 0 || !(grad_vectors.defined() || grad_distances.defined())) return {grad_positions, grad_cells};
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(vectors.scalar_type(), "fpcore_pair_geometry_backward_cuda", [&] {
    backward_kernel<scalar_t><<<blocks_for(n_pairs), kThreads, 0, stream>>>(
        grad_vectors.defined() ? grad_vectors.data_ptr<scalar_t>() : nullptr,
        grad_distances.defined() ? grad_distances.data_ptr<scalar_t>() : nullptr, vectors.data_ptr<scalar_t>(),
        distances.data_ptr<scalar_t>(), batch.data_ptr<int64_t>(), i.data_ptr<int64_t>(), j.data_ptr<int64_t>(),
        shifts.data_ptr<int64_t>(), n_pairs, n_atoms, n_structures, grad_positions.data_ptr<scalar_t>(),
        grad_cells.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {grad_positions, grad_cells};
}

}  // namespace

TORCH_LIBRARY_IMPL(fpcore, CUDA, m) {
  m.impl("pair_geometry", &pair_geometry_cuda);
  m.impl("pair_geometry_backward", &pair_geometry_backward_cuda);
}

}  // namespace fpcore
