#pragma once
// Per-pair maths of fpcore::pair_geometry, shared by its CPU and CUDA kernels and by the
// neighbor-list kernels (which emit the same vectors and distances while they fill the pairs), so
// the no-grad and differentiable paths give bit-identical geometry on one device.
#include <cmath>
#include <cstdint>

#include "common/host_device.h"

namespace fpcore {
namespace geometry {

// out = pos_j - pos_i + shift @ cell (cell rows are the cell vectors, row-major 3x3).
template <typename scalar_t>
FPCORE_HD void pair_vector(const scalar_t* pos_i, const scalar_t* pos_j, const scalar_t* cell, const int64_t* shift,
                           scalar_t* out) {
  const scalar_t s0 = static_cast<scalar_t>(shift[0]);
  const scalar_t s1 = static_cast<scalar_t>(shift[1]);
  const scalar_t s2 = static_cast<scalar_t>(shift[2]);
  for (int d = 0; d < 3; ++d) {
    out[d] = (pos_j[d] - pos_i[d]) + (s0 * cell[d] + s1 * cell[3 + d] + s2 * cell[6 + d]);
  }
}

template <typename scalar_t>
FPCORE_HD scalar_t pair_distance(const scalar_t* v) {
  return sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
}

// Total gradient with respect to the pair vector: g = grad_v + grad_d * v / d. grad_v may be null
// (no gradient reached the vectors); the distance term is dropped at d = 0, the subgradient torch
// uses for vector_norm there.
template <typename scalar_t>
FPCORE_HD void vector_gradient(const scalar_t* grad_v, scalar_t grad_d, const scalar_t* v, scalar_t d, scalar_t* g) {
  const scalar_t scale = d > scalar_t(0) ? grad_d / d : scalar_t(0);
  for (int c = 0; c < 3; ++c) g[c] = (grad_v ? grad_v[c] : scalar_t(0)) + scale * v[c];
}

}  // namespace geometry
}  // namespace fpcore
