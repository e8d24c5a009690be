// CUDA kernel of fpcore::neighbor_list: the same cell-list search as the CPU kernel (same grid,
// from neighbors/cell_grid.h, hence the same pair set), organised for the GPU:
//
//   setup_kernel   one block per structure: binning basis, wrapped positions, min/max of the
//                  non-periodic coordinates (block reduction), bin counts; validates ptr and
//                  finiteness on the device and records problems in a status word.
//   bin_kernel     one thread per atom: global bin index of the atom.
//   ATen           sort atoms by bin, bin start offsets by searchsorted (no host round trip).
//   search_kernel  one thread per atom (in bin order, so neighbouring threads walk the same
//                  bins): count pass, exclusive scan (ATen cumsum), then fill pass writing each
//                  atom's pairs at its offset, so pairs are grouped by ascending i.
//
// Host-device synchronisation: exactly one in the normal path, copying {number of pairs, status
// flags} to the host to size the output (unavoidable: the output shape depends on the data).
// Input errors found on the device (bad ptr, NaN/inf, singular cell, too many images) are
// reported after that same copy; only then is a second copy made, to name the failing structure.
// The trivial path (no atoms or zero cutoff) validates ptr and finiteness with one copy.
#include <ATen/ATen.h>
// The c10 stream header rather than ATen/cuda/CUDAContext.h (same current stream): the latter
// pulls in cuBLAS/cuSPARSE headers that minimal CUDA toolkits lack.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cuda_runtime_api.h>

#include <cstdint>

#include "common/checks.h"
#include "neighbors/cell_grid.h"
#include "geometry/pair_geometry_launch.h"
#include "neighbors/neighbor_list_checks.h"
#include "neighbors/pair_memory.h"

