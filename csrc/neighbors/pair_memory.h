#pragma once
// Memory guard of the neighbor list: the pair list is refused, with the estimate and the limit,
// before it is allocated, instead of failing in the allocator (std::bad_alloc) or swapping.
//
// Limit: FPCORE_MAX_PAIR_MEMORY_GB (GB = 1e9 bytes) when set, else half of the memory the caller
// names (physical RAM for the CPU kernel, device memory for the CUDA kernel).
#include <ATen/ATen.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <string>

namespace fpcore {

constexpr const char* kPairMemoryEnv = "FPCORE_MAX_PAIR_MEMORY_GB";

inline double physical_memory_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGESIZE);
  return pages > 0 && page_size > 0 ? static_cast<double>(pages) * static_cast<double>(page_size) : 16e9;
}

inline double pair_memory_limit_bytes(double available_bytes) {
  const char* text = std::getenv(kPairMemoryEnv);
  if (text == nullptr || *text == '\0') return 0.5 * available_bytes;
  char* end = nullptr;
  errno = 0;
  const double gb = std::strtod(text, &end);
  TORCH_CHECK(errno == 0 && end != text && *end == '\0' && std::isfinite(gb) && gb > 0.0, "fpcore: ", kPairMemoryEnv,
              " must be a positive number of gigabytes, got '", text, "'");
  return gb * 1e9;
}

// Bytes of the neighbor-list outputs per pair: i, j, shifts (5 x int64), plus vectors and
// distances (4 values) when the geometry is returned.
inline double bytes_per_pair(bool geometry, at::ScalarType dtype) {
  return 40.0 + (geometry ? 4.0 * static_cast<double>(c10::elementSize(dtype)) : 0.0);
}

// Throws when n_pairs (estimated or counted) pairs exceed the limit. `largest_structure` is the
// structure that contributes most, `kind` says whether the number is an estimate or exact.
inline void check_pair_memory(double n_pairs, double bytes_each, double limit_bytes, int64_t largest_structure,
                              int64_t largest_atoms, double cutoff, const char* kind) {
  const double bytes = n_pairs * bytes_each;
  if (bytes <= limit_bytes) return;
  TORCH_CHECK(false, "fpcore.neighbor_list: the pair list would need ", kind, " ", n_pairs, " pairs (", bytes / 1e9,
              " GB), more than the limit of ", limit_bytes / 1e9, " GB; most come from structure ", largest_structure,
              " (", largest_atoms, " atoms, cutoff ", cutoff,
              " A). Lower the cutoff, split the batch, or raise the limit with ", kPairMemoryEnv);
}

}  // namespace fpcore
