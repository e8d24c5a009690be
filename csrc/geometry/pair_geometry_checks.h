#pragma once
// Validation of fpcore::pair_geometry(_backward) inputs, shared by the CPU and CUDA kernels.
#include "common/checks.h"

namespace fpcore {

inline void check_pair_inputs(const char* op, const at::Tensor& batch, const at::Tensor& i, const at::Tensor& j,
                              const at::Tensor& shifts) {
  check_index_tensor(batch, "batch", 1);
  check_index_tensor(i, "i", 1);
  check_index_tensor(j, "j", 1);
  check_index_tensor(shifts, "shifts", 2);
  TORCH_CHECK(j.size(0) == i.size(0) && shifts.size(0) == i.size(0) && shifts.size(1) == 3, op,
              ": 'i' (P,), 'j' (P,) and 'shifts' (P, 3) must describe the same pairs, got ", i.sizes(), ", ", j.sizes(),
              " and ", shifts.sizes());
  check_same_device(i, "i", j, "j");
  check_same_device(i, "i", shifts, "shifts");
  check_same_device(i, "i", batch, "batch");
}

inline void check_pair_geometry_inputs(const at::Tensor& positions, const at::Tensor& cells, const at::Tensor& batch,
                                       const at::Tensor& i, const at::Tensor& j, const at::Tensor& shifts) {
  constexpr const char* op = "fpcore.pair_geometry";
  check_float_tensor(positions, "positions", 2);
  TORCH_CHECK(positions.size(1) == 3, op, ": 'positions' must have shape (N, 3), got ", positions.sizes());
  check_float_tensor(cells, "cells", 3);
  TORCH_CHECK(cells.size(1) == 3 && cells.size(2) == 3, op, ": 'cells' must have shape (B, 3, 3), got ", cells.sizes());
  TORCH_CHECK(cells.scalar_type() == positions.scalar_type(), op, ": 'cells' (", cells.scalar_type(),
              ") and 'positions' (", positions.scalar_type(), ") must have the same dtype");
  check_pair_inputs(op, batch, i, j, shifts);
  TORCH_CHECK(batch.size(0) == positions.size(0), op, ": 'batch' must have one entry per atom (", positions.size(0),
              "), got ", batch.size(0));
  check_same_device(positions, "positions", cells, "cells");
  check_same_device(positions, "positions", i, "i");
}

inline void check_pair_geometry_backward_inputs(const c10::optional<at::Tensor>& grad_vectors,
                                                const c10::optional<at::Tensor>& grad_distances,
                                                const at::Tensor& vectors, const at::Tensor& distances,
                                                const at::Tensor& batch, const at::Tensor& i, const at::Tensor& j,
                                                const at::Tensor& shifts, int64_t n_atoms, int64_t n_structures) {
  constexpr const char* op = "fpcore.pair_geometry_backward";
  check_pair_inputs(op, batch, i, j, shifts);
  const int64_t n_pairs = i.size(0);
  check_float_tensor(vectors, "vectors", 2);
  TORCH_CHECK(vectors.size(0) == n_pairs && vectors.size(1) == 3, op, ": 'vectors' must have shape (", n_pairs,
              ", 3), got ", vectors.sizes());
  check_float_tensor(distances, "distances", 1);
  TORCH_CHECK(distances.size(0) == n_pairs && distances.scalar_type() == vectors.scalar_type(), op,
              ": 'distances' must be (", n_pairs, ",) ", vectors.scalar_type(), ", got ", distances.sizes(), " ",
              distances.scalar_type());
  if (grad_vectors.has_value() && grad_vectors->defined()) {
    TORCH_CHECK(grad_vectors->sizes() == vectors.sizes() && grad_vectors->scalar_type() == vectors.scalar_type(), op,
                ": 'grad_vectors' must match 'vectors' ", vectors.sizes(), " ", vectors.scalar_type(), ", got ",
                grad_vectors->sizes(), " ", grad_vectors->scalar_type());
    check_same_device(vectors, "vectors", *grad_vectors, "grad_vectors");
  }
  if (grad_distances.has_value() && grad_distances->defined()) {
    TORCH_CHECK(
        grad_distances->sizes() == distances.sizes() && grad_distances->scalar_type() == distances.scalar_type(), op,
        ": 'grad_distances' must match 'distances' ", distances.sizes(), " ", distances.scalar_type(), ", got ",
        grad_distances->sizes(), " ", grad_distances->scalar_type());
    check_same_device(distances, "distances", *grad_distances, "grad_distances");
  }
  TORCH_CHECK(batch.size(0) == n_atoms && n_structures >= 0, op, ": 'batch' must have n_atoms = ", n_atoms,
              " entries, got ", batch.size(0));
  check_same_device(vectors, "vectors", i, "i");
  check_same_device(vectors, "vectors", distances, "distances");
}

}  // namespace fpcore