namespace fpcore {
namespace {

using grid::Grid;

// Bits of the batch-wide status word; structure-level codes also go to a per-structure array.
constexpr int32_t kBadPtr = 3;     // per-structure status: atom range outside [0, N] or reversed
constexpr int32_t kNonFinite = 4;  // per-structure status: NaN or inf in positions or cell
constexpr int kSetupThreads = 256;
constexpr int kAtomThreads = 128;

__device__ __forceinline__ void flag(int32_t* flags, int32_t* status, int64_t s, int32_t code) {
  status[s] = code;
  atomicOr(flags, 1 << code);
}

template <typename scalar_t>
__global__ void setup_kernel(const scalar_t* __restrict__ positions, const scalar_t* __restrict__ cells,
                             const bool* __restrict__ pbc, const int64_t* __restrict__ ptr, int64_t n_structures,
                             int64_t n_atoms, double cutoff, Grid* __restrict__ grids,
                             int64_t* __restrict__ bins_per_structure, double* __restrict__ wrapped,
                             int64_t* __restrict__ wrap_shift, int64_t* __restrict__ structure_of,
                             int32_t* __restrict__ status, int32_t* __restrict__ flags) {
  const int64_t s = blockIdx.x;
  const int tid = threadIdx.x;
  __shared__ Grid g;
  __shared__ double lo[3][kSetupThreads];
  __shared__ double hi[3][kSetupThreads];
  __shared__ int32_t code;  // status of this structure, decided by thread 0 or any atom
  __shared__ int64_t first, last;

  if (tid == 0) {
    code = grid::kOk;
    first = ptr[s];
    last = ptr[s + 1];
    // ptr must start at 0, end at N and never decrease; each block checks its own range and the
    // ends, which together cover the whole rule.
    bool valid = first >= 0 && first <= last && last <= n_atoms;
    if (s == 0 && first != 0) valid = false;
    if (s == n_structures - 1 && last != n_atoms) valid = false;
    double c[3][3];
    bool p[3];
    for (int k = 0; k < 3; ++k) {
      p[k] = pbc[3 * s + k];
      for (int d = 0; d < 3; ++d) {
        c[k][d] = static_cast<double>(cells[9 * s + 3 * k + d]);
        if (!isfinite(c[k][d])) code = kNonFinite;
      }
    }
    if (!valid) code = kBadPtr;
    if (code == grid::kOk && first < last) code = grid::make_basis(c, p, g);
    if (code != grid::kOk || first == last) {
      // Nothing to search here (empty structure, or an error reported later): one inert bin.
      for (int k = 0; k < 3; ++k) g.nbins[k] = 1, g.reach[k] = 0, g.periodic[k] = p[k];
      first = last = 0;
    }
  }
  __syncthreads();

  double my_lo[3] = {INFINITY, INFINITY, INFINITY}, my_hi[3] = {-INFINITY, -INFINITY, -INFINITY};
  bool finite = true;
  for (int64_t a = first + tid; a < last; a += blockDim.x) {
    structure_of[a] = s;
    double r[3];
    for (int d = 0; d < 3; ++d) {
      r[d] = static_cast<double>(positions[3 * a + d]);
      finite = finite && isfinite(r[d]);
    }
    int64_t n[3];
    for (int k = 0; k < 3; ++k) {
      const double fl = g.periodic[k] ? floor(grid::fractional(g, r, k)) : 0.0;
      // Guards the float->int conversion for non-finite input (reported as an error anyway).
      n[k] = isfinite(fl) ? static_cast<int64_t>(fl) : 0;
      wrap_shift[3 * a + k] = n[k];
    }
    double w[3];
    for (int d = 0; d < 3; ++d) {
      // Same operations as the CPU kernel, without FMA contraction, so both wrap identically.
      w[d] = r[d];
      for (int k = 0; k < 3; ++k)
        w[d] = __dsub_rn(w[d], __dmul_rn(static_cast<double>(n[k]), static_cast<double>(cells[9 * s + 3 * k + d])));
      wrapped[3 * a + d] = w[d];
    }
    // Extent of the wrapped positions, the values bin_kernel bins (as in the CPU kernel).
    for (int k = 0; k < 3; ++k) {
      if (!g.periodic[k]) {
        const double f = grid::fractional(g, w, k);
        my_lo[k] = fmin(my_lo[k], f);
        my_hi[k] = fmax(my_hi[k], f);
      }
    }
  }
  if (!finite) code = kNonFinite;  // benign race: every writer writes the same value
  for (int k = 0; k < 3; ++k) lo[k][tid] = my_lo[k], hi[k][tid] = my_hi[k];
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (tid < stride) {
      for (int k = 0; k < 3; ++k) {
        lo[k][tid] = fmin(lo[k][tid], lo[k][tid + stride]);
        hi[k][tid] = fmax(hi[k][tid], hi[k][tid + stride]);
      }
    }
    __syncthreads();
  }

