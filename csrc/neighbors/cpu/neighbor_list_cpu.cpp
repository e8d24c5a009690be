// CPU kernel of fpcore::neighbor_list: a cell-list search, linear in the number of atoms and
// pairs, parallel over structures (set-up) and over chunks of atoms (count, then fill).
#include <ATen/Parallel.h>
#include <torch/library.h>
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "common/checks.h"
#include "neighbors/cell_grid.h"
#include "geometry/pair_geometry_math.h"
#include "neighbors/neighbor_list_checks.h"
#include "neighbors/pair_memory.h"

namespace fpcore {
namespace {

using grid::Grid;

// Cutoff-thick bins: half-cutoff bins (with pruning) test fewer distances but were slower on
// large systems in benchmarks/bench_neighbors.py (more bin overhead, worse locality).
constexpr double kBinsPerCutoff = 1.0;
constexpr int64_t kMinAtomsForThreads = 2048;

// Per-structure search state: the grid plus atoms sorted by bin with their wrapped positions.
struct BatchGrid {
  std::vector<Grid> grids;             // (B)
  std::vector<int64_t> bin_start;      // (total bins + 1): CSR over atoms sorted by bin
  std::vector<int64_t> sorted_atom;    // (N): atom index in bin order
  std::vector<double> sorted_wrapped;  // (N, 3): wrapped positions in bin order (contiguous scans)
  std::vector<int64_t> sorted_shift;   // (N, 3): wrap shifts in bin order
  std::vector<double> wrapped;         // (N, 3): positions wrapped into the cell, atom order
  std::vector<int64_t> wrap_shift;     // (N, 3): n_i with wrapped = positions - n_i @ cell
  std::vector<int64_t> atom_bin;       // (N, 3): bin coordinates of each atom
  std::vector<double> frac;            // (N, 3): basis coordinates used for binning (origin-shifted)
  std::vector<int64_t> structure_of;   // (N)
};

template <typename scalar_t>
void build_grids(const at::Tensor& positions, const at::Tensor& cells, const at::Tensor& pbc, const at::Tensor& ptr,
                 double cutoff, BatchGrid& out) {
  const int64_t n_structures = cells.size(0);
  const int64_t n_atoms = positions.size(0);
  auto pos = positions.accessor<scalar_t, 2>();
  auto cell = cells.accessor<scalar_t, 3>();
  auto periodic = pbc.accessor<bool, 2>();
  auto offsets = ptr.accessor<int64_t, 1>();

  out.grids.resize(n_structures);
  out.wrapped.resize(3 * n_atoms);
  out.wrap_shift.resize(3 * n_atoms);
  out.atom_bin.resize(3 * n_atoms);
  out.frac.resize(3 * n_atoms);
  out.structure_of.resize(n_atoms);
  std::vector<int32_t> status(n_structures, grid::kOk);

  // Threads only pay off with enough atoms per thread; below that the fork/join (and, on a busy
  // machine, waiting for descheduled threads) costs more than the work.
  const int64_t grain = n_atoms >= kMinAtomsForThreads ? 1 : n_structures;
  at::parallel_for(0, n_structures, grain, [&](int64_t begin, int64_t end) {
    for (int64_t s = begin; s < end; ++s) {
      Grid& g = out.grids[s];
      double c[3][3];
      bool p[3];
      for (int k = 0; k < 3; ++k) {
        p[k] = periodic[s][k];
        for (int d = 0; d < 3; ++d) c[k][d] = static_cast<double>(cell[s][k][d]);
      }
      const int64_t first = offsets[s], last = offsets[s + 1];
      if (first == last) {  // empty structure: nothing to search, the cell is never used
        for (int k = 0; k < 3; ++k) g.nbins[k] = 1, g.reach[k] = 0, g.periodic[k] = p[k];
        continue;
      }
      status[s] = grid::make_basis(c, p, g);
      if (status[s] != grid::kOk) continue;
      double lo[3] = {INFINITY, INFINITY, INFINITY}, hi[3] = {-INFINITY, -INFINITY, -INFINITY};
      for (int64_t a = first; a < last; ++a) {
        out.structure_of[a] = s;
        double r[3] = {static_cast<double>(pos[a][0]), static_cast<double>(pos[a][1]), static_cast<double>(pos[a][2])};
        for (int k = 0; k < 3; ++k) {
          double f = grid::fractional(g, r, k);
          out.wrap_shift[3 * a + k] = g.periodic[k] ? static_cast<int64_t>(std::floor(f)) : 0;
        }
        for (int d = 0; d < 3; ++d) {
          double w = r[d];
          for (int k = 0; k < 3; ++k) w -= static_cast<double>(out.wrap_shift[3 * a + k]) * c[k][d];
          out.wrapped[3 * a + d] = w;
        }
        // The extent is measured on the wrapped positions, exactly the values binned below, so
        // every atom lies inside its bin's interval (bin pruning relies on it).
        for (int k = 0; k < 3; ++k) {
          if (!g.periodic[k]) {
            const double f = grid::fractional(g, &out.wrapped[3 * a], k);
            lo[k] = std::min(lo[k], f);
            hi[k] = std::max(hi[k], f);
          }
        }
      }
      for (int k = 0; k < 3; ++k) {
        if (!g.periodic[k]) {
          g.origin[k] = lo[k];
          g.extent[k] = std::max(hi[k] - lo[k], 1e-12);
        }
      }
      status[s] = grid::make_bins(g, cutoff, 2 * (last - first), kBinsPerCutoff);
      if (status[s] != grid::kOk) continue;
      for (int64_t a = first; a < last; ++a) {
        const double* w = &out.wrapped[3 * a];
        for (int k = 0; k < 3; ++k) {
          double f = grid::fractional(g, w, k);
          if (g.periodic[k]) {
            // Wrapped atoms sit in [0, 1) up to rounding; clamp inside bin_of.
          } else {
            f -= g.origin[k];
          }
          out.frac[3 * a + k] = f;
          out.atom_bin[3 * a + k] = grid::bin_of(g, f, k);
        }
      }
    }
  });
  for (int64_t s = 0; s < n_structures; ++s) {
    TORCH_CHECK(status[s] != grid::kSingularCell, "fpcore.neighbor_list: the cell of structure ", s,
                " is singular in a periodic direction (zero or linearly dependent cell vectors); "
                "give a valid cell or set pbc=False in that direction");
    TORCH_CHECK(status[s] != grid::kTooManyImages, "fpcore.neighbor_list: the cutoff ", cutoff,
                " is too large for the cell of structure ", s,
                ": it would need more than 1e8 periodic images per atom");
  }

  // Counting sort of atoms into the batch-wide bin array.
  int64_t total_bins = 0;
  for (int64_t s = 0; s < n_structures; ++s) {
    Grid& g = out.grids[s];
    g.first_bin = total_bins;
    total_bins += g.nbins[0] * g.nbins[1] * g.nbins[2];
  }
  std::vector<int64_t> global_bin(n_atoms);
  out.bin_start.assign(total_bins + 1, 0);
  for (int64_t a = 0; a < n_atoms; ++a) {
    const Grid& g = out.grids[out.structure_of[a]];
    const int64_t* b = &out.atom_bin[3 * a];
    global_bin[a] = g.first_bin + (b[0] * g.nbins[1] + b[1]) * g.nbins[2] + b[2];
    out.bin_start[global_bin[a] + 1] += 1;
  }
  for (int64_t b = 0; b < total_bins; ++b) out.bin_start[b + 1] += out.bin_start[b];
  out.sorted_atom.resize(n_atoms);
  std::vector<int64_t> fill(out.bin_start.begin(), out.bin_start.end() - 1);
  for (int64_t a = 0; a < n_atoms; ++a) out.sorted_atom[fill[global_bin[a]]++] = a;
  out.sorted_wrapped.resize(3 * n_atoms);
  out.sorted_shift.resize(3 * n_atoms);
  for (int64_t q = 0; q < n_atoms; ++q) {
    const int64_t a = out.sorted_atom[q];
    for (int k = 0; k < 3; ++k) {
      out.sorted_wrapped[3 * q + k] = out.wrapped[3 * a + k];
      out.sorted_shift[3 * q + k] = out.wrap_shift[3 * a + k];
    }
  }
}

// Where the fill pass writes: the output rows of one atom, from its offset on. `pos` and `cell`
// are the caller's positions and cells (in their dtype), for the vectors and distances, which are
// computed exactly as fpcore::pair_geometry computes them (geometry/pair_geometry_math.h).
template <typename scalar_t>
struct PairWriter {
  int64_t* i;
  int64_t* j;
  int64_t* shift;
  scalar_t* vectors;  // null when the geometry is not requested
  scalar_t* distances;
  const scalar_t* pos;
  const scalar_t* cell;
};

// Visits every neighbor of atom `a` and returns how many it has; with kFill it also writes them
// from row `write` on. Count and fill run the same loop (count-then-fill), so the outputs are
// allocated once at their exact size: no growing buffers, no copies, memory linear in the pairs.
// Bins (and periodic images) whose box is provably farther than the cutoff from the atom are
// skipped, using the triangular frame of the grid: the bound grows one loop level at a time, so
// whole rows and planes of bins are skipped at once.
template <bool kFill, typename scalar_t>
int64_t search_atom(const BatchGrid& bg, const double* cell, int64_t a, double cutoff_sq,
                    const PairWriter<scalar_t>& out, int64_t write) {
  const int64_t structure = bg.structure_of[a];
  const Grid& g = bg.grids[structure];
  const int64_t* home = &bg.atom_bin[3 * a];
  const double* ri = &bg.wrapped[3 * a];
  const double* fi = &bg.frac[3 * a];
  const int64_t* ni = &bg.wrap_shift[3 * a];
  const int64_t first = write;
  int64_t found = 0;
  int64_t lo[3], hi[3];
  for (int k = 0; k < 3; ++k) {
    if (g.periodic[k]) {
      lo[k] = home[k] - g.reach[k];
      hi[k] = home[k] + g.reach[k];
    } else {
      lo[k] = std::max<int64_t>(0, home[k] - g.reach[k]);
      hi[k] = std::min<int64_t>(g.nbins[k] - 1, home[k] + g.reach[k]);
    }
  }
  for (int64_t b0 = lo[0]; b0 <= hi[0]; ++b0) {
    double w0_lo, w0_hi;
    grid::bin_interval(g, b0, 0, w0_lo, w0_hi);
    w0_lo -= fi[0], w0_hi -= fi[0];
    const double e0 = grid::min_abs(w0_lo, w0_hi) * g.l00;
    const double bound0 = e0 * e0;
    if (bound0 >= cutoff_sq) continue;
    double e1_base_lo, e1_base_hi, e2_base0_lo, e2_base0_hi;
    grid::scale_interval(g.l01, w0_lo, w0_hi, e1_base_lo, e1_base_hi);
    grid::scale_interval(g.l02, w0_lo, w0_hi, e2_base0_lo, e2_base0_hi);
    const int64_t s0 = grid::floor_div(b0, g.nbins[0]);
    const int64_t c0 = b0 - s0 * g.nbins[0];
    for (int64_t b1 = lo[1]; b1 <= hi[1]; ++b1) {
      double w1_lo, w1_hi;
      grid::bin_interval(g, b1, 1, w1_lo, w1_hi);
      w1_lo -= fi[1], w1_hi -= fi[1];
      double t_lo, t_hi;
      grid::scale_interval(g.l11, w1_lo, w1_hi, t_lo, t_hi);
      const double e1 = grid::min_abs(e1_base_lo + t_lo, e1_base_hi + t_hi);
      const double bound1 = bound0 + e1 * e1;
      if (bound1 >= cutoff_sq) continue;
      grid::scale_interval(g.l12, w1_lo, w1_hi, t_lo, t_hi);
      const double e2_base_lo = e2_base0_lo + t_lo, e2_base_hi = e2_base0_hi + t_hi;
      const int64_t s1 = grid::floor_div(b1, g.nbins[1]);
      const int64_t c1 = b1 - s1 * g.nbins[1];
      for (int64_t b2 = lo[2]; b2 <= hi[2]; ++b2) {
        double w2_lo, w2_hi;
        grid::bin_interval(g, b2, 2, w2_lo, w2_hi);
        // l22 > 0, so the interval keeps its orientation.
        const double e2 = grid::min_abs(e2_base_lo + g.l22 * (w2_lo - fi[2]), e2_base_hi + g.l22 * (w2_hi - fi[2]));
        if (bound1 + e2 * e2 >= cutoff_sq) continue;
        const int64_t s2 = grid::floor_div(b2, g.nbins[2]);
        const int64_t c2 = b2 - s2 * g.nbins[2];
        // Translation of the visited bin; zero in non-periodic directions by construction.
        double t[3];
        for (int d = 0; d < 3; ++d) {
          t[d] = static_cast<double>(s0) * cell[0 * 3 + d] + static_cast<double>(s1) * cell[1 * 3 + d] +
                 static_cast<double>(s2) * cell[2 * 3 + d] - ri[d];
        }
        const bool zero_shift = (s0 == 0 && s1 == 0 && s2 == 0);
        const int64_t bin = g.first_bin + (c0 * g.nbins[1] + c1) * g.nbins[2] + c2;
        const int64_t q_end = bg.bin_start[bin + 1];
        for (int64_t q = bg.bin_start[bin]; q < q_end; ++q) {
          const double* rj = &bg.sorted_wrapped[3 * q];
          const double dx = rj[0] + t[0], dy = rj[1] + t[1], dz = rj[2] + t[2];
          if (dx * dx + dy * dy + dz * dz < cutoff_sq) {
            const int64_t b = bg.sorted_atom[q];
            if (zero_shift && b == a) continue;
            if constexpr (kFill) {
              const int64_t* nj = &bg.sorted_shift[3 * q];
              out.i[write] = a;
              out.j[write] = b;
              int64_t* shift = out.shift + 3 * write;
              shift[0] = s0 + ni[0] - nj[0];
              shift[1] = s1 + ni[1] - nj[1];
              shift[2] = s2 + ni[2] - nj[2];
              ++write;
            } else {
              ++found;
            }
          }
        }
      }
    }
  }
  if constexpr (kFill) {
    if (out.vectors != nullptr) {
      // From the caller's positions and shifts, in their dtype, once the atom's rows are written
      // (a second, cache-hot pass over them).
      const scalar_t* cell_s = out.cell + 9 * structure;
      for (int64_t p = first; p < write; ++p) {
        scalar_t* v = out.vectors + 3 * p;
        geometry::pair_vector(out.pos + 3 * a, out.pos + 3 * out.j[p], cell_s, out.shift + 3 * p, v);
        out.distances[p] = geometry::pair_distance(v);
      }
    }
    return write - first;
  } else {
    return found;
  }
}

// Splits atoms into fixed chunks of consecutive atoms, so the output is grouped by ascending i
// whatever the number of threads.
int64_t chunk_count(int64_t n_atoms) {
  return n_atoms < kMinAtomsForThreads ? 1
                                       : std::min<int64_t>(n_atoms, std::max<int64_t>(1, 8 * at::get_num_threads()));
}

// Memory guard before the count pass, which stores nothing per pair and is followed by the exact
// check: it only spares the user a long count when the expected pair count of the structures is
// far beyond the limit. The expectation assumes uniform density and can overshoot hollow or
// clustered structures (about 2x on C60), hence the margin.
constexpr double kExpectedPairsMargin = 4.0;

void check_expected_pair_memory(const BatchGrid& bg, const at::Tensor& ptr, double cutoff, double bytes_each,
                                double limit_bytes) {
  const int64_t* offsets = ptr.data_ptr<int64_t>();
  double total = 0.0, largest = -1.0;
  int64_t largest_structure = 0;
  for (int64_t s = 0; s + 1 < ptr.size(0); ++s) {
    const int64_t n = offsets[s + 1] - offsets[s];
    if (n == 0) continue;
    const double expected = grid::expected_pairs(bg.grids[s], n, cutoff);
    total += expected;
    if (expected > largest) largest = expected, largest_structure = s;
  }
  if (total * bytes_each <= kExpectedPairsMargin * limit_bytes) return;
  check_pair_memory(total, bytes_each, limit_bytes, largest_structure,
                    offsets[largest_structure + 1] - offsets[largest_structure], cutoff, "about");
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> neighbor_list_cpu(const at::Tensor& positions_in,
                                                                                         const at::Tensor& cells_in,
                                                                                         const at::Tensor& pbc_in,
                                                                                         const at::Tensor& ptr_in,
                                                                                         double cutoff, bool geometry) {
  check_neighbor_list_inputs(positions_in, cells_in, pbc_in, ptr_in, cutoff);
  const auto positions = positions_in.contiguous();
  const auto cells = cells_in.contiguous();
  const auto pbc = pbc_in.contiguous();
  const auto ptr = ptr_in.contiguous();
  check_ptr_values(ptr, positions.size(0));
  TORCH_CHECK(at::isfinite(positions).all().item<bool>(),
              "fpcore.neighbor_list: positions contain NaN or infinite values");
  TORCH_CHECK(at::isfinite(cells).all().item<bool>(), "fpcore.neighbor_list: cells contain NaN or infinite values");

  auto long_opts = positions.options().dtype(at::kLong);
  const int64_t n_atoms = positions.size(0);
  auto empty_result = [&] {
    return std::make_tuple(at::empty({0}, long_opts), at::empty({0}, long_opts), at::empty({0, 3}, long_opts),
                           at::empty({0, 3}, positions.options()), at::empty({0}, positions.options()));
  };
  if (n_atoms == 0 || cutoff <= 0.0) return empty_result();

  BatchGrid bg;
  AT_DISPATCH_FLOATING_TYPES(positions.scalar_type(), "fpcore_neighbor_list_cpu",
                             [&] { build_grids<scalar_t>(positions, cells, pbc, ptr, cutoff, bg); });
  const double bytes_each = bytes_per_pair(geometry, positions.scalar_type());
  const double limit_bytes = pair_memory_limit_bytes(physical_memory_bytes());
  check_expected_pair_memory(bg, ptr, cutoff, bytes_each, limit_bytes);
  const auto cells_double = cells.to(at::kDouble).contiguous();
  const double* cell_data = cells_double.data_ptr<double>();
  const double cutoff_sq = cutoff * cutoff;
  const int64_t n_chunks = chunk_count(n_atoms);

  // Count pass: pairs of every atom, then their exclusive prefix sum (the rows of each atom).
  std::vector<int64_t> offset(n_atoms + 1, 0);
  AT_DISPATCH_FLOATING_TYPES(positions.scalar_type(), "fpcore_neighbor_list_cpu_count", [&] {
    const PairWriter<scalar_t> none{};
    at::parallel_for(0, n_chunks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t chunk = begin; chunk < end; ++chunk) {
        for (int64_t a = chunk * n_atoms / n_chunks; a < (chunk + 1) * n_atoms / n_chunks; ++a) {
          offset[a + 1] = search_atom<false, scalar_t>(bg, cell_data + 9 * bg.structure_of[a], a, cutoff_sq, none, 0);
        }
      }
    });
  });
  for (int64_t a = 0; a < n_atoms; ++a) offset[a + 1] += offset[a];
  const int64_t n_pairs = offset[n_atoms];
  if (static_cast<double>(n_pairs) * bytes_each > limit_bytes) {
    // The expectation assumed uniform density; the exact count decides. Name the atom-heaviest structure.
    const int64_t* p = ptr.data_ptr<int64_t>();
    int64_t largest = 0;
    for (int64_t s = 0; s + 1 < ptr.size(0); ++s)
      if (offset[p[s + 1]] - offset[p[s]] > offset[p[largest + 1]] - offset[p[largest]]) largest = s;
    check_pair_memory(static_cast<double>(n_pairs), bytes_each, limit_bytes, largest, p[largest + 1] - p[largest],
                      cutoff, "exactly");
  }

