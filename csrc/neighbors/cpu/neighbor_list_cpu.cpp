// CPU kernel of fpcore::neighbor_list: a cell-list search, linear in the number of atoms and
// pairs, parallel over structures (set-up) and over chunks of atoms (one search pass, one copy).
#include <ATen/Parallel.h>
#include <torch/library.h>
#include <ATen/ATen.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <memory>
#include <mutex>
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
// Candidates of one bin tested per tile before the kept ones are stored (search_atom).
constexpr int64_t kSearchTile = 64;

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

// Pairs found by one chunk of atoms, in search order: j and the shift of each pair, in fixed-size
// blocks, so storing them never moves what is already stored (a growing vector re-copies, and
// doubling can hold twice the memory: that halved the throughput at ~100k atoms once). i is implied
// by the per-atom counts. Blocks are mapped pages, unmapped as soon as they are copied into the
// outputs: malloc would keep freed blocks in its heap, and the peak would be outputs plus all blocks.
class PairBlocks {
 public:
  static constexpr int64_t kPairsPerBlock = int64_t{1} << 15;
  static constexpr int kWords = 4;  // j, shift x 3
  static constexpr size_t kBlockBytes = sizeof(int64_t) * kWords * kPairsPerBlock;

  PairBlocks() = default;
  PairBlocks(const PairBlocks&) = delete;
  PairBlocks& operator=(const PairBlocks&) = delete;
  PairBlocks(PairBlocks&& other) noexcept : blocks_(std::move(other.blocks_)), size_(other.size_) {
    other.blocks_.clear();
    other.size_ = 0;
  }
  ~PairBlocks() { clear(); }

  // The slot of one more pair (j, shift x 3). Untouched pages of a block cost no memory.
  int64_t* append() {
    const int64_t slot = size_ % kPairsPerBlock;
    if (slot == 0) {
      blocks_.push_back(acquire_block(size_));
    }
    ++size_;
    return blocks_.back() + kWords * slot;
  }
  const int64_t* pair(int64_t p) const { return blocks_[p / kPairsPerBlock] + kWords * (p % kPairsPerBlock); }
  // Unmaps the blocks that hold only pairs before p.
  void release_before(int64_t p) {
    for (int64_t b = p / kPairsPerBlock - 1; b >= 0 && blocks_[b] != nullptr; --b) {
      give_back_block(blocks_[b]);
      blocks_[b] = nullptr;
    }
  }
  void clear() {
    for (int64_t* block : blocks_)
      if (block != nullptr) give_back_block(block);
    blocks_.clear();
    size_ = 0;
  }

 private:
  // A few blocks stay mapped between calls: on small structures mapping fresh pages (and faulting each one
  // in) cost a third of the search. Beyond the pool, blocks are unmapped at once, so the peak of a large
  // list grows by at most kPooledBlocks blocks.
  static constexpr size_t kPooledBlocks = 8;
  static std::mutex& pool_mutex() {
    static std::mutex mutex;
    return mutex;
  }
  static std::vector<int64_t*>& pool() {
    static std::vector<int64_t*> blocks;
    return blocks;
  }
  static int64_t* acquire_block(int64_t pairs_so_far) {
    {
      std::lock_guard<std::mutex> lock(pool_mutex());
      if (!pool().empty()) {
        int64_t* block = pool().back();
        pool().pop_back();
        return block;
      }
    }
    void* block = mmap(nullptr, kBlockBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    TORCH_CHECK(block != MAP_FAILED, "fpcore.neighbor_list: out of memory after ", pairs_so_far, " pairs of one chunk");
    return static_cast<int64_t*>(block);
  }
  static void give_back_block(int64_t* block) {
    {
      std::lock_guard<std::mutex> lock(pool_mutex());
      if (pool().size() < kPooledBlocks) {
        pool().push_back(block);
        return;
      }
    }
    munmap(block, kBlockBytes);
  }

  std::vector<int64_t*> blocks_;
  int64_t size_ = 0;
};

// Visits every neighbor of atom `a` and returns how many it has; with kStore it also appends them
// to `found`. One pass finds and stores the pairs (then one copy into the exact-size outputs): the
// earlier count-then-fill searched twice, which cost ~2x on small cells, where the search is all
// the work. Bins (and periodic images) whose box is provably farther than the cutoff from the atom
// are skipped, using the triangular frame of the grid: the bound grows one loop level at a time, so
// whole rows and planes of bins are skipped at once.
template <bool kStore>
int64_t search_atom(const BatchGrid& bg, const double* cell, int64_t a, double cutoff_sq, PairBlocks* found) {
  const int64_t structure = bg.structure_of[a];
  const Grid& g = bg.grids[structure];
  const int64_t* home = &bg.atom_bin[3 * a];
  const double* ri = &bg.wrapped[3 * a];
  const double* fi = &bg.frac[3 * a];
  const int64_t* ni = &bg.wrap_shift[3 * a];
  int64_t count = 0;
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
        // Branch-free filtering: the distance test keeps ~15-30% of the candidates at random, which a
        // branch per candidate mispredicts constantly; the kept ones are compacted into `hits` first.
        const int64_t q_end = bg.bin_start[bin + 1];
        for (int64_t q0 = bg.bin_start[bin]; q0 < q_end; q0 += kSearchTile) {
          const int64_t q1 = std::min(q_end, q0 + kSearchTile);
          int32_t hits[kSearchTile];
          int32_t n_hits = 0;
          for (int64_t q = q0; q < q1; ++q) {
            const double* rj = &bg.sorted_wrapped[3 * q];
            const double dx = rj[0] + t[0], dy = rj[1] + t[1], dz = rj[2] + t[2];
            hits[n_hits] = static_cast<int32_t>(q - q0);
            n_hits += (dx * dx + dy * dy + dz * dz < cutoff_sq) ? 1 : 0;
          }
          for (int32_t h = 0; h < n_hits; ++h) {
            const int64_t q = q0 + hits[h];
            const int64_t b = bg.sorted_atom[q];
            if (zero_shift && b == a) continue;
            ++count;
            if constexpr (kStore) {
              const int64_t* nj = &bg.sorted_shift[3 * q];
              int64_t* row = found->append();
              row[0] = b;
              row[1] = s0 + ni[0] - nj[0];
              row[2] = s1 + ni[1] - nj[1];
              row[3] = s2 + ni[2] - nj[2];
            }
          }
        }
      }
    }
  }
  return count;
}