  if (tid == 0) {
    if (code == grid::kOk && first < last) {
      for (int k = 0; k < 3; ++k) {
        if (!g.periodic[k]) {
          g.origin[k] = lo[k][0];
          g.extent[k] = fmax(hi[k][0] - lo[k][0], 1e-12);
        }
      }
      code = grid::make_bins(g, cutoff, 2 * (last - first));
    }
    if (code != grid::kOk) {
      for (int k = 0; k < 3; ++k) g.nbins[k] = 1, g.reach[k] = 0;
      flag(flags, status, s, code);
    } else {
      status[s] = grid::kOk;
    }
    grids[s] = g;
    bins_per_structure[s] = g.nbins[0] * g.nbins[1] * g.nbins[2];
  }
}

__global__ void bin_kernel(const Grid* __restrict__ grids, const int64_t* __restrict__ first_bin,
                           const double* __restrict__ wrapped, const int64_t* __restrict__ structure_of,
                           const int32_t* __restrict__ flags, int64_t n_atoms, int64_t* __restrict__ atom_bin,
                           int64_t* __restrict__ key) {
  const int64_t a = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (a >= n_atoms) return;
  if (*flags != 0) {  // invalid input: bin arrays may be mis-sized, keep every index at 0
    key[a] = 0;
    for (int k = 0; k < 3; ++k) atom_bin[3 * a + k] = 0;
    return;
  }
  const Grid& g = grids[structure_of[a]];
  const double* w = &wrapped[3 * a];
  int64_t b[3];
  for (int k = 0; k < 3; ++k) {
    double f = grid::fractional(g, w, k);
    if (!g.periodic[k]) f -= g.origin[k];
    b[k] = grid::bin_of(g, f, k);
    atom_bin[3 * a + k] = b[k];
  }
  key[a] = first_bin[structure_of[a]] + (b[0] * g.nbins[1] + b[1]) * g.nbins[2] + b[2];
}

// Visits every neighbour of atom `a` (same loop as the CPU kernel's search_atom). kFill = false
// counts them into count[a]; kFill = true writes them from offset[a] on.
template <bool kFill>
__global__ void search_kernel(const Grid* __restrict__ grids, const double* __restrict__ cells,
                              const int64_t* __restrict__ first_bin, const int64_t* __restrict__ bin_start,
                              const int64_t* __restrict__ order, const double* __restrict__ sorted_wrapped,
                              const int64_t* __restrict__ sorted_shift, const int64_t* __restrict__ atom_bin,
                              const double* __restrict__ wrapped, const int64_t* __restrict__ wrap_shift,
                              const int64_t* __restrict__ structure_of, const int32_t* __restrict__ flags,
                              int64_t n_atoms, double cutoff_sq, int64_t* __restrict__ count,
                              const int64_t* __restrict__ offset, int64_t* __restrict__ out_i,
                              int64_t* __restrict__ out_j, int64_t* __restrict__ out_shift) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= n_atoms) return;
  const int64_t a = order[t];  // bin order: threads of a warp search the same bins
  if (*flags != 0) {
    if (!kFill) count[a] = 0;
    return;
  }
  const int64_t s = structure_of[a];
  const Grid& g = grids[s];
  const double* cell = &cells[9 * s];
  const int64_t* home = &atom_bin[3 * a];
  const double ri[3] = {wrapped[3 * a], wrapped[3 * a + 1], wrapped[3 * a + 2]};
  const int64_t ni[3] = {wrap_shift[3 * a], wrap_shift[3 * a + 1], wrap_shift[3 * a + 2]};
  int64_t lo[3], hi[3];
  for (int k = 0; k < 3; ++k) {
    if (g.periodic[k]) {
      lo[k] = home[k] - g.reach[k];
      hi[k] = home[k] + g.reach[k];
    } else {
      lo[k] = max(int64_t(0), home[k] - g.reach[k]);
      hi[k] = min(g.nbins[k] - 1, home[k] + g.reach[k]);
    }
  }
  int64_t n_found = 0;
  int64_t write = kFill ? offset[a] : 0;
  for (int64_t b0 = lo[0]; b0 <= hi[0]; ++b0) {
    const int64_t s0 = grid::floor_div(b0, g.nbins[0]);
    const int64_t c0 = b0 - s0 * g.nbins[0];
    for (int64_t b1 = lo[1]; b1 <= hi[1]; ++b1) {
      const int64_t s1 = grid::floor_div(b1, g.nbins[1]);
      const int64_t c1 = b1 - s1 * g.nbins[1];
      for (int64_t b2 = lo[2]; b2 <= hi[2]; ++b2) {
        const int64_t s2 = grid::floor_div(b2, g.nbins[2]);
        const int64_t c2 = b2 - s2 * g.nbins[2];
        // Rounded exactly like the CPU kernel (no FMA), so d < cutoff decides identically.
        double tr[3];
        for (int d = 0; d < 3; ++d) {
          tr[d] = __dsub_rn(__dadd_rn(__dadd_rn(__dmul_rn(static_cast<double>(s0), cell[d]),
                                                __dmul_rn(static_cast<double>(s1), cell[3 + d])),
                                      __dmul_rn(static_cast<double>(s2), cell[6 + d])),
                            ri[d]);
        }
        const bool zero_shift = (s0 == 0 && s1 == 0 && s2 == 0);
        const int64_t bin = first_bin[s] + (c0 * g.nbins[1] + c1) * g.nbins[2] + c2;
        const int64_t end = bin_start[bin + 1];
        for (int64_t q = bin_start[bin]; q < end; ++q) {
          const int64_t b = order[q];
          if (zero_shift && b == a) continue;
          const double dx = __dadd_rn(sorted_wrapped[3 * q], tr[0]);
          const double dy = __dadd_rn(sorted_wrapped[3 * q + 1], tr[1]);
          const double dz = __dadd_rn(sorted_wrapped[3 * q + 2], tr[2]);
          if (__dadd_rn(__dadd_rn(__dmul_rn(dx, dx), __dmul_rn(dy, dy)), __dmul_rn(dz, dz)) < cutoff_sq) {
            if (kFill) {
              out_i[write] = a;
              out_j[write] = b;
              out_shift[3 * write] = s0 + ni[0] - sorted_shift[3 * q];
              out_shift[3 * write + 1] = s1 + ni[1] - sorted_shift[3 * q + 1];
              out_shift[3 * write + 2] = s2 + ni[2] - sorted_shift[3 * q + 2];
              ++write;
            } else {
              ++n_found;
            }
          }
        }
      }
    }
  }
  if (!kFill) count[a] = n_found;
}