  auto i = at::empty({n_pairs}, long_opts);
  auto j = at::empty({n_pairs}, long_opts);
  auto shifts = at::empty({n_pairs, 3}, long_opts);
  auto vectors = at::empty({geometry ? n_pairs : 0, 3}, positions.options());
  auto distances = at::empty({geometry ? n_pairs : 0}, positions.options());
  AT_DISPATCH_FLOATING_TYPES(positions.scalar_type(), "fpcore_neighbor_list_cpu_fill", [&] {
    const PairWriter<scalar_t> out{i.data_ptr<int64_t>(),
                                   j.data_ptr<int64_t>(),
                                   shifts.data_ptr<int64_t>(),
                                   geometry ? vectors.data_ptr<scalar_t>() : nullptr,
                                   geometry ? distances.data_ptr<scalar_t>() : nullptr,
                                   positions.data_ptr<scalar_t>(),
                                   cells.data_ptr<scalar_t>()};
    at::parallel_for(0, n_chunks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t chunk = begin; chunk < end; ++chunk) {
        for (int64_t a = chunk * n_atoms / n_chunks; a < (chunk + 1) * n_atoms / n_chunks; ++a) {
          search_atom<true, scalar_t>(bg, cell_data + 9 * bg.structure_of[a], a, cutoff_sq, out, offset[a]);
        }
      }
    });
  });
  return {i, j, shifts, vectors, distances};
}

}  // namespace

TORCH_LIBRARY_IMPL(fpcore, CPU, m) {
  m.impl("neighbor_list", &neighbor_list_cpu);
}

}  // namespace fpcore
