// CPU kernels of fpcore::pair_geometry and its adjoint: one pass over the pairs, parallel over
// pair ranges (at::parallel_for).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "geometry/pair_geometry_checks.h"
#include "geometry/pair_geometry_math.h"

namespace fpcore {
namespace {

// Pairs per task: below it threads cost more than the arithmetic (a few ns per pair).
constexpr int64_t kPairGrain = 32768;

// Throws, naming the pair, when i, j or the structure of i lies outside the tensors they index.
inline void check_pair_indices(int64_t p, int64_t a, int64_t b, int64_t n_atoms, const int64_t* batch,
                               int64_t n_structures) {
  TORCH_CHECK(a >= 0 && a < n_atoms && b >= 0 && b < n_atoms, "fpcore.pair_geometry: pair ", p, " has i = ", a,
              ", j = ", b, ", outside the ", n_atoms, " atoms");
  TORCH_CHECK(batch[a] >= 0 && batch[a] < n_structures, "fpcore.pair_geometry: atom ", a, " has batch = ", batch[a],
              ", outside the ", n_structures, " cells");
}

template <typename scalar_t>
void forward_impl(const at::Tensor& positions, const at::Tensor& cells, const at::Tensor& batch, const at::Tensor& i,
                  const at::Tensor& j, const at::Tensor& shifts, at::Tensor& vectors, at::Tensor& distances) {
  const scalar_t* pos = positions.data_ptr<scalar_t>();
  const scalar_t* cell = cells.data_ptr<scalar_t>();
  const int64_t* structure = batch.data_ptr<int64_t>();
  const int64_t* pi = i.data_ptr<int64_t>();
  const int64_t* pj = j.data_ptr<int64_t>();
  const int64_t* shift = shifts.data_ptr<int64_t>();
  scalar_t* vec = vectors.data_ptr<scalar_t>();
  scalar_t* dist = distances.data_ptr<scalar_t>();
  const int64_t n_atoms = positions.size(0), n_structures = cells.size(0);
  at::parallel_for(0, i.size(0), kPairGrain, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const int64_t a = pi[p], b = pj[p];
      check_pair_indices(p, a, b, n_atoms, structure, n_structures);
      geometry::pair_vector(pos + 3 * a, pos + 3 * b, cell + 9 * structure[a], shift + 3 * p, vec + 3 * p);
      dist[p] = geometry::pair_distance(vec + 3 * p);
    }
  });
}

std::tuple<at::Tensor, at::Tensor> pair_geometry_cpu(const at::Tensor& positions_in, const at::Tensor& cells_in,
                                                     const at::Tensor& batch_in, const at::Tensor& i_in,
                                                     const at::Tensor& j_in, const at::Tensor& shifts_in) {
  check_pair_geometry_inputs(positions_in, cells_in, batch_in, i_in, j_in, shifts_in);
  const auto positions = positions_in.contiguous(), cells = cells_in.contiguous(), batch = batch_in.contiguous();
  const auto i = i_in.contiguous(), j = j_in.contiguous(), shifts = shifts_in.contiguous();
  auto vectors = at::empty({i.size(0), 3}, positions.options());
  auto distances = at::empty({i.size(0)}, positions.options());
  AT_DISPATCH_FLOATING_TYPES(positions.scalar_type(), "fpcore_pair_geometry_cpu", [&] {
    forward_impl<scalar_t>(positions, cells, batch, i, j, shifts, vectors, distances);
  });
  return {vectors, distances};
}

// Accumulates the pairs [begin, end) into grad_pos (N, 3) and grad_cell (B, 3, 3).
template <typename scalar_t>
void accumulate_pairs(int64_t begin, int64_t end, const scalar_t* grad_v, const scalar_t* grad_d, const scalar_t* vec,
                      const scalar_t* dist, const int64_t* structure, const int64_t* pi, const int64_t* pj,
                      const int64_t* shift, int64_t n_atoms, int64_t n_structures, scalar_t* grad_pos,
                      scalar_t* grad_cell) {
  for (int64_t p = begin; p < end; ++p) {
    const int64_t a = pi[p], b = pj[p];
    check_pair_indices(p, a, b, n_atoms, structure, n_structures);
    scalar_t g[3];
    geometry::vector_gradient(grad_v ? grad_v + 3 * p : nullptr, grad_d ? grad_d[p] : scalar_t(0), vec + 3 * p, dist[p],
                              g);
    scalar_t* gi = grad_pos + 3 * a;
    scalar_t* gj = grad_pos + 3 * b;
    scalar_t* gc = grad_cell + 9 * structure[a];
    const int64_t* s = shift + 3 * p;
    for (int c = 0; c < 3; ++c) {
      gi[c] -= g[c];
      gj[c] += g[c];
    }
    // Most pairs of a small cell have a zero shift; skipping them saves the 9 multiply-adds.
    if (s[0] | s[1] | s[2]) {
      for (int k = 0; k < 3; ++k) {
        const scalar_t sk = static_cast<scalar_t>(s[k]);
        for (int c = 0; c < 3; ++c) gc[3 * k + c] += sk * g[c];
      }
    }
  }
}