int64_t blocks_for(int64_t n, int threads) {
  return (n + threads - 1) / threads;
}

void throw_input_error(int32_t flags, const at::Tensor& status, double cutoff) {
  // Error path only: a second device->host copy to name the failing structure.
  const auto host = status.cpu();
  const int32_t* st = host.data_ptr<int32_t>();
  const int64_t n = host.size(0);
  auto first_with = [&](int32_t code) {
    for (int64_t s = 0; s < n; ++s)
      if (st[s] == code) return s;
    return int64_t(-1);
  };
  TORCH_CHECK(!(flags & (1 << kBadPtr)),
              "fpcore.neighbor_list: 'ptr' must start at 0, end at the number of "
              "atoms and be non-decreasing (problem at structure ",
              first_with(kBadPtr), ")");
  TORCH_CHECK(!(flags & (1 << kNonFinite)),
              "fpcore.neighbor_list: positions or cells contain NaN or "
              "infinite values (structure ",
              first_with(kNonFinite), ")");
  TORCH_CHECK(!(flags & (1 << grid::kSingularCell)), "fpcore.neighbor_list: the cell of structure ",
              first_with(grid::kSingularCell),
              " is singular in a periodic direction (zero or linearly dependent cell vectors); "
              "give a valid cell or set pbc=False in that direction");
  TORCH_CHECK(!(flags & (1 << grid::kTooManyImages)), "fpcore.neighbor_list: the cutoff ", cutoff,
              " is too large for the cell of structure ", first_with(grid::kTooManyImages),
              ": it would need more than 1e8 periodic images per atom");
  TORCH_CHECK(false, "fpcore.neighbor_list: invalid input (status flags ", flags, ")");
}

