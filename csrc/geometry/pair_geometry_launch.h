#pragma once
// Launcher of the pair-geometry CUDA kernel into preallocated outputs, shared with the CUDA
// neighbor list (which emits vectors and distances for its own pairs). Inputs must be contiguous,
// on one CUDA device, already validated; vectors (P, 3) and distances (P,) in the positions' dtype.
#include <ATen/ATen.h>

namespace fpcore {

void pair_geometry_cuda_into(const at::Tensor& positions, const at::Tensor& cells, const at::Tensor& batch,
                             const at::Tensor& i, const at::Tensor& j, const at::Tensor& shifts, at::Tensor& vectors,
                             at::Tensor& distances);

}  // namespace fpcore
