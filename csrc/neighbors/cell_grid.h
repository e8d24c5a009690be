#pragma once
// Geometry of the cell-list search, shared by the CPU and CUDA kernels.
//
// Every structure gets a "binning basis" M whose rows are the periodic cell vectors, completed in
// the non-periodic directions by unit vectors orthogonal to the periodic ones (the user's cell
// vector there is irrelevant: shifts are always 0 in those directions). In fractional coordinates
// of M the periodic directions are wrapped into [0, 1) and the non-periodic ones are Angstrom
// coordinates measured from the lowest atom. The box is cut into nbins[k] slabs per direction,
// each at least `cutoff` thick where possible, and a search visits `reach[k]` slabs either side,
// crossing periodic boundaries as often as the cutoff requires (cells smaller than the cutoff).
// All of this is done in double precision whatever the input dtype: only integer indices and
// shifts leave the search, and the distance vectors are recomputed by the caller in its dtype.

#include <cmath>
#include <cstdint>

#include "common/host_device.h"

namespace fpcore {
namespace grid {

// Largest number of lattice translations one atom may have to visit; beyond it the pair list
// cannot fit in memory anyway and a clear error is better than an endless loop.
constexpr double kMaxImagesPerAtom = 1e8;

enum SetupStatus : int32_t {
  kOk = 0,
  kSingularCell = 1,   // periodic cell vectors are (nearly) linearly dependent or zero
  kTooManyImages = 2,  // the cutoff needs more than kMaxImagesPerAtom translations
};

struct Grid {
  double basis[3][3];    // rows: binning basis M
  double inverse[3][3];  // M^-1, so that frac = (r - origin) @ inverse
  double origin[3];      // Cartesian point mapped to fractional 0 in non-periodic directions
  double extent[3];      // Angstrom length of the box in non-periodic directions (1 if periodic)
  int64_t nbins[3];
  int64_t reach[3];
  int64_t first_bin;  // index of this structure's first bin in the batch-wide bin array
  // d = w0 M0 + w1 M1 + w2 M2 written in the orthonormal frame built from M2, then M1, then M0:
  // components (w0 L00, w0 L01 + w1 L11, w0 L02 + w1 L12 + w2 L22), so a lower bound on |d| over a
  // box of w can be accumulated one loop level at a time (see BinPruner).
  double l00, l01, l11, l02, l12, l22;
  bool periodic[3];
};

FPCORE_HD double dot3(const double* a, const double* b) {
  return a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
}

FPCORE_HD void cross3(const double* a, const double* b, double* out) {
  out[0] = a[1] * b[2] - a[2] * b[1];
  out[1] = a[2] * b[0] - a[0] * b[2];
  out[2] = a[0] * b[1] - a[1] * b[0];
}

FPCORE_HD double norm3(const double* a) {
  return sqrt(dot3(a, a));
}

// Builds the binning basis from the user cell (rows) and pbc; returns kSingularCell when the
// periodic vectors do not span their subspace.
FPCORE_HD int32_t make_basis(const double cell[3][3], const bool pbc[3], Grid& g) {
  int n_periodic = 0;
  int periodic_dirs[3];
  int open_dirs[3];
  int n_open = 0;
  for (int k = 0; k < 3; ++k) {
    g.periodic[k] = pbc[k];
    if (pbc[k]) {
      periodic_dirs[n_periodic++] = k;
    } else {
      open_dirs[n_open++] = k;
    }
    for (int c = 0; c < 3; ++c) g.basis[k][c] = cell[k][c];
  }
  // Relative tolerance for linear dependence of the periodic vectors.
  const double tol = 1e-10;
  for (int p = 0; p < n_periodic; ++p) {
    if (!(norm3(g.basis[periodic_dirs[p]]) > 0.0)) return kSingularCell;
  }
  if (n_periodic == 3) {
    double c12[3];
    cross3(g.basis[1], g.basis[2], c12);
    double volume = fabs(dot3(g.basis[0], c12));
    double scale = norm3(g.basis[0]) * norm3(g.basis[1]) * norm3(g.basis[2]);
    if (!(volume > tol * scale)) return kSingularCell;
  } else if (n_periodic == 2) {
    const double* a = g.basis[periodic_dirs[0]];
    const double* b = g.basis[periodic_dirs[1]];
    double normal[3];
    cross3(a, b, normal);
    double n = norm3(normal);
    if (!(n > tol * norm3(a) * norm3(b))) return kSingularCell;
    for (int c = 0; c < 3; ++c) g.basis[open_dirs[0]][c] = normal[c] / n;
  } else if (n_periodic == 1) {
    const double* a = g.basis[periodic_dirs[0]];
    double na = norm3(a);
    double unit_a[3] = {a[0] / na, a[1] / na, a[2] / na};
    // Start from the Cartesian axis least aligned with a, so the cross product is well conditioned.
    int axis = 0;
    for (int c = 1; c < 3; ++c) {
      if (fabs(unit_a[c]) < fabs(unit_a[axis])) axis = c;
    }
    double e[3] = {0.0, 0.0, 0.0};
    e[axis] = 1.0;
    double u[3], v[3];
    cross3(unit_a, e, u);
    double nu = norm3(u);
    for (int c = 0; c < 3; ++c) u[c] /= nu;
    cross3(unit_a, u, v);
    double nv = norm3(v);
    for (int c = 0; c < 3; ++c) {
      g.basis[open_dirs[0]][c] = u[c];
      g.basis[open_dirs[1]][c] = v[c] / nv;
    }
  } else {
    for (int k = 0; k < 3; ++k)
      for (int c = 0; c < 3; ++c) g.basis[k][c] = (k == c) ? 1.0 : 0.0;
  }
  // inverse = adj(M) / det(M); columns of the inverse are the reciprocal vectors.
  const double (*m)[3] = g.basis;
  double det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0]) +
               m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
  if (!(fabs(det) > 0.0)) return kSingularCell;
  double inv_det = 1.0 / det;
  g.inverse[0][0] = (m[1][1] * m[2][2] - m[1][2] * m[2][1]) * inv_det;
  g.inverse[0][1] = (m[0][2] * m[2][1] - m[0][1] * m[2][2]) * inv_det;
  g.inverse[0][2] = (m[0][1] * m[1][2] - m[0][2] * m[1][1]) * inv_det;
  g.inverse[1][0] = (m[1][2] * m[2][0] - m[1][0] * m[2][2]) * inv_det;
  g.inverse[1][1] = (m[0][0] * m[2][2] - m[0][2] * m[2][0]) * inv_det;
  g.inverse[1][2] = (m[0][2] * m[1][0] - m[0][0] * m[1][2]) * inv_det;
  g.inverse[2][0] = (m[1][0] * m[2][1] - m[1][1] * m[2][0]) * inv_det;
  g.inverse[2][1] = (m[0][1] * m[2][0] - m[0][0] * m[2][1]) * inv_det;
  g.inverse[2][2] = (m[0][0] * m[1][1] - m[0][1] * m[1][0]) * inv_det;
  for (int k = 0; k < 3; ++k) {
    g.origin[k] = 0.0;
    g.extent[k] = 1.0;
  }
  // Gram-Schmidt of M2, M1, M0 in that order (the basis is non-singular here).
  double qa[3], qb[3], r1[3], r0[3];
  g.l22 = norm3(m[2]);
  for (int c = 0; c < 3; ++c) qa[c] = m[2][c] / g.l22;
  g.l12 = dot3(m[1], qa);
  for (int c = 0; c < 3; ++c) r1[c] = m[1][c] - g.l12 * qa[c];
  g.l11 = norm3(r1);
  for (int c = 0; c < 3; ++c) qb[c] = r1[c] / g.l11;
  g.l02 = dot3(m[0], qa);
  g.l01 = dot3(m[0], qb);
  for (int c = 0; c < 3; ++c) r0[c] = m[0][c] - g.l02 * qa[c] - g.l01 * qb[c];
  g.l00 = norm3(r0);
  return kOk;
}

