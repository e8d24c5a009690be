#pragma once
// wACSF maths per centre atom (docs/descriptors/wacsf.md), shared verbatim by the CPU and CUDA kernels so both
// compute the same numbers. A centre's neighbour entries are rows [begin, end) of the pair arrays.
//
// Factorisation used for speed (exact up to rounding): for an angular block with exponent
// -eta (r_ij^2 + r_ik^2 [+ r_jk^2] - m Rs^2), the term splits into per-entry radial factors
// R_j = Z_j f_c(r_ij) exp(-eta r_ij^2) (cached once per entry, not once per triplet), a per-triplet
// factor exp(-eta r_jk^2) f_c(r_jk) (G4 only), and a constant exp(m eta Rs^2) applied once per centre.
#include <cmath>
#include <cstdint>

#include "descriptors/cutoff_functions.h"

#include "common/host_device.h"

namespace fpcore {
namespace wacsf {

// float overloads on the host (the global ::sqrt etc. would promote float to double); nvcc provides
// std:: maths in device code too.
using std::exp;
using std::pow;
using std::sqrt;

// One angular block (G4 or G5). Pointers index a packed parameter table (see wacsf_checks.h).
template <typename T>
struct Angular {
  int64_t n_zeta = 0, n_lambda = 0, n_eta = 0, n_rs = 0;
  int64_t column = 0;            // first output column of the block
  bool with_jk = false;          // G4: r_jk enters the exponent and the cutoff product
  const T* zeta = nullptr;       // (n_zeta)
  const T* zeta_int = nullptr;   // (n_zeta) zeta when it is a small integer (fast power), else 0
  const T* lambda = nullptr;     // (n_lambda)
  const T* eta = nullptr;        // (n_eta)
  const T* rs_factor = nullptr;  // (n_eta, n_rs) exp(m eta Rs^2), m = 3 (G4) or 2 (G5)

  FPCORE_HD int64_t n_zl() const { return n_zeta * n_lambda; }
  FPCORE_HD int64_t n_features() const { return n_zeta * n_lambda * n_eta * n_rs; }
  FPCORE_HD bool active() const { return n_features() > 0; }
};

template <typename T>
struct Params {
  int64_t n_g2_eta = 0, n_g2_rs = 0;
  const T* g2_eta = nullptr;
  const T* g2_rs = nullptr;
  Angular<T> block[2];  // G4, G5
  CutoffFunction cutoff_fn = CutoffFunction::Cosine;
  T cutoff = T(0);
  int64_t n_features = 0;
  // Per-entry cache: d, f_c, f_c', then (R, dR/dd) for each eta of G4, then of G5.
  int64_t pair_stride = 3;
  // Per-centre workspace: A and dA/dcos (n_zl each) plus W (n_zl * n_eta) per angular block.
  int64_t centre_stride = 0;