// Splits atoms into fixed chunks of consecutive atoms, so the output is grouped by ascending i
// whatever the number of threads.
int64_t chunk_count(int64_t n_atoms) {
  return n_atoms < kMinAtomsForThreads ? 1
                                       : std::min<int64_t>(n_atoms, std::max<int64_t>(1, 8 * at::get_num_threads()));
}

// Memory guard before the search pass, which stops storing pairs at the limit and is followed by the
// exact check: it only spares the user a long search when the expected pair count of the structures is
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

  // Search pass: each chunk stores its pairs, atom by atom, and counts each atom's pairs. Stored
  // pairs cost 32 B each besides the outputs; once they pass the memory limit, the chunks stop
  // storing and only count, so the refusal below names the exact number without the memory.
  std::vector<int64_t> offset(n_atoms + 1, 0);
  std::vector<PairBlocks> found(n_chunks);
  std::atomic<int64_t> stored{0};
  std::atomic<bool> over_limit{false};
  const int64_t store_limit = static_cast<int64_t>(std::min(limit_bytes / bytes_each, 9.0e18));
  at::parallel_for(0, n_chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t chunk = begin; chunk < end; ++chunk) {
      for (int64_t a = chunk * n_atoms / n_chunks; a < (chunk + 1) * n_atoms / n_chunks; ++a) {
        const double* cell = cell_data + 9 * bg.structure_of[a];
        if (!over_limit.load(std::memory_order_relaxed)) {
          offset[a + 1] = search_atom<true>(bg, cell, a, cutoff_sq, &found[chunk]);
          if (stored.fetch_add(offset[a + 1], std::memory_order_relaxed) + offset[a + 1] > store_limit) {
            over_limit.store(true, std::memory_order_relaxed);
          }
        } else {
          found[chunk].clear();
          offset[a + 1] = search_atom<false>(bg, cell, a, cutoff_sq, nullptr);
        }
      }
    }
  });
  for (int64_t a = 0; a < n_atoms; ++a) offset[a + 1] += offset[a];
  const int64_t n_pairs = offset[n_atoms];
  if (static_cast<double>(n_pairs) * bytes_each > limit_bytes) {
    found.clear();
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
  AT_DISPATCH_FLOATING_TYPES(positions.scalar_type(), "fpcore_neighbor_list_cpu_copy", [&] {
    int64_t* i_out = i.data_ptr<int64_t>();
    int64_t* j_out = j.data_ptr<int64_t>();
    int64_t* shift_out = shifts.data_ptr<int64_t>();
    scalar_t* vector_out = geometry ? vectors.data_ptr<scalar_t>() : nullptr;
    scalar_t* distance_out = geometry ? distances.data_ptr<scalar_t>() : nullptr;
    const scalar_t* pos = positions.data_ptr<scalar_t>();
    const scalar_t* cell = cells.data_ptr<scalar_t>();
    at::parallel_for(0, n_chunks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t chunk = begin; chunk < end; ++chunk) {
        const int64_t first_atom = chunk * n_atoms / n_chunks, last_atom = (chunk + 1) * n_atoms / n_chunks;
        const int64_t base = offset[first_atom];
        PairBlocks& pairs = found[chunk];
        for (int64_t a = first_atom; a < last_atom; ++a) {
          const scalar_t* cell_s = cell + 9 * bg.structure_of[a];
          for (int64_t row = offset[a]; row < offset[a + 1]; ++row) {
            const int64_t* stored_pair = pairs.pair(row - base);
            i_out[row] = a;
            j_out[row] = stored_pair[0];
            int64_t* shift = shift_out + 3 * row;
            shift[0] = stored_pair[1];
            shift[1] = stored_pair[2];
            shift[2] = stored_pair[3];
            if (vector_out != nullptr) {
              // From the caller's positions and shifts, in their dtype, exactly as
              // fpcore::pair_geometry computes them (geometry/pair_geometry_math.h).
              scalar_t* v = vector_out + 3 * row;
              geometry::pair_vector(pos + 3 * a, pos + 3 * stored_pair[0], cell_s, shift, v);
              distance_out[row] = geometry::pair_distance(v);
            }
          }
          pairs.release_before(offset[a + 1] - base);
        }
        pairs.clear();
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