template <typename scalar_t>
void backward_impl(const at::Tensor& grad_vectors, const at::Tensor& grad_distances, const at::Tensor& vectors,
                   const at::Tensor& distances, const at::Tensor& batch, const at::Tensor& i, const at::Tensor& j,
                   const at::Tensor& shifts, at::Tensor& grad_positions, at::Tensor& grad_cells) {
  const scalar_t* grad_v = grad_vectors.defined() ? grad_vectors.data_ptr<scalar_t>() : nullptr;
  const scalar_t* grad_d = grad_distances.defined() ? grad_distances.data_ptr<scalar_t>() : nullptr;
  const scalar_t* vec = vectors.data_ptr<scalar_t>();
  const scalar_t* dist = distances.data_ptr<scalar_t>();
  const int64_t* structure = batch.data_ptr<int64_t>();
  const int64_t* pi = i.data_ptr<int64_t>();
  const int64_t* pj = j.data_ptr<int64_t>();
  const int64_t* shift = shifts.data_ptr<int64_t>();
  const int64_t n_pairs = i.size(0), n_atoms = grad_positions.size(0), n_structures = grad_cells.size(0);
  const int64_t per_task = 3 * n_atoms + 9 * n_structures;
  // Scatter-adds race between threads: each task accumulates into its own zeroed copy of the
  // gradients (task 0 into the outputs), summed in task order afterwards, so the result does not
  // depend on scheduling. Memory: (tasks - 1) x (N, 3) + (B, 3, 3).
  const int64_t n_tasks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), n_pairs / (2 * kPairGrain)));
  std::vector<scalar_t> partial(static_cast<size_t>((n_tasks - 1) * per_task), scalar_t(0));
  scalar_t* out_pos = grad_positions.data_ptr<scalar_t>();
  scalar_t* out_cell = grad_cells.data_ptr<scalar_t>();
  at::parallel_for(0, n_tasks, 1, [&](int64_t t_begin, int64_t t_end) {
    for (int64_t t = t_begin; t < t_end; ++t) {
      scalar_t* gp = t == 0 ? out_pos : partial.data() + (t - 1) * per_task;
      scalar_t* gc = t == 0 ? out_cell : gp + 3 * n_atoms;
      accumulate_pairs(t * n_pairs / n_tasks, (t + 1) * n_pairs / n_tasks, grad_v, grad_d, vec, dist, structure, pi, pj,
                       shift, n_atoms, n_structures, gp, gc);
    }
  });
  if (n_tasks > 1) {
    at::parallel_for(0, per_task, 4096, [&](int64_t begin, int64_t end) {
      for (int64_t t = 1; t < n_tasks; ++t) {
        const scalar_t* src = partial.data() + (t - 1) * per_task;
        for (int64_t k = begin; k < end; ++k) {
          if (k < 3 * n_atoms) {
            out_pos[k] += src[k];
          } else {
            out_cell[k - 3 * n_atoms] += src[k];
          }
        }
      }
    });
  }
}

std::tuple<at::Tensor, at::Tensor> pair_geometry_backward_cpu(
    const c10::optional<at::Tensor>& grad_vectors_in, const c10::optional<at::Tensor>& grad_distances_in,
    const at::Tensor& vectors_in, const at::Tensor& distances_in, const at::Tensor& batch_in, const at::Tensor& i_in,
    const at::Tensor& j_in, const at::Tensor& shifts_in, int64_t n_atoms, int64_t n_structures) {
  check_pair_geometry_backward_inputs(grad_vectors_in, grad_distances_in, vectors_in, distances_in, batch_in, i_in,
                                      j_in, shifts_in, n_atoms, n_structures);
  at::Tensor grad_vectors, grad_distances;
  if (grad_vectors_in.has_value() && grad_vectors_in->defined()) grad_vectors = grad_vectors_in->contiguous();
  if (grad_distances_in.has_value() && grad_distances_in->defined()) grad_distances = grad_distances_in->contiguous();
  const auto vectors = vectors_in.contiguous(), distances = distances_in.contiguous(), batch = batch_in.contiguous();
  const auto i = i_in.contiguous(), j = j_in.contiguous(), shifts = shifts_in.contiguous();
  auto grad_positions = at::zeros({n_atoms, 3}, vectors.options());
  auto grad_cells = at::zeros({n_structures, 3, 3}, vectors.options());
  if (grad_vectors.defined() || grad_distances.defined()) {
    AT_DISPATCH_FLOATING_TYPES(vectors.scalar_type(), "fpcore_pair_geometry_backward_cpu", [&] {
      backward_impl<scalar_t>(grad_vectors, grad_distances, vectors, distances, batch, i, j, shifts, grad_positions,
                              grad_cells);
    });
  }
  return {grad_positions, grad_cells};
}

}  // namespace

TORCH_LIBRARY_IMPL(fpcore, CPU, m) {
  m.impl("pair_geometry", &pair_geometry_cpu);
  m.impl("pair_geometry_backward", &pair_geometry_backward_cpu);
}

}  // namespace fpcore
