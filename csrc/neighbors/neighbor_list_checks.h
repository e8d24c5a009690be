#pragma once
// Validation of fpcore::neighbor_list inputs, shared by the CPU and CUDA kernels.
#include <cmath>

#include "common/checks.h"

namespace fpcore {

inline void check_neighbor_list_inputs(const at::Tensor& positions, const at::Tensor& cells, const at::Tensor& pbc,
                                       const at::Tensor& ptr, double cutoff) {
  check_float_tensor(positions, "positions", 2);
  TORCH_CHECK(positions.size(1) == 3, "fpcore.neighbor_list: 'positions' must have shape (N, 3), got ",
              positions.sizes());
  check_float_tensor(cells, "cells", 3);
  TORCH_CHECK(cells.size(1) == 3 && cells.size(2) == 3, "fpcore.neighbor_list: 'cells' must have shape (B, 3, 3), got ",
              cells.sizes());
  TORCH_CHECK(cells.scalar_type() == positions.scalar_type(), "fpcore.neighbor_list: 'cells' (", cells.scalar_type(),
              ") and 'positions' (", positions.scalar_type(), ") must have the same dtype");
  TORCH_CHECK(pbc.dim() == 2 && pbc.size(1) == 3 && pbc.size(0) == cells.size(0),
              "fpcore.neighbor_list: 'pbc' must have shape (B, 3) = (", cells.size(0), ", 3), got ", pbc.sizes());
  TORCH_CHECK(pbc.scalar_type() == at::kBool, "fpcore.neighbor_list: 'pbc' must be bool, got ", pbc.scalar_type());
  check_index_tensor(ptr, "ptr", 1);
  TORCH_CHECK(ptr.size(0) == cells.size(0) + 1, "fpcore.neighbor_list: 'ptr' must have B + 1 = ", cells.size(0) + 1,
              " entries, got ", ptr.size(0));
  check_same_device(positions, "positions", cells, "cells");
  check_same_device(positions, "positions", pbc, "pbc");
  check_same_device(positions, "positions", ptr, "ptr");
  TORCH_CHECK(std::isfinite(cutoff) && cutoff >= 0.0,
              "fpcore.neighbor_list: 'cutoff' must be a finite number >= 0, got ", cutoff);
}

// ptr must start at 0, end at N and never decrease. Reads the values, so call it on host data.
inline void check_ptr_values(const at::Tensor& ptr_cpu, int64_t n_atoms) {
  const int64_t* p = ptr_cpu.data_ptr<int64_t>();
  const int64_t n = ptr_cpu.size(0);
  TORCH_CHECK(p[0] == 0 && p[n - 1] == n_atoms, "fpcore.neighbor_list: 'ptr' must start at 0 and end at ",
              "the number of atoms ", n_atoms, ", got ", p[0], " and ", p[n - 1]);
  for (int64_t b = 0; b + 1 < n; ++b) {
    TORCH_CHECK(p[b + 1] >= p[b], "fpcore.neighbor_list: 'ptr' must be non-decreasing (structure ", b, " has ",
                p[b + 1] - p[b], " atoms)");
  }
}

}  // namespace fpcore