// Memory guard once the exact pair count is known (error path: copies the counts to name the
// structure with the most pairs).
void check_counted_pair_memory(int64_t n_pairs, double bytes_each, const at::Tensor& end_offset, const at::Tensor& ptr,
                               double cutoff) {
  size_t free_bytes = 0, total_bytes = 0;
  C10_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  const double limit = pair_memory_limit_bytes(static_cast<double>(total_bytes));
  if (static_cast<double>(n_pairs) * bytes_each <= limit) return;
  const auto ends = at::cat({at::zeros({1}, end_offset.options()), end_offset}).cpu();
  const auto p = ptr.cpu();
  const int64_t* e = ends.data_ptr<int64_t>();
  const int64_t* o = p.data_ptr<int64_t>();
  int64_t largest = 0;
  for (int64_t s = 0; s + 1 < p.size(0); ++s)
    if (e[o[s + 1]] - e[o[s]] > e[o[largest + 1]] - e[o[largest]]) largest = s;
  check_pair_memory(static_cast<double>(n_pairs), bytes_each, limit, largest, o[largest + 1] - o[largest], cutoff,
                    "exactly");
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> neighbor_list_cuda(
    const at::Tensor& positions_in, const at::Tensor& cells_in, const at::Tensor& pbc_in, const at::Tensor& ptr_in,
    double cutoff, bool geometry) {
  check_neighbor_list_inputs(positions_in, cells_in, pbc_in, ptr_in, cutoff);
  const c10::cuda::OptionalCUDAGuard guard(positions_in.device());
  const auto positions = positions_in.contiguous();
  const auto cells = cells_in.contiguous();
  const auto pbc = pbc_in.contiguous();
  const auto ptr = ptr_in.contiguous();
  const int64_t n_atoms = positions.size(0);
  const int64_t n_structures = cells.size(0);
  auto long_opts = positions.options().dtype(at::kLong);

  if (n_atoms == 0 || cutoff <= 0.0 || n_structures == 0) {
    // Nothing to search: validate like the CPU kernel (one small copy, then return).
    check_ptr_values(ptr.cpu(), n_atoms);
    TORCH_CHECK(at::isfinite(positions).all().item<bool>() && at::isfinite(cells).all().item<bool>(),
                "fpcore.neighbor_list: positions or cells contain NaN or infinite values");
    return {at::empty({0}, long_opts), at::empty({0}, long_opts), at::empty({0, 3}, long_opts),
            at::empty({0, 3}, positions.options()), at::empty({0}, positions.options())};
  }

  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  auto double_opts = positions.options().dtype(at::kDouble);
  auto int_opts = positions.options().dtype(at::kInt);
  auto grids_buf = at::empty({n_structures * static_cast<int64_t>(sizeof(Grid))}, positions.options().dtype(at::kByte));
  Grid* grids = reinterpret_cast<Grid*>(grids_buf.data_ptr<uint8_t>());
  auto bins_per_structure = at::empty({n_structures}, long_opts);
  auto wrapped = at::empty({n_atoms, 3}, double_opts);
  auto wrap_shift = at::empty({n_atoms, 3}, long_opts);
  auto structure_of = at::zeros({n_atoms}, long_opts);
  auto status = at::zeros({n_structures}, int_opts);
  auto flags = at::zeros({1}, int_opts);

  AT_DISPATCH_FLOATING_TYPES(positions.scalar_type(), "fpcore_neighbor_list_cuda_setup", [&] {
    setup_kernel<scalar_t><<<n_structures, kSetupThreads, 0, stream>>>(
        positions.data_ptr<scalar_t>(), cells.data_ptr<scalar_t>(), pbc.data_ptr<bool>(), ptr.data_ptr<int64_t>(),
        n_structures, n_atoms, cutoff, grids, bins_per_structure.data_ptr<int64_t>(), wrapped.data_ptr<double>(),
        wrap_shift.data_ptr<int64_t>(), structure_of.data_ptr<int64_t>(), status.data_ptr<int32_t>(),
        flags.data_ptr<int32_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });

  // make_bins caps each structure at max(1, 2 n_s) bins, so with a valid ptr the batch has at most
  // 2N + B bins: the bin arrays are sized by this bound instead of copying the exact count back.
  const int64_t max_total_bins = 2 * n_atoms + n_structures;
  const auto first_bin = at::cumsum(bins_per_structure, 0) - bins_per_structure;
  auto atom_bin = at::empty({n_atoms, 3}, long_opts);
  auto key = at::empty({n_atoms}, long_opts);
  bin_kernel<<<blocks_for(n_atoms, kAtomThreads), kAtomThreads, 0, stream>>>(
      grids, first_bin.data_ptr<int64_t>(), wrapped.data_ptr<double>(), structure_of.data_ptr<int64_t>(),
      flags.data_ptr<int32_t>(), n_atoms, atom_bin.data_ptr<int64_t>(), key.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();

  const auto sorted = at::sort(key, /*stable=*/true, /*dim=*/0, /*descending=*/false);
  const auto& sorted_key = std::get<0>(sorted);
  const auto order = std::get<1>(sorted).contiguous();
  const auto bin_start = at::searchsorted(sorted_key, at::arange(max_total_bins + 1, long_opts)).contiguous();
  const auto sorted_wrapped = wrapped.index_select(0, order).contiguous();
  const auto sorted_shift = wrap_shift.index_select(0, order).contiguous();
  const auto cells_double = cells.to(at::kDouble).contiguous();
  const double cutoff_sq = cutoff * cutoff;

  auto count = at::empty({n_atoms}, long_opts);
  search_kernel<false><<<blocks_for(n_atoms, kAtomThreads), kAtomThreads, 0, stream>>>(
      grids, cells_double.data_ptr<double>(), first_bin.data_ptr<int64_t>(), bin_start.data_ptr<int64_t>(),
      order.data_ptr<int64_t>(), sorted_wrapped.data_ptr<double>(), sorted_shift.data_ptr<int64_t>(),
      atom_bin.data_ptr<int64_t>(), wrapped.data_ptr<double>(), wrap_shift.data_ptr<int64_t>(),
      structure_of.data_ptr<int64_t>(), flags.data_ptr<int32_t>(), n_atoms, cutoff_sq, count.data_ptr<int64_t>(),
      nullptr, nullptr, nullptr, nullptr);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const auto end_offset = at::cumsum(count, 0);
  const auto offset = end_offset - count;

  // The one synchronisation: number of pairs and the status word, in a single copy.
  const auto summary = at::cat({end_offset.narrow(0, n_atoms - 1, 1), flags.to(at::kLong)}).cpu();
  const int64_t n_pairs = summary.data_ptr<int64_t>()[0];
  const int32_t flag_bits = static_cast<int32_t>(summary.data_ptr<int64_t>()[1]);
  if (flag_bits != 0) throw_input_error(flag_bits, status, cutoff);
  check_counted_pair_memory(n_pairs, bytes_per_pair(geometry, positions.scalar_type()), end_offset, ptr, cutoff);

  auto i = at::empty({n_pairs}, long_opts);
  auto j = at::empty({n_pairs}, long_opts);
  auto shifts = at::empty({n_pairs, 3}, long_opts);
  if (n_pairs > 0) {
    search_kernel<true><<<blocks_for(n_atoms, kAtomThreads), kAtomThreads, 0, stream>>>(
        grids, cells_double.data_ptr<double>(), first_bin.data_ptr<int64_t>(), bin_start.data_ptr<int64_t>(),
        order.data_ptr<int64_t>(), sorted_wrapped.data_ptr<double>(), sorted_shift.data_ptr<int64_t>(),
        atom_bin.data_ptr<int64_t>(), wrapped.data_ptr<double>(), wrap_shift.data_ptr<int64_t>(),
        structure_of.data_ptr<int64_t>(), flags.data_ptr<int32_t>(), n_atoms, cutoff_sq, nullptr,
        offset.data_ptr<int64_t>(), i.data_ptr<int64_t>(), j.data_ptr<int64_t>(), shifts.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  auto vectors = at::empty({geometry ? n_pairs : 0, 3}, positions.options());
  auto distances = at::empty({geometry ? n_pairs : 0}, positions.options());
  if (geometry) pair_geometry_cuda_into(positions, cells, structure_of, i, j, shifts, vectors, distances);
  return {i, j, shifts, vectors, distances};
}

}  // namespace

TORCH_LIBRARY_IMPL(fpcore, CUDA, m) {
  m.impl("neighbor_list", &neighbor_list_cuda);
}

}  // namespace fpcore
