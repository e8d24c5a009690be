#pragma once
// Value checks of the neighbour structure every descriptor operator takes: row_ptr (N + 1) a CSR
// pointer from 0 to P that never decreases, every neighbors_j entry an atom index in [0, N), and
// optionally a per-atom table row index (GMP's numbers) in [0, n_rows). One implementation for
// the CPU and the CUDA kernels: on a GPU the checks run as one kernel followed by one small
// device-to-host copy (one sync per call), so a bad direct call raises fpcore's error instead of
// an illegal memory access that would poison the CUDA context. An operator's own device-side
// checks (a 0-dim bool tensor, `extra_error`) travel in the same copy, so they cost no further sync.
#include <ATen/ATen.h>

#include <cstdint>

namespace fpcore {

// First offending index per kind (kNoError: none), as computed by the CPU loop or the CUDA kernel.
struct IndexCheckResult {
  static constexpr int64_t kNoError = INT64_MAX;
  int64_t bad_ends = 0;              // 1 if row_ptr[0] != 0 or row_ptr[N] != P
  int64_t bad_row = kNoError;        // first i with row_ptr[i] > row_ptr[i + 1]
  int64_t bad_neighbor = kNoError;   // first p with neighbors_j[p] outside [0, N)
  int64_t bad_row_index = kNoError;  // first i with rows[i] outside [0, n_rows)
  int64_t extra_error = 0;           // the value of the caller's extra_error flag (0 without one)
};

#if defined(FPCORE_WITH_CUDA)
// csrc/common/cuda/index_checks.cu
IndexCheckResult find_index_errors_cuda(const at::Tensor& row_ptr, const at::Tensor& neighbors_j,
                                        const at::Tensor* rows, int64_t n_rows, const at::Tensor* extra_error);
#endif

inline IndexCheckResult find_index_errors_cpu(const at::Tensor& row_ptr, const at::Tensor& neighbors_j,
                                              const at::Tensor* rows, int64_t n_rows, const at::Tensor* extra_error) {
  IndexCheckResult r;
  r.extra_error = extra_error != nullptr && extra_error->item<bool>();
  const int64_t n_atoms = row_ptr.size(0) - 1, n_pairs = neighbors_j.size(0);
  const int64_t* ptr = row_ptr.data_ptr<int64_t>();
  r.bad_ends = ptr[0] != 0 || ptr[n_atoms] != n_pairs;
  for (int64_t i = 0; i < n_atoms && r.bad_row == r.kNoError; ++i)
    if (ptr[i] > ptr[i + 1]) r.bad_row = i;
  const int64_t* j = neighbors_j.data_ptr<int64_t>();
  for (int64_t p = 0; p < n_pairs && r.bad_neighbor == r.kNoError; ++p)
    if (j[p] < 0 || j[p] >= n_atoms) r.bad_neighbor = p;
  if (rows != nullptr) {
    const int64_t* s = rows->data_ptr<int64_t>();
    for (int64_t i = 0; i < n_atoms && r.bad_row_index == r.kNoError; ++i)
      if (s[i] < 0 || s[i] >= n_rows) r.bad_row_index = i;
  }
  return r;
}

// Raises "fpcore.<op>: ..." naming the argument, the entry and the expected range. Arguments must be
// contiguous int64 tensors on one device with shapes already checked; rows may be nullptr. Returns the
// value of extra_error (a 0-dim bool on the device of row_ptr, or nullptr: false), which the caller
// turns into its own message.
inline bool check_index_values(const char* op, const at::Tensor& row_ptr, const at::Tensor& neighbors_j,
                               const at::Tensor* rows = nullptr, const char* rows_name = nullptr, int64_t n_rows = 0,
                               const at::Tensor* extra_error = nullptr) {
  const int64_t n_atoms = row_ptr.size(0) - 1, n_pairs = neighbors_j.size(0);
  IndexCheckResult r;
#if defined(FPCORE_WITH_CUDA)
  if (row_ptr.is_cuda())
    r = find_index_errors_cuda(row_ptr, neighbors_j, rows, n_rows, extra_error);
  else
#endif
    r = find_index_errors_cpu(row_ptr, neighbors_j, rows, n_rows, extra_error);
  // Error paths only: reading the offending values costs a copy each, which is fine once.
  auto value = [](const at::Tensor& t, int64_t k) { return t[k].item<int64_t>(); };
  TORCH_CHECK(!r.bad_ends, op, ": 'row_ptr' must start at 0 and end at the number of pairs ", n_pairs, ", got ",
              value(row_ptr, 0), " .. ", value(row_ptr, n_atoms));
  TORCH_CHECK(r.bad_row == r.kNoError, op, ": 'row_ptr' must be non-decreasing (entry ", r.bad_row + 1, " = ",
              r.bad_row == r.kNoError ? 0 : value(row_ptr, r.bad_row + 1), " < entry ", r.bad_row, ")");
  TORCH_CHECK(r.bad_neighbor == r.kNoError, op, ": 'neighbors_j' entry ", r.bad_neighbor, " = ",
              r.bad_neighbor == r.kNoError ? 0 : value(neighbors_j, r.bad_neighbor), " is not an atom index in [0, ",
              n_atoms, ")");
  TORCH_CHECK(r.bad_row_index == r.kNoError, op, ": '", rows_name, "' entry ", r.bad_row_index, " = ",
              r.bad_row_index == r.kNoError ? 0 : value(*rows, r.bad_row_index), " is outside the table of ", n_rows,
              " rows");
  return r.extra_error != 0;
}

}  // namespace fpcore