// Fractional coordinate along basis row k (before wrapping / origin shift).
FPCORE_HD double fractional(const Grid& g, const double* r, int k) {
  return r[0] * g.inverse[0][k] + r[1] * g.inverse[1][k] + r[2] * g.inverse[2][k];
}

// Chooses bin counts and search reach once the non-periodic extents are known.
// `max_bins` bounds the number of bins (memory stays linear in the number of atoms).
// `bins_per_cutoff` > 1 makes bins thinner than the cutoff, worth it when bins are pruned.
FPCORE_HD int32_t make_bins(Grid& g, double cutoff, int64_t max_bins, double bins_per_cutoff = 1.0) {
  double thickness[3];  // Angstrom distance between the two faces of the box in direction k
  for (int k = 0; k < 3; ++k) {
    if (g.periodic[k]) {
      double col[3] = {g.inverse[0][k], g.inverse[1][k], g.inverse[2][k]};
      thickness[k] = 1.0 / norm3(col);
    } else {
      thickness[k] = g.extent[k];
    }
    // The small margin keeps every bin strictly thicker than the cutoff, so rounding of an atom
    // lying on a bin face can never hide a pair one bin further away.
    double n = floor(thickness[k] * bins_per_cutoff / (cutoff * (1.0 + 1e-9)));
    g.nbins[k] = n < 1.0 ? 1 : (n > 1e6 ? 1000000 : static_cast<int64_t>(n));
  }
  if (max_bins < 1) max_bins = 1;
  while (static_cast<double>(g.nbins[0]) * g.nbins[1] * g.nbins[2] > static_cast<double>(max_bins)) {
    int largest = 0;
    for (int k = 1; k < 3; ++k) {
      if (g.nbins[k] > g.nbins[largest]) largest = k;
    }
    g.nbins[largest] = (g.nbins[largest] + 1) / 2;
  }
  double images = 1.0;
  for (int k = 0; k < 3; ++k) {
    if (g.nbins[k] == 1 && !g.periodic[k]) {
      g.reach[k] = 0;
    } else {
      double reach = ceil(cutoff * static_cast<double>(g.nbins[k]) / thickness[k]);
      if (!(reach < 1e9)) return kTooManyImages;
      g.reach[k] = reach < 1.0 ? 1 : static_cast<int64_t>(reach);
      if (!g.periodic[k] && g.reach[k] > g.nbins[k]) g.reach[k] = g.nbins[k];
    }
    images *= static_cast<double>(2 * g.reach[k] + 1) / static_cast<double>(g.nbins[k]);
  }
  if (images > kMaxImagesPerAtom) return kTooManyImages;
  return kOk;
}

