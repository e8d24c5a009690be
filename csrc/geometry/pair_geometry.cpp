// Schema of the fused pair-geometry operators.
//
// pair_geometry: positions (N, 3), cells (B, 3, 3) (rows are cell vectors), batch (N,) int64
// structure of each atom, i, j (P,) int64 and shifts (P, 3) int64 (a neighbor list) ->
//   vectors (P, 3) = positions[j] - positions[i] + shifts @ cells[batch[i]], distances (P,) = |vectors|,
// in the dtype of the positions, in one pass over the pairs (no (P, 3, 3) gather, no per-pair bmm).
//
// pair_geometry_backward is its adjoint: with g = grad_vectors + grad_distances * vectors / distances
// (either gradient may be None; the distance term is 0 where a distance is 0),
//   grad_positions (N, 3): += g at j, -= g at i;   grad_cells (B, 3, 3): [b] += shifts^T g over its pairs.
// Its own derivative (double backward) is written in Python (python/fpcore/neighbors/_ops.py) on top of pair_geometry,
// so gradients of any order exist.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(fpcore, m) {
  m.def(
      "pair_geometry(Tensor positions, Tensor cells, Tensor batch, Tensor i, Tensor j, Tensor shifts) -> (Tensor, "
      "Tensor)");
  m.def(
      "pair_geometry_backward(Tensor? grad_vectors, Tensor? grad_distances, Tensor vectors, Tensor distances, "
      "Tensor batch, Tensor i, Tensor j, Tensor shifts, SymInt n_atoms, SymInt n_structures) -> (Tensor, Tensor)");
}
