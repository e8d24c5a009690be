#pragma once
// GMP maths shared by the CPU and CUDA kernels (docs/descriptors/gmp.md).
//
// For a centre i the kernels accumulate the Cartesian moments
//   Q_f[m] = sum_{(j,T), g included} C1_fg exp(C2_kg d^2) P_a(lam x) P_b(lam y) P_c(lam z)
// for every monomial m = (a, b, c), a + b + c = n_f, and turn them into the solid-harmonic overlaps
// S_f(lambda) = sum_m coeff[n][lambda][m] Q_f[m] only once per centre (the map is linear), which is
// why the per-pair work is one exp per sigma and a handful of products per monomial.
// Order -1 uses C1 = B, C2 = -beta and has a single "monomial" (the density value).
//
// Monomials of order n are enumerated a = n..0, b = n-a..0, c = n-a-b; components lambda use the
// same enumeration (python/fpcore/descriptors/gmp.py builds coeff in that order).
#include <cmath>
#include <cstdint>

#include "common/host_device.h"

namespace fpcore {
namespace gmp {

constexpr int kMaxOrder = 9;
constexpr int kMaxMonomials = 55;  // (9 + 1)(9 + 2) / 2
constexpr int kGroupConsts = 5;    // C2, lam, v = 1/(2 gamma), max inclusion radius^2, group index k

FPCORE_HD int n_monomials(int64_t order) {
  return order < 0 ? 1 : static_cast<int>((order + 1) * (order + 2) / 2);
}

// Raw views of the per-call tables (all contiguous). Z is the atomic-number stride (119).
template <typename T>
struct Tables {
  // (R, Z, G, 5): for each (element, Gaussian) the rank-r row belongs to group k = row[4]; rows are
  // sorted by descending radius, so the first group that excludes an entry ends the loop.
  const T* group_consts;
  const int64_t* group_ptr;  // (K + 1): features of group k are group_features[ptr[k]..ptr[k+1])
  const int64_t* group_features;
  const int64_t* group_max_order;  // (K)
  const int64_t* orders;           // (F)
  const int64_t* offsets;          // (F): first moment of feature f
  const T* c1;                     // (F, Z, G)
  const T* radii2;                 // (F, Z, G)
  const T* coeffs;                 // (kMaxOrder + 1, 55, 55)
  const T* multiplicity;           // (kMaxOrder + 1, 55)
  int64_t n_groups, n_features, n_species, n_gauss;
};

// P_k(u) = E[(u + t)^k], t ~ N(0, v): P_{k+1} = u P_k + k v P_{k-1} (Gaussian integration by parts).
template <typename T>
FPCORE_HD void gaussian_moments(T u, T v, int n, T* P) {
  P[0] = T(1);
  if (n >= 1) P[1] = u;
  for (int k = 1; k < n; ++k) P[k + 1] = u * P[k] + T(k) * v * P[k - 1];
}

#if defined(__CUDACC__)
#define FPCORE_GMP_UNROLL _Pragma("unroll")
#elif defined(__clang__)
#define FPCORE_GMP_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define FPCORE_GMP_UNROLL _Pragma("GCC unroll 16")
#else
#define FPCORE_GMP_UNROLL
#endif

template <int N, typename T, typename Add>
FPCORE_HD void add_monomials(T e, const T* Px, const T* Py, const T* Pz, int64_t m, Add& add) {
  FPCORE_GMP_UNROLL
  for (int a = N; a >= 0; --a) {
    const T ea = e * Px[a];
    FPCORE_GMP_UNROLL
    for (int b = N - a; b >= 0; --b) add(m++, ea * Py[b] * Pz[N - a - b]);
  }
}

// Adds the contribution of one neighbour entry (x, y, z) of element s to the moments Q via add(m, value).
template <typename T, typename Add>
FPCORE_HD void accumulate_entry(const Tables<T>& t, T x, T y, T z, int64_t s, Add&& add) {
  using std::exp;
  const T d2 = x * x + y * y + z * z;
  T Px[kMaxOrder + 1], Py[kMaxOrder + 1], Pz[kMaxOrder + 1];
  for (int64_t g = 0; g < t.n_gauss; ++g) {
    for (int64_t r = 0; r < t.n_groups; ++r) {
      const T* gc = t.group_consts + ((r * t.n_species + s) * t.n_gauss + g) * kGroupConsts;
      if (!(d2 <= gc[3])) break;  // also stops at padding (radius^2 = -1)
      const int64_t k = static_cast<int64_t>(gc[4]);
      const T ex = exp(gc[0] * d2);
      const int nmax = static_cast<int>(t.group_max_order[k]);
      if (nmax >= 0) {
        const T lam = gc[1], v = gc[2];
        gaussian_moments(lam * x, v, nmax, Px);
        gaussian_moments(lam * y, v, nmax, Py);
        gaussian_moments(lam * z, v, nmax, Pz);
      }
      for (int64_t q = t.group_ptr[k]; q < t.group_ptr[k + 1]; ++q) {
        const int64_t f = t.group_features[q];
        const int64_t fsg = (f * t.n_species + s) * t.n_gauss + g;
        if (!(d2 <= t.radii2[fsg])) continue;
        const T e = t.c1[fsg] * ex;
        const int n = static_cast<int>(t.orders[f]);
        const int64_t m = t.offsets[f];
        switch (n) {  // compile-time orders let the monomial loops unroll completely
          case 0:
            add_monomials<0>(e, Px, Py, Pz, m, add);
            break;
          case 1:
            add_monomials<1>(e, Px, Py, Pz, m, add);
            break;
          case 2:
            add_monomials<2>(e, Px, Py, Pz, m, add);
            break;
          case 3:
            add_monomials<3>(e, Px, Py, Pz, m, add);
            break;
          case 4:
            add_monomials<4>(e, Px, Py, Pz, m, add);
            break;
          case 5:
            add_monomials<5>(e, Px, Py, Pz, m, add);
            break;
          case 6:
            add_monomials<6>(e, Px, Py, Pz, m, add);
            break;
          case 7:
            add_monomials<7>(e, Px, Py, Pz, m, add);
            break;
          case 8:
            add_monomials<8>(e, Px, Py, Pz, m, add);
            break;
          case 9:
            add_monomials<9>(e, Px, Py, Pz, m, add);
            break;
          default:
            add(m, e);  // order -1: the density value
        }
      }
    }
  }
}

// Gradient of sum_m G[m] Q[m] with respect to the entry vector (x, y, z) (self term excluded by caller).
template <typename T>
FPCORE_HD void entry_gradient(const Tables<T>& t, T x, T y, T z, int64_t s, const T* G, T* grad) {
  using std::exp;
  const T d2 = x * x + y * y + z * z;
  T Px[kMaxOrder + 1], Py[kMaxOrder + 1], Pz[kMaxOrder + 1];
  T gx = 0, gy = 0, gz = 0;
  for (int64_t g = 0; g < t.n_gauss; ++g) {
    for (int64_t r = 0; r < t.n_groups; ++r) {
      const T* gc = t.group_consts + ((r * t.n_species + s) * t.n_gauss + g) * kGroupConsts;
      if (!(d2 <= gc[3])) break;  // also stops at padding (radius^2 = -1)
      const int64_t k = static_cast<int64_t>(gc[4]);
      const T c2 = gc[0];
      const T ex = exp(c2 * d2);
      const int nmax = static_cast<int>(t.group_max_order[k]);
      const T lam = gc[1];
      if (nmax >= 0) {
        const T v = gc[2];
        gaussian_moments(lam * x, v, nmax, Px);
        gaussian_moments(lam * y, v, nmax, Py);
        gaussian_moments(lam * z, v, nmax, Pz);
      }
      // radial part: sum_m G_m e T_m (d e/d r = 2 C2 r e); angular part: lam a P_{a-1} ...
      T radial = 0, ax = 0, ay = 0, az = 0;
      for (int64_t q = t.group_ptr[k]; q < t.group_ptr[k + 1]; ++q) {
        const int64_t f = t.group_features[q];
        const int64_t fsg = (f * t.n_species + s) * t.n_gauss + g;
        if (!(d2 <= t.radii2[fsg])) continue;
        const T e = t.c1[fsg] * ex;
        const int n = static_cast<int>(t.orders[f]);
        const T* Gf = G + t.offsets[f];
        if (n < 0) {
          radial += Gf[0] * e;
          continue;
        }
        int m = 0;
        T r = 0, sx = 0, sy = 0, sz = 0;
        for (int a = n; a >= 0; --a) {
          for (int b = n - a; b >= 0; --b, ++m) {
            const int c = n - a - b;
            const T gm = Gf[m];
            r += gm * Px[a] * Py[b] * Pz[c];
            if (a > 0) sx += gm * T(a) * Px[a - 1] * Py[b] * Pz[c];
            if (b > 0) sy += gm * T(b) * Px[a] * Py[b - 1] * Pz[c];
            if (c > 0) sz += gm * T(c) * Px[a] * Py[b] * Pz[c - 1];
          }
        }
        radial += e * r;
        ax += e * sx;
        ay += e * sy;
        az += e * sz;
      }
      const T two_c2 = T(2) * c2 * radial;
      gx += two_c2 * x + lam * ax;
      gy += two_c2 * y + lam * ay;
      gz += two_c2 * z + lam * az;
    }
  }
  grad[0] += gx;
  grad[1] += gy;
  grad[2] += gz;
}

// Feature value of f from the centre's moments Q (sqrt of the multinomial-weighted sum of S^2), evaluated in the
// moments' type Acc: the CUDA kernel keeps float32 moments in double, since S cancels strongly at high orders.
template <typename T, typename Acc>
FPCORE_HD T feature_value(const Tables<T>& t, int64_t f, const Acc* Q, bool square) {
  using std::fabs;
  using std::sqrt;
  const int n = static_cast<int>(t.orders[f]);
  const Acc* q = Q + t.offsets[f];
  if (n < 0) return static_cast<T>(square ? q[0] * q[0] : fabs(q[0]));
  const int nm = n_monomials(n);
  const T* C = t.coeffs + static_cast<int64_t>(n) * kMaxMonomials * kMaxMonomials;
  const T* w = t.multiplicity + static_cast<int64_t>(n) * kMaxMonomials;
  Acc sum = 0;
  for (int l = 0; l < nm; ++l) {
    Acc S = 0;
    for (int m = 0; m < nm; ++m) S += static_cast<Acc>(C[l * kMaxMonomials + m]) * q[m];
    sum += static_cast<Acc>(w[l]) * S * S;
  }
  return static_cast<T>(square ? sum : sqrt(sum));
}

// dL/dQ_f[m] from dL/dx_f (added into G): d||S||/dS = w S / ||S||, 0 where the norm is 0.
template <typename T>
FPCORE_HD void feature_backward(const Tables<T>& t, int64_t f, const T* Q, T grad_out, bool square, T* G) {
  using std::sqrt;
  const int n = static_cast<int>(t.orders[f]);
  const T* q = Q + t.offsets[f];
  T* gq = G + t.offsets[f];
  if (n < 0) {
    gq[0] += square ? T(2) * q[0] * grad_out : (q[0] > 0 ? grad_out : (q[0] < 0 ? -grad_out : T(0)));
    return;
  }
  const int nm = n_monomials(n);
  const T* C = t.coeffs + static_cast<int64_t>(n) * kMaxMonomials * kMaxMonomials;
  const T* w = t.multiplicity + static_cast<int64_t>(n) * kMaxMonomials;
  T S[kMaxMonomials];
  T sum = 0;
  for (int l = 0; l < nm; ++l) {
    T s = 0;
    for (int m = 0; m < nm; ++m) s += C[l * kMaxMonomials + m] * q[m];
    S[l] = s;
    sum += w[l] * s * s;
  }
  T scale;
  if (square) {
    scale = T(2) * grad_out;
  } else {
    const T norm = sqrt(sum);
    if (!(norm > 0)) return;
    scale = grad_out / norm;
  }
  for (int l = 0; l < nm; ++l) {
    const T gs = scale * w[l] * S[l];
    if (gs == T(0)) continue;
    for (int m = 0; m < nm; ++m) gq[m] += C[l * kMaxMonomials + m] * gs;
  }
}

}  // namespace gmp
}  // namespace fpcore