// Bin coordinate of fractional coordinate f (already wrapped / shifted) in direction k.
FPCORE_HD int64_t bin_of(const Grid& g, double f, int k) {
  double scaled = g.periodic[k] ? f : f / g.extent[k];
  int64_t b = static_cast<int64_t>(floor(scaled * static_cast<double>(g.nbins[k])));
  if (b < 0) b = 0;
  if (b >= g.nbins[k]) b = g.nbins[k] - 1;
  return b;
}

// Interval [lo, hi] of the (origin-shifted) basis coordinate of the atoms of unwrapped bin b in
// direction k, widened by a margin far above the rounding of bin_of, so pruning stays conservative.
FPCORE_HD void bin_interval(const Grid& g, int64_t b, int k, double& lo, double& hi) {
  const double width =
      g.periodic[k] ? 1.0 / static_cast<double>(g.nbins[k]) : g.extent[k] / static_cast<double>(g.nbins[k]);
  const double margin = 1e-9 * (g.periodic[k] ? 1.0 : g.extent[k] + 1.0);
  lo = static_cast<double>(b) * width - margin;
  hi = static_cast<double>(b + 1) * width + margin;
}

FPCORE_HD double min_abs(double lo, double hi) {
  return lo > 0.0 ? lo : (hi < 0.0 ? -hi : 0.0);
}

// Interval of c * [lo, hi].
FPCORE_HD void scale_interval(double c, double lo, double hi, double& out_lo, double& out_hi) {
  if (c >= 0.0) {
    out_lo = c * lo, out_hi = c * hi;
  } else {
    out_lo = c * hi, out_hi = c * lo;
  }
}

FPCORE_HD int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

// Expected number of pairs of a structure of n atoms spread uniformly over its box (the periodic
// cell times the atoms' extent in open directions), for the memory guard before any pair is
// stored. Per atom: n / V_box times the volume of the cutoff sphere inside the box, bounded by the
// sphere and by the "cylinder" ball_k(r) x (open extents), k = number of periodic directions.
FPCORE_HD double expected_pairs(const Grid& g, int64_t n, double cutoff) {
  constexpr double kPi = 3.14159265358979323846;
  const double m00 = g.basis[0][0], m01 = g.basis[0][1], m02 = g.basis[0][2];
  const double m10 = g.basis[1][0], m11 = g.basis[1][1], m12 = g.basis[1][2];
  const double m20 = g.basis[2][0], m21 = g.basis[2][1], m22 = g.basis[2][2];
  // The completion rows of the basis are orthonormal and orthogonal to the periodic ones, so |det M|
  // is the measure of the periodic cell (volume, area or length; 1 with no periodic direction).
  const double periodic_measure =
      fabs(m00 * (m11 * m22 - m12 * m21) - m01 * (m10 * m22 - m12 * m20) + m02 * (m10 * m21 - m11 * m20));
  int k = 0;
  double open_extent = 1.0;
  for (int d = 0; d < 3; ++d) {
    if (g.periodic[d]) {
      ++k;
    } else {
      open_extent *= g.extent[d];
    }
  }
  const double r = cutoff;
  const double ball_k = k == 3 ? 4.0 / 3.0 * kPi * r * r * r : (k == 2 ? kPi * r * r : (k == 1 ? 2.0 * r : 1.0));
  const double sphere = 4.0 / 3.0 * kPi * r * r * r;
  const double inside = fmin(sphere, ball_k * open_extent);
  const double nd = static_cast<double>(n);
  return nd * nd * inside / (periodic_measure * open_extent);
}

}  // namespace grid
}  // namespace fpcore
