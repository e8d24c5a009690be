#pragma once
// Per-centre maths of the EAD descriptor (docs/descriptors/ead.md), shared by the CPU and CUDA kernels.
//
// rho[k, m] = sum_pairs Z_j f_c(d) exp(-eta (d - Rs)^2) x^lx y^ly z^lz, k = i_eta * n_rs + i_rs,
// m enumerating the monomials ordered by total order (so the first n_monomials(l) have order <= l).
// X[l, k] = l! / Rc^(2l) * sum_{|m| <= l} rho[k, m]^2 / (lx! ly! lz!)   (cumulative over orders, as
// PyXtal_FF computes it). Output index (l * n_eta + i_eta) * n_rs + i_rs = l * K + k.
#include <cmath>
#include <cstdint>

#include "descriptors/cutoff_functions.h"

#include "common/host_device.h"

namespace fpcore {
namespace ead {

// Per-pair monomials live in fixed-size local arrays (CUDA threads cannot allocate), so L is
// capped; 8 already gives 165 monomials per (eta, Rs).
constexpr int kMaxL = 8;
constexpr int kMaxMonomials = (kMaxL + 1) * (kMaxL + 2) * (kMaxL + 3) / 6;

FPCORE_HD int64_t n_monomials(int64_t L) {
  return (L + 1) * (L + 2) * (L + 3) / 6;
}

template <typename T>
FPCORE_HD T factorial(int n) {
  T f = T(1);
  for (int k = 2; k <= n; ++k) f *= T(k);
  return f;
}

template <typename T>
FPCORE_HD void powers(T x, T y, T z, int L, T* px, T* py, T* pz) {
  px[0] = py[0] = pz[0] = T(1);
  for (int k = 1; k <= L; ++k) {
    px[k] = px[k - 1] * x;
    py[k] = py[k - 1] * y;
    pz[k] = pz[k - 1] * z;
  }
}

template <typename T>
FPCORE_HD void monomials(const T* px, const T* py, const T* pz, int L, T* mono) {
  int m = 0;
  for (int l = 0; l <= L; ++l)
    for (int lx = l; lx >= 0; --lx)
      for (int ly = l - lx; ly >= 0; --ly) mono[m++] = px[lx] * py[ly] * pz[l - lx - ly];
}

// sum_m b[m] * grad(x^lx y^ly z^lz), same monomial order as `monomials`.
template <typename T>
FPCORE_HD void contract_monomial_gradient(const T* px, const T* py, const T* pz, int L, const T* b, T& gx, T& gy,
                                          T& gz) {
  gx = gy = gz = T(0);
  int m = 0;
  for (int l = 0; l <= L; ++l)
    for (int lx = l; lx >= 0; --lx)
      for (int ly = l - lx; ly >= 0; --ly) {
        const int lz = l - lx - ly;
        const T c = b[m++];
        if (lx) gx += c * T(lx) * px[lx - 1] * py[ly] * pz[lz];
        if (ly) gy += c * T(ly) * px[lx] * py[ly - 1] * pz[lz];
        if (lz) gz += c * T(lz) * px[lx] * py[ly] * pz[lz - 1];
      }
}

struct Params {
  int64_t n_eta, n_rs;
  int L;
  CutoffFunction kind;
  double rc;
};

// rho (K x M, overwritten) of the centre whose pairs are p0 .. p1-1. With `gauss` (room for (p1 - p0) x K values),
// the Gaussians exp(-eta (d - Rs)^2) of the pairs inside the cutoff are kept there for pair_gradients.
template <typename T>
FPCORE_HD void accumulate_density(const T* vectors, const int64_t* nbr_j, const int64_t* numbers, int64_t p0,
                                  int64_t p1, const T* eta, const T* rs, const Params& prm, T* rho,
                                  T* gauss = nullptr) {
  const int64_t K = prm.n_eta * prm.n_rs;
  const int64_t M = n_monomials(prm.L);
  const T rc = T(prm.rc);
  for (int64_t q = 0; q < K * M; ++q) rho[q] = T(0);
  T px[kMaxL + 1], py[kMaxL + 1], pz[kMaxL + 1], mono[kMaxMonomials];
  for (int64_t p = p0; p < p1; ++p) {
    const T x = vectors[3 * p], y = vectors[3 * p + 1], z = vectors[3 * p + 2];
    const T d = sqrt(x * x + y * y + z * z);
    T fc, dfc;
    cutoff_function(prm.kind, d, rc, fc, dfc);
    if (!(d < rc)) continue;
    const T weight = T(numbers[nbr_j[p]]) * fc;
    powers(x, y, z, prm.L, px, py, pz);
    monomials(px, py, pz, prm.L, mono);
    for (int64_t ie = 0; ie < prm.n_eta; ++ie)
      for (int64_t ir = 0; ir < prm.n_rs; ++ir) {
        const T dr = d - rs[ir];
        const T e = exp(-eta[ie] * dr * dr);
        if (gauss != nullptr) gauss[(p - p0) * K + ie * prm.n_rs + ir] = e;
        const T g = weight * e;
        T* row = rho + (ie * prm.n_rs + ir) * M;
        for (int64_t m = 0; m < M; ++m) row[m] += g * mono[m];
      }
  }
}

// Features ((L + 1) * K) of one centre from its rho.
template <typename T>
FPCORE_HD void features_from_density(const T* rho, const Params& prm, T* out) {
  const int64_t K = prm.n_eta * prm.n_rs;
  const int64_t M = n_monomials(prm.L);
  const T rc2 = T(prm.rc) * T(prm.rc);
  for (int64_t k = 0; k < K; ++k) {
    const T* row = rho + k * M;
    T sum = T(0), scale = T(1);  // scale = l! / Rc^(2l)
    int m = 0;
    for (int l = 0; l <= prm.L; ++l) {
      if (l > 0) scale *= T(l) / rc2;
      for (int lx = l; lx >= 0; --lx)
        for (int ly = l - lx; ly >= 0; --ly, ++m)
          sum += row[m] * row[m] / (factorial<T>(lx) * factorial<T>(ly) * factorial<T>(l - lx - ly));
      out[l * K + k] = sum * scale;
    }
  }
}

// Turns rho into A = dLoss/drho in place, given g = dLoss/dX of the centre:
// A[k, m] = 2 rho[k, m] / (lx! ly! lz!) * sum_{l >= |m|} g[l, k] l! / Rc^(2l).
template <typename T>
FPCORE_HD void density_adjoint(const T* grad_out, const Params& prm, T* rho) {
  const int64_t K = prm.n_eta * prm.n_rs;
  const int64_t M = n_monomials(prm.L);
  const T rc2 = T(prm.rc) * T(prm.rc);
  T scale_top = T(1);
  for (int l = 1; l <= prm.L; ++l) scale_top *= T(l) / rc2;
  for (int64_t k = 0; k < K; ++k) {
    T* row = rho + k * M;
    T suffix = T(0), scale = scale_top;
    for (int l = prm.L; l >= 0; --l) {
      suffix += grad_out[l * K + k] * scale;
      if (l > 0) scale /= T(l) / rc2;
      int m = static_cast<int>(n_monomials(l - 1));  // first monomial of order l (n_monomials(-1) = 0)
      for (int lx = l; lx >= 0; --lx)
        for (int ly = l - lx; ly >= 0; --ly, ++m)
          row[m] *= T(2) * suffix / (factorial<T>(lx) * factorial<T>(ly) * factorial<T>(l - lx - ly));
    }
  }
}

// grad_vectors of pairs p0 .. p1-1 from the adjoint A (K x M) of their centre; `gauss`: the Gaussians kept by
// accumulate_density for these pairs, or nullptr to compute them again.
template <typename T>
FPCORE_HD void pair_gradients(const T* vectors, const int64_t* nbr_j, const int64_t* numbers, int64_t p0, int64_t p1,
                              const T* eta, const T* rs, const Params& prm, const T* adj, T* grad_vectors,
                              const T* gauss = nullptr) {
  const int64_t K = prm.n_eta * prm.n_rs;
  const int64_t M = n_monomials(prm.L);
  const T rc = T(prm.rc);
  T px[kMaxL + 1], py[kMaxL + 1], pz[kMaxL + 1], mono[kMaxMonomials], b[kMaxMonomials];
  for (int64_t p = p0; p < p1; ++p) {
    const T x = vectors[3 * p], y = vectors[3 * p + 1], z = vectors[3 * p + 2];
    const T d = sqrt(x * x + y * y + z * z);
    T fc, dfc;
    cutoff_function(prm.kind, d, rc, fc, dfc);
    T* gv = grad_vectors + 3 * p;
    if (!(d < rc)) {
      gv[0] = gv[1] = gv[2] = T(0);
      continue;
    }
    const T z_j = T(numbers[nbr_j[p]]);
    powers(x, y, z, prm.L, px, py, pz);
    monomials(px, py, pz, prm.L, mono);
    for (int64_t m = 0; m < M; ++m) b[m] = T(0);
    T radial = T(0);  // dLoss/dd at fixed direction-monomials
    for (int64_t ie = 0; ie < prm.n_eta; ++ie)
      for (int64_t ir = 0; ir < prm.n_rs; ++ir) {
        const T dr = d - rs[ir];
        const T e = gauss != nullptr ? gauss[(p - p0) * K + ie * prm.n_rs + ir] : exp(-eta[ie] * dr * dr);
        const T g = fc * e;
        const T dg = (dfc - T(2) * eta[ie] * dr * fc) * e;
        const T* row = adj + (ie * prm.n_rs + ir) * M;
        T s = T(0);
        for (int64_t m = 0; m < M; ++m) {
          s += row[m] * mono[m];
          b[m] += row[m] * g;
        }
        radial += dg * s;
      }
    T gx, gy, gz;
    contract_monomial_gradient(px, py, pz, prm.L, b, gx, gy, gz);
    // A pair at d = 0 (coincident atoms) has no defined direction: its radial term is dropped.
    const T radial_over_d = d > T(0) ? radial / d : T(0);
    gv[0] = z_j * (gx + radial_over_d * x);
    gv[1] = z_j * (gy + radial_over_d * y);
    gv[2] = z_j * (gz + radial_over_d * z);
  }
}

}  // namespace ead
}  // namespace fpcore