  FPCORE_HD bool any_angular() const { return block[0].active() || block[1].active(); }
};

// x^n for integer n >= 0 by repeated squaring (integral zeta: faster than pow and exact for n = 1).
template <typename T>
FPCORE_HD T int_pow(T x, int64_t n) {
  T result = T(1);
  while (n > 0) {
    if (n & 1) result *= x;
    x *= x;
    n >>= 1;
  }
  return result;
}

// A = 2^(1-zeta) (1 + lambda cos)^zeta and dA/dcos, evaluated folded as A = 2 h^zeta, dA/dcos = zeta lambda
// h^(zeta-1) with h = (1 + lambda cos) / 2: for |lambda| <= 1, h <= 1, so no intermediate overflows at any zeta
// (the unfolded product is inf * 0 = NaN from zeta ~ 130 in float32, ~ 1024 in float64). Halving is exact and
// repeated squaring commutes with powers of two, so the values are those of the unfolded form up to one rounding.
// For non-integral zeta h is clamped at 0: |lambda| <= 1 is enforced there, so a negative base is rounding noise
// (the reference's np.power would give NaN; the limit value is 0). zeta >= 1 keeps the derivative finite at 0.
template <typename T>
FPCORE_HD void angular_factor(const Angular<T>& b, int64_t zi, int64_t li, T cos_theta, T& value, T& derivative) {
  const T lambda = b.lambda[li];
  const int64_t n = static_cast<int64_t>(b.zeta_int[zi]);
  T h = (T(1) + lambda * cos_theta) * T(0.5);
  T power_m1;
  if (n > 0) {
    power_m1 = int_pow(h, n - 1);
  } else {
    h = h > T(0) ? h : T(0);
    power_m1 = pow(h, b.zeta[zi] - T(1));
  }
  value = T(2) * power_m1 * h;
  derivative = b.zeta[zi] * lambda * power_m1;
}

// Fills the per-entry cache of one centre and adds the G2 features (out must start at zero).
template <typename T>
FPCORE_HD void pair_terms(const Params<T>& P, int64_t n, const T* vec, const int64_t* nbr, const int64_t* numbers,
                          T* cache, T* out) {
  for (int64_t p = 0; p < n; ++p) {
    const T x = vec[3 * p], y = vec[3 * p + 1], z = vec[3 * p + 2];
    const T d = sqrt(x * x + y * y + z * z);
    T fc, dfc;
    cutoff_function(P.cutoff_fn, d, P.cutoff, fc, dfc);
    T* c = cache + p * P.pair_stride;
    c[0] = d;
    c[1] = fc;
    c[2] = dfc;
    const T weight = static_cast<T>(numbers[nbr[p]]);
    if (out != nullptr && fc != T(0)) {
      for (int64_t a = 0; a < P.n_g2_eta; ++a) {
        for (int64_t r = 0; r < P.n_g2_rs; ++r) {
          const T t = d - P.g2_rs[r];
          out[a * P.n_g2_rs + r] += weight * exp(-P.g2_eta[a] * t * t) * fc;
        }
      }
    }
    T* radial = c + 3;
    for (int blk = 0; blk < 2; ++blk) {
      const Angular<T>& b = P.block[blk];
      if (!b.active()) continue;
      for (int64_t e = 0; e < b.n_eta; ++e) {
        const T g = weight * exp(-b.eta[e] * d * d);
        radial[2 * e] = g * fc;
        radial[2 * e + 1] = g * (dfc - T(2) * b.eta[e] * d * fc);
      }
      radial += 2 * b.n_eta;
    }
  }
}

template <typename T>
FPCORE_HD const T* block_radial(const Params<T>& P, const T* cache_row, int blk) {
  return cache_row + 3 + (blk == 1 && P.block[0].active() ? 2 * P.block[0].n_eta : 0);
}

// Features of one centre: out (n_features) is overwritten.
template <typename T>
FPCORE_HD void centre_forward(const Params<T>& P, int64_t n, const T* vec, const int64_t* nbr, const int64_t* numbers,
                              T* cache, T* work, T* out) {
  for (int64_t f = 0; f < P.n_features; ++f) out[f] = T(0);
  pair_terms(P, n, vec, nbr, numbers, cache, out);
  if (!P.any_angular() || n < 2) return;
  const T rc2 = P.cutoff * P.cutoff;
  const bool need_far = P.block[1].active();  // G5 has no r_jk cutoff
  // Angular sums accumulate per (zeta, lambda, eta) in the Rs = 0 column; Rs is applied at the end.
  for (int64_t p = 0; p + 1 < n; ++p) {
    const T* cp = cache + p * P.pair_stride;
    if (cp[0] == T(0) || cp[1] == T(0)) continue;  // coincident atom or outside the cutoff
    const T* a = vec + 3 * p;
    for (int64_t q = p + 1; q < n; ++q) {
      const T* cq = cache + q * P.pair_stride;
      if (cq[0] == T(0) || cq[1] == T(0)) continue;
      const T* bv = vec + 3 * q;
      const T dx = bv[0] - a[0], dy = bv[1] - a[1], dz = bv[2] - a[2];
      const T rjk2 = dx * dx + dy * dy + dz * dz;
      const bool near = rjk2 < rc2;
      if (!near && !need_far) continue;
      T fcjk = T(0), dfcjk = T(0);
      if (near) cutoff_function(P.cutoff_fn, sqrt(rjk2), P.cutoff, fcjk, dfcjk);
      const T cos_theta = (a[0] * bv[0] + a[1] * bv[1] + a[2] * bv[2]) / (cp[0] * cq[0]);
      for (int blk = 0; blk < 2; ++blk) {
        const Angular<T>& b = P.block[blk];
        if (!b.active() || (b.with_jk && (!near || fcjk == T(0)))) continue;
        T* A = work;
        for (int64_t zi = 0; zi < b.n_zeta; ++zi)
          for (int64_t li = 0; li < b.n_lambda; ++li) {
            T dA;
            angular_factor(b, zi, li, cos_theta, A[zi * b.n_lambda + li], dA);
          }
        const T* Rp = block_radial(P, cp, blk);
        const T* Rq = block_radial(P, cq, blk);
        T* block_out = out + b.column;
        for (int64_t e = 0; e < b.n_eta; ++e) {
          T E = Rp[2 * e] * Rq[2 * e];
          if (b.with_jk) E *= exp(-b.eta[e] * rjk2) * fcjk;
          for (int64_t zl = 0; zl < b.n_zl(); ++zl) block_out[(zl * b.n_eta + e) * b.n_rs] += A[zl] * E;
        }
      }
    }
  }
  for (int blk = 0; blk < 2; ++blk) {
    const Angular<T>& b = P.block[blk];
    if (!b.active()) continue;
    T* block_out = out + b.column;
    for (int64_t zl = 0; zl < b.n_zl(); ++zl)
      for (int64_t e = 0; e < b.n_eta; ++e) {
        T* row = block_out + (zl * b.n_eta + e) * b.n_rs;
        const T sum = row[0];
        for (int64_t r = b.n_rs - 1; r >= 0; --r) row[r] = sum * b.rs_factor[e * b.n_rs + r];
      }
  }
}

// dL/dvectors of one centre's entries given dL/dfeatures (grad_out). grad (n, 3) is overwritten.
template <typename T>
FPCORE_HD void centre_backward(const Params<T>& P, int64_t n, const T* vec, const int64_t* nbr, const int64_t* numbers,
                               const T* grad_out, T* cache, T* work, T* grad) {
  for (int64_t k = 0; k < 3 * n; ++k) grad[k] = T(0);
  pair_terms(P, n, vec, nbr, numbers, cache, static_cast<T*>(nullptr));
  // G2: dG2/dd = Z exp(-eta t^2) (f_c' - 2 eta t f_c), t = d - Rs.
  for (int64_t p = 0; p < n; ++p) {
    const T* cp = cache + p * P.pair_stride;
    const T d = cp[0], fc = cp[1], dfc = cp[2];
    if (d == T(0) || (fc == T(0) && dfc == T(0))) continue;
    const T weight = static_cast<T>(numbers[nbr[p]]);
    T gd = T(0);
    for (int64_t a = 0; a < P.n_g2_eta; ++a)
      for (int64_t r = 0; r < P.n_g2_rs; ++r) {
        const T t = d - P.g2_rs[r];
        const T eta = P.g2_eta[a];
        gd += grad_out[a * P.n_g2_rs + r] * weight * exp(-eta * t * t) * (dfc - T(2) * eta * t * fc);
      }
    const T s = gd / d;
    grad[3 * p] += s * vec[3 * p];
    grad[3 * p + 1] += s * vec[3 * p + 1];
    grad[3 * p + 2] += s * vec[3 * p + 2];
  }
  if (!P.any_angular() || n < 2) return;

  // W[zl, e] = sum_Rs dL/dG[zl, e, Rs] exp(m eta Rs^2): the incoming gradient folded over Rs.
  T* W[2];
  T* A[2];
  T* dA[2];
  {
    T* w = work;
    for (int blk = 0; blk < 2; ++blk) {
      const Angular<T>& b = P.block[blk];
      A[blk] = w;
      dA[blk] = w + b.n_zl();
      W[blk] = w + 2 * b.n_zl();
      w += 2 * b.n_zl() + b.n_zl() * b.n_eta;
      if (!b.active()) continue;
      const T* g = grad_out + b.column;
      for (int64_t zl = 0; zl < b.n_zl(); ++zl)
        for (int64_t e = 0; e < b.n_eta; ++e) {
          T sum = T(0);
          for (int64_t r = 0; r < b.n_rs; ++r) sum += g[(zl * b.n_eta + e) * b.n_rs + r] * b.rs_factor[e * b.n_rs + r];
          W[blk][zl * b.n_eta + e] = sum;
        }
    }
  }

  const T rc2 = P.cutoff * P.cutoff;
  const bool need_far = P.block[1].active();
  for (int64_t p = 0; p + 1 < n; ++p) {
    const T* cp = cache + p * P.pair_stride;
    const T dp = cp[0];
    if (dp == T(0) || (cp[1] == T(0) && cp[2] == T(0))) continue;
    const T* a = vec + 3 * p;
    T ga0 = T(0), ga1 = T(0), ga2 = T(0);
    for (int64_t q = p + 1; q < n; ++q) {
      const T* cq = cache + q * P.pair_stride;
      const T dq = cq[0];
      if (dq == T(0) || (cq[1] == T(0) && cq[2] == T(0))) continue;
      const T* bv = vec + 3 * q;
      const T dx = bv[0] - a[0], dy = bv[1] - a[1], dz = bv[2] - a[2];
      const T rjk2 = dx * dx + dy * dy + dz * dz;
      const bool near = rjk2 < rc2;
      if (!near && !need_far) continue;
      T rjk = T(0), fcjk = T(0), dfcjk = T(0);
      if (near) {
        rjk = sqrt(rjk2);
        cutoff_function(P.cutoff_fn, rjk, P.cutoff, fcjk, dfcjk);
      }
      const T inv_pq = T(1) / (dp * dq);
      const T cos_theta = (a[0] * bv[0] + a[1] * bv[1] + a[2] * bv[2]) * inv_pq;
      // Coefficients of dcos, dr_ij, dr_ik, dr_jk in the triplet's contribution to dL.
      T s_cos = T(0), s_p = T(0), s_q = T(0), s_jk = T(0);
      for (int blk = 0; blk < 2; ++blk) {
        const Angular<T>& b = P.block[blk];
        if (!b.active() || (b.with_jk && (!near || (fcjk == T(0) && dfcjk == T(0))))) continue;
        for (int64_t zi = 0; zi < b.n_zeta; ++zi)
          for (int64_t li = 0; li < b.n_lambda; ++li)
            angular_factor(b, zi, li, cos_theta, A[blk][zi * b.n_lambda + li], dA[blk][zi * b.n_lambda + li]);
        const T* Rp = block_radial(P, cp, blk);
        const T* Rq = block_radial(P, cq, blk);
        for (int64_t e = 0; e < b.n_eta; ++e) {
          T B = T(0), dB = T(0);
          for (int64_t zl = 0; zl < b.n_zl(); ++zl) {
            const T w = W[blk][zl * b.n_eta + e];
            B += w * A[blk][zl];
            dB += w * dA[blk][zl];
          }
          T X = T(1), dX = T(0);
          if (b.with_jk) {
            const T ex = exp(-b.eta[e] * rjk2);
            X = ex * fcjk;
            dX = ex * (dfcjk - T(2) * b.eta[e] * rjk * fcjk);
          }
          const T rp = Rp[2 * e], drp = Rp[2 * e + 1], rq = Rq[2 * e], drq = Rq[2 * e + 1];
          s_cos += dB * rp * rq * X;
          s_p += B * drp * rq * X;
          s_q += B * rp * drq * X;
          s_jk += B * rp * rq * dX;
        }
      }
      // dcos/da = b/(|a||b|) - cos a/|a|^2, dr_jk/da = -(b - a)/r_jk, and symmetrically for b.
      const T cp_a = -s_cos * cos_theta / (dp * dp) + s_p / dp;
      const T cq_b = -s_cos * cos_theta / (dq * dq) + s_q / dq;
      const T cross = s_cos * inv_pq;
      const T jk = rjk > T(0) ? s_jk / rjk : T(0);
      ga0 += cp_a * a[0] + cross * bv[0] - jk * dx;
      ga1 += cp_a * a[1] + cross * bv[1] - jk * dy;
      ga2 += cp_a * a[2] + cross * bv[2] - jk * dz;
      grad[3 * q] += cq_b * bv[0] + cross * a[0] + jk * dx;
      grad[3 * q + 1] += cq_b * bv[1] + cross * a[1] + jk * dy;
      grad[3 * q + 2] += cq_b * bv[2] + cross * a[2] + jk * dz;
    }
    grad[3 * p] += ga0;
    grad[3 * p + 1] += ga1;
    grad[3 * p + 2] += ga2;
  }
}

}  // namespace wacsf
}  // namespace fpcore
