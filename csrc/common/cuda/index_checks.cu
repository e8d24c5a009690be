// CUDA side of common/index_checks.h: one grid-stride kernel finds the first offending entry of
// each kind with atomicMin, then one 40-byte copy brings the result (and the caller's extra_error
// flag) to the host.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>

#include "common/index_checks.h"

namespace fpcore {
namespace {

constexpr int kThreads = 256;

__device__ void record_first(int64_t* slot, int64_t index) {
  atomicMin(reinterpret_cast<unsigned long long*>(slot), static_cast<unsigned long long>(index));
}

__global__ void find_index_errors_kernel(const int64_t* __restrict__ ptr, const int64_t* __restrict__ j,
                                         const int64_t* __restrict__ rows, int64_t n_atoms, int64_t n_pairs,
                                         int64_t n_rows, int64_t* result) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (first == 0 && (ptr[0] != 0 || ptr[n_atoms] != n_pairs)) result[0] = 1;
  for (int64_t i = first; i < n_atoms; i += stride) {
    if (ptr[i] > ptr[i + 1]) record_first(result + 1, i);
    if (rows != nullptr && (rows[i] < 0 || rows[i] >= n_rows)) record_first(result + 3, i);
  }
  for (int64_t p = first; p < n_pairs; p += stride)
    if (j[p] < 0 || j[p] >= n_atoms) record_first(result + 2, p);
}

}  // namespace

IndexCheckResult find_index_errors_cuda(const at::Tensor& row_ptr, const at::Tensor& neighbors_j,
                                        const at::Tensor* rows, int64_t n_rows, const at::Tensor* extra_error) {
  const c10::cuda::CUDAGuard guard(row_ptr.device());
  const int64_t n_atoms = row_ptr.size(0) - 1, n_pairs = neighbors_j.size(0);
  // Filled on the device (no host-to-device copy): [bad_ends = 0, three "no error" slots, extra_error].
  at::Tensor result = at::full({5}, IndexCheckResult::kNoError, row_ptr.options());
  result.narrow(0, 0, 1).zero_();
  if (extra_error != nullptr)
    result.narrow(0, 4, 1).copy_(extra_error->reshape({1}));  // device to device: stream-ordered, no sync
  else
    result.narrow(0, 4, 1).zero_();
  const int64_t work = std::max<int64_t>(std::max(n_atoms, n_pairs), 1);
  const int blocks = static_cast<int>(std::min<int64_t>((work + kThreads - 1) / kThreads, 1024));
  find_index_errors_kernel<<<blocks, kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      row_ptr.data_ptr<int64_t>(), neighbors_j.data_ptr<int64_t>(),
      rows != nullptr ? rows->data_ptr<int64_t>() : nullptr, n_atoms, n_pairs, n_rows, result.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const at::Tensor host = result.cpu();  // the one sync of the check
  const int64_t* h = host.data_ptr<int64_t>();
  IndexCheckResult r;
  r.bad_ends = h[0];
  r.bad_row = h[1];
  r.bad_neighbor = h[2];
  r.bad_row_index = h[3];
  r.extra_error = h[4];
  return r;
}

}  // namespace fpcore
