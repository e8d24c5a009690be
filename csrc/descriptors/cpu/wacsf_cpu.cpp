// CPU kernels of fpcore::wacsf and fpcore::wacsf_backward: parallel over centre atoms. Every
// neighbour entry belongs to exactly one centre, so the backward writes its rows without races.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <atomic>
#include <vector>

#include "common/index_checks.h"
#include "common/vector_math.h"
#include "descriptors/wacsf_checks.h"

namespace fpcore {
namespace wacsf {
namespace {

using List = at::ArrayRef<double>;

// CPU-only restructuring of the maths of wacsf_math.h (same formulas, same per-column operations for
// any parameter order). Per centre, the entries that can contribute are packed into contiguous
// structure-of-arrays rows: coordinates, distance and the per-eta radial factors
// R = Z f_c exp(-eta d^2) (and dR/dd for the backward). The triplet loop then streams through
// these rows with unit stride, and pays only for sqrt, f_c(r_jk) and exp(-eta r_jk^2) per triplet,
// and only where r_jk < Rc (G4) before any transcendental.

template <typename T>
struct Scratch {
  int64_t cap = 0;                         // rows reserved per array (max entries of a centre in the chunk)
  int64_t n_radial = 0;                    // eta rows of G4 followed by those of G5
  std::vector<T> x, y, z, d, fc, dfc, wt;  // wt: Z_j (forward)
  std::vector<T> radial, dradial;          // (n_radial, cap)
  std::vector<T> gx, gy, gz;               // backward: dL/dvectors of the packed rows
  std::vector<int64_t> index;              // packed row -> entry of the centre
  std::vector<T> r2, cos, fcjk, dfcjk;     // per partner q: r_jk^2, cos theta, f_c(r_jk), f_c'(r_jk)
  std::vector<T> acc;                      // forward: angular sums (n_zl, n_eta) per block
  std::vector<T> A, dA, W;                 // angular factors (n_zl) and folded gradient (n_zl, n_eta)
  // compacted partners t of row p (padded to whole lanes): cos, r_jk^2, weight (f_c(r_jk), 1 for G5, 0 for
  // padding), partner row, per-eta triplet factors E (n_eta, lcap: forward E, backward exp(-eta r_jk^2)),
  // A and its powers
  std::vector<T> ccos, cr2, cw, E, Av, base, pw;
  std::vector<int64_t> cq;
  // backward, per compacted partner: f_c'(r_jk) (0 for G5 and padding), r_jk, A and dA/dcos per (zeta, lambda)
  // (n_zl, lcap), and the scatter coefficients of the partner's vector
  std::vector<T> cdw, crjk, Az, dAz, s_p, s_q, s_jk;
  std::vector<T> inv_d;  // backward: 1 / d of the packed entries
  // backward, per compacted partner: its radial factors R, dR/dd per eta (n_eta, lcap), its coordinates and 1 / d
  std::vector<T> rq, drq, xq, yq, zq, idq;
  int64_t lcap = 0;

  Scratch(const Params<T>& P, int64_t max_n, bool backward) : cap(std::max<int64_t>(max_n, 1)) {
    int64_t n_zl = 0, n_w = 0;
    for (int blk = 0; blk < 2; ++blk) {
      const Angular<T>& b = P.block[blk];
      if (!b.active()) continue;
      n_radial += b.n_eta;
      n_zl = std::max(n_zl, b.n_zl());
      n_w += b.n_zl() * b.n_eta;
    }
    lcap = (cap + kLanes<T> - 1) / kLanes<T> * kLanes<T>;
    for (auto* v : {&x, &y, &z, &d, &fc, &dfc, &wt}) v->resize(static_cast<size_t>(lcap));
    index.resize(static_cast<size_t>(cap));
    for (auto* v : {&r2, &cos, &fcjk, &dfcjk}) v->resize(static_cast<size_t>(cap));
    for (auto* v : {&ccos, &cr2, &cw, &Av, &base, &pw}) v->resize(static_cast<size_t>(lcap));
    cq.resize(static_cast<size_t>(lcap));
    E.resize(static_cast<size_t>(std::max<int64_t>(n_radial, 1) * lcap));
    if (backward) {
      for (auto* v : {&cdw, &crjk, &s_p, &s_q, &s_jk, &inv_d, &xq, &yq, &zq, &idq})
        v->resize(static_cast<size_t>(lcap));
      rq.resize(static_cast<size_t>(std::max<int64_t>(n_radial, 1) * lcap));
      drq.resize(rq.size());
      Az.resize(static_cast<size_t>(std::max<int64_t>(n_zl, 1) * lcap));
      dAz.resize(Az.size());
    }
    radial.resize(static_cast<size_t>(std::max<int64_t>(n_radial * cap, 1)));
    acc.resize(static_cast<size_t>(std::max<int64_t>(n_w, 1)));
    A.resize(static_cast<size_t>(std::max<int64_t>(n_zl, 1)));
    dA.resize(A.size());
    if (backward) {
      dradial.resize(radial.size());
      for (auto* v : {&gx, &gy, &gz}) v->resize(static_cast<size_t>(cap));
      W.resize(acc.size());
    }
  }
};

// Runs `body(begin, end, scratch)` over chunks of centres with per-thread scratch buffers.
template <typename scalar_t, typename Body>
void for_each_chunk(const Params<scalar_t>& P, const int64_t* ptr, int64_t n_atoms, bool backward, Body body) {
  // Triplet work grows as n^2 per centre, so small chunks keep the threads balanced.
  at::parallel_for(0, n_atoms, 4, [&](int64_t begin, int64_t end) {
    int64_t max_n = 0;
    for (int64_t i = begin; i < end; ++i) max_n = std::max(max_n, ptr[i + 1] - ptr[i]);
    Scratch<scalar_t> s(P, max_n, backward);
    body(begin, end, s);
  });
}

// A_zl = 2^(1-zeta) (1 + lambda cos)^zeta (and dA/dcos) for all (zeta, lambda) of a block.
template <typename T>
FPCORE_INLINE void angular_factors(const Angular<T>& b, T cos_theta, T* A, T* dA) {
  for (int64_t zi = 0; zi < b.n_zeta; ++zi)
    for (int64_t li = 0; li < b.n_lambda; ++li) {
      T value, derivative;
      angular_factor(b, zi, li, cos_theta, value, derivative);
      A[zi * b.n_lambda + li] = value;
      if (dA != nullptr) dA[zi * b.n_lambda + li] = derivative;
    }
}

// Row p of the triplet loops: for every partner q > p, r_jk^2, cos theta and (G4) f_c(r_jk), f_c'(r_jk)
// into arrays indexed by q, then the values of the partners that contribute (r_jk < Rc for G4) packed
// (with `derivative`, f_c'(r_jk) too); returns their count padded to whole lanes. The first loop has no
// calls or branches for the cosine cutoff, so gcc vectorises it; the packing is branch-free (about half
// of the partners pass, a branch would mispredict constantly).
template <typename T>
FPCORE_INLINE int64_t triplet_row(const Params<T>& P, bool with_jk, bool derivative, int64_t p, int64_t m,
                                  Scratch<T>& s) {
  const T* __restrict X = s.x.data(), * __restrict Y = s.y.data(), * __restrict Z = s.z.data(), * __restrict D = s.d.data();
  T *__restrict r2v = s.r2.data(), *__restrict cosv = s.cos.data(), *__restrict fcv = s.fcjk.data(),
    *__restrict dfcv = s.dfcjk.data();
  const T xp = X[p], yp = Y[p], zp = Z[p], dp = D[p];
  const T rc = P.cutoff, rc2 = rc * rc;
  const bool cosine = P.cutoff_fn == CutoffFunction::Cosine;
#pragma omp simd
  for (int64_t q = p + 1; q < m; ++q) {
    const T dx = X[q] - xp, dy = Y[q] - yp, dz = Z[q] - zp;
    const T r2 = dx * dx + dy * dy + dz * dz;
    r2v[q] = r2;
    cosv[q] = (xp * X[q] + yp * Y[q] + zp * Z[q]) / (dp * D[q]);
  }
  if (with_jk && cosine) {
    // cos(pi x) = -sin(pi (x - 1/2)) and sin(pi x) = cos(pi (x - 1/2)) for x = r_jk / Rc.
    const T half_pi_over_rc = T(-0.5) * T(3.14159265358979323846) / rc;
    // Branch-free (sqrt of the clamped r^2, then a 0/1 mask), so gcc vectorises it: with a branch per partner the
    // backward ran these polynomials one partner at a time and spent ~40% of its time here.
#pragma omp simd
    for (int64_t q = p + 1; q < m; ++q) {
      const T r2 = r2v[q];
      const T inside = r2 < rc2 ? T(1) : T(0);
      const T u = std::sqrt(std::min(r2, rc2)) / rc - T(0.5);
      fcv[q] = inside * (T(0.5) * (T(1) - sin_pi_half(u)));
      if (derivative) dfcv[q] = inside * (half_pi_over_rc * cos_pi_half(u));  // loop-invariant: unswitched
    }
  } else if (with_jk) {
    for (int64_t q = p + 1; q < m; ++q) cutoff_function(P.cutoff_fn, std::sqrt(r2v[q]), rc, fcv[q], dfcv[q]);
  }
  // The contributing partners' values packed contiguously and padded to whole lanes with zero-weight
  // entries, so the per-triplet loops run over full vectors with unit stride.
  T* __restrict cc = s.ccos.data(), * __restrict cr = s.cr2.data(), * __restrict cw = s.cw.data();
  int64_t* __restrict cq = s.cq.data();
  int64_t count = 0;
  if (derivative) {  // backward: f_c'(r_jk) too (0 for G5, whose weight is the constant 1)
    T* __restrict cd = s.cdw.data();
    for (int64_t q = p + 1; q < m; ++q) {
      cc[count] = cosv[q];
      cr[count] = r2v[q];
      cw[count] = with_jk ? fcv[q] : T(1);
      cd[count] = with_jk ? dfcv[q] : T(0);
      cq[count] = q;
      count += with_jk ? static_cast<int64_t>(r2v[q] < rc2) : 1;
    }
  } else {
    for (int64_t q = p + 1; q < m; ++q) {
      cc[count] = cosv[q];
      cr[count] = r2v[q];
      cw[count] = with_jk ? fcv[q] : T(1);
      cq[count] = q;
      count += with_jk ? static_cast<int64_t>(r2v[q] < rc2) : 1;
    }
  }
  const int64_t padded = (count + kLanes<T> - 1) / kLanes<T> * kLanes<T>;
  for (int64_t t = count; t < padded; ++t) {
    cc[t] = cr[t] = cw[t] = T(0);
    if (derivative) s.cdw[t] = T(0);
    cq[t] = p;
  }
  return padded;
}

// Packs the entries of one centre that the backward needs (d != 0 and f_c or f_c' != 0, the set wacsf_math.h
// uses; see Scratch), with Z_j, then the radial rows R = Z f_c exp(-eta d^2) and dR/dd as unit-stride passes.
template <typename T>
FPCORE_INLINE int64_t pack_centre_backward(const Params<T>& P, int64_t n, const T* vec, const int64_t* nbr,
                                           const int64_t* numbers, Scratch<T>& s) {
  const int64_t cap = s.cap;
  T *__restrict X = s.x.data(), *__restrict Y = s.y.data(), *__restrict Z = s.z.data(), *__restrict D = s.d.data(),
    *__restrict FC = s.fc.data(), *__restrict DFC = s.dfc.data(), *__restrict WT = s.wt.data();
  int64_t* __restrict index = s.index.data();
  int64_t m = 0;
  for (int64_t p = 0; p < n; ++p) {
    const T x = vec[3 * p], y = vec[3 * p + 1], z = vec[3 * p + 2];
    const T d = std::sqrt(x * x + y * y + z * z);
    T fc, dfc;
    cutoff_function(P.cutoff_fn, d, P.cutoff, fc, dfc);
    if (d == T(0) || (fc == T(0) && dfc == T(0))) continue;
    X[m] = x;
    Y[m] = y;
    Z[m] = z;
    D[m] = d;
    FC[m] = fc;
    DFC[m] = dfc;
    WT[m] = static_cast<T>(numbers[nbr[p]]);
    index[m] = p;
    ++m;
  }
  T* __restrict inv_d = s.inv_d.data();
  for (int64_t t = 0; t < m; ++t) inv_d[t] = T(1) / D[t];
  int64_t row = 0;
  for (int blk = 0; blk < 2; ++blk) {
    const Angular<T>& b = P.block[blk];
    if (!b.active()) continue;
    for (int64_t e = 0; e < b.n_eta; ++e, ++row) {
      T* __restrict Rrow = s.radial.data() + row * cap;
      T* __restrict dRrow = s.dradial.data() + row * cap;
      const T eta = b.eta[e];
      for (int64_t t = 0; t < m; ++t) {
        const T g = WT[t] * (eta >= T(0) ? static_cast<T>(exp_nonpositive(static_cast<double>(-eta * D[t] * D[t])))
                                         : std::exp(-eta * D[t] * D[t]));
        Rrow[t] = g * FC[t];
        dRrow[t] = g * (DFC[t] - T(2) * eta * D[t] * FC[t]);
      }
    }
  }
  return m;
}

// Forward packing (the rows of pack_centre_backward with f_c != 0, and the G2 sums): the scalar loop
// only packs the entries with f_c != 0 (exactly the G2 terms), then the G2 terms and the radial rows
// are unit-stride passes with exp_nonpositive; entries at d = 0 (no angle) are dropped afterwards.
template <typename T>
FPCORE_INLINE int64_t pack_centre_forward(const Params<T>& P, int64_t n, const T* vec, const int64_t* nbr,
                                          const int64_t* numbers, Scratch<T>& s, T* out) {
  constexpr int64_t L = kLanes<T>;
  const int64_t cap = s.cap;
  T *__restrict X = s.x.data(), *__restrict Y = s.y.data(), *__restrict Z = s.z.data(), *__restrict D = s.d.data(),
    *__restrict FC = s.fc.data(), *__restrict DFC = s.dfc.data(), *__restrict W = s.wt.data();
  int64_t* __restrict index = s.index.data();
  int64_t m = 0;
  for (int64_t p = 0; p < n; ++p) {
    const T x = vec[3 * p], y = vec[3 * p + 1], z = vec[3 * p + 2];
    const T d = std::sqrt(x * x + y * y + z * z);
    T fc, dfc;
    cutoff_function(P.cutoff_fn, d, P.cutoff, fc, dfc);
    if (fc == T(0)) continue;
    X[m] = x;
    Y[m] = y;
    Z[m] = z;
    D[m] = d;
    FC[m] = fc;
    DFC[m] = dfc;
    W[m] = static_cast<T>(numbers[nbr[p]]);
    index[m] = p;
    ++m;
  }
  const int64_t padded = (m + L - 1) / L * L;
  for (int64_t t = m; t < padded; ++t) X[t] = Y[t] = Z[t] = D[t] = FC[t] = DFC[t] = W[t] = T(0);
  for (int64_t a = 0; a < P.n_g2_eta; ++a)
    for (int64_t r = 0; r < P.n_g2_rs; ++r) {
      const T eta = P.g2_eta[a], rs = P.g2_rs[r];
      T lanes[L] = {};
      if (eta >= T(0)) {
        const T minus_eta = -eta;
        for (int64_t t0 = 0; t0 < padded; t0 += L)
          for (int64_t l = 0; l < L; ++l) {
            const T t = D[t0 + l] - rs;
            lanes[l] +=
                W[t0 + l] * static_cast<T>(exp_nonpositive(static_cast<double>(minus_eta * t * t))) * FC[t0 + l];
          }
      } else {  // a growing exponential, outside exp_nonpositive's domain
        for (int64_t t0 = 0; t0 < padded; t0 += L)
          for (int64_t l = 0; l < L; ++l) {
            const T t = D[t0 + l] - rs;
            lanes[l] += W[t0 + l] * std::exp(-eta * t * t) * FC[t0 + l];
          }
      }
      T sum = T(0);
      for (int64_t l = 0; l < L; ++l) sum += lanes[l];
      out[a * P.n_g2_rs + r] += sum;
    }
  int64_t k = 0;
  for (int64_t t = 0; t < m; ++t) {
    if (D[t] == T(0)) continue;  // rare (overlapping images): a branch that is always predicted
    X[k] = X[t];
    Y[k] = Y[t];
    Z[k] = Z[t];
    D[k] = D[t];
    FC[k] = FC[t];
    DFC[k] = DFC[t];
    W[k] = W[t];
    index[k] = index[t];
    ++k;
  }
  m = k;
  int64_t row = 0;
  for (int blk = 0; blk < 2; ++blk) {
    const Angular<T>& b = P.block[blk];
    if (!b.active()) continue;
    for (int64_t e = 0; e < b.n_eta; ++e, ++row) {
      T* __restrict Rrow = s.radial.data() + row * cap;
      const T eta = b.eta[e];
      if (eta >= T(0)) {
        const T minus_eta = -eta;
        for (int64_t t = 0; t < m; ++t)
          Rrow[t] = W[t] * static_cast<T>(exp_nonpositive(static_cast<double>(minus_eta * D[t] * D[t]))) * FC[t];
      } else {
        for (int64_t t = 0; t < m; ++t) Rrow[t] = W[t] * std::exp(-eta * D[t] * D[t]) * FC[t];
      }
    }
  }
  return m;
}

// Features of one centre: out (n_features) is overwritten. Per row p the contributing partners are
// compacted (triplet_row), then every per-triplet quantity is a separate unit-stride pass over them:
// E_e = R_e(p) R_e(q) exp(-eta_e r_jk^2) w (exp_nonpositive, vectorised), A_zl (int_pow's squarings as
// whole-array passes, so the values are those of angular_factor), and the sums of A_zl E_e over
// fixed-width lane arrays. Lanes sum in another order than wacsf_math.h: results agree to rounding.
template <typename T>
FPCORE_INLINE void centre_forward_cpu(const Params<T>& P, int64_t n, const T* vec, const int64_t* nbr,
                                      const int64_t* numbers, Scratch<T>& s, T* out) {
  constexpr int64_t L = kLanes<T>;
  for (int64_t f = 0; f < P.n_features; ++f) out[f] = T(0);
  const int64_t m = pack_centre_forward(P, n, vec, nbr, numbers, s, out);
  if (!P.any_angular() || m < 2) return;
  const int64_t cap = s.cap, lcap = s.lcap;
  const T* __restrict cc = s.ccos.data(), * __restrict cr = s.cr2.data(), * __restrict cw = s.cw.data();
  const int64_t* __restrict cq = s.cq.data();
  T* __restrict E = s.E.data(), * __restrict Av = s.Av.data(), * __restrict base = s.base.data(), * __restrict pw = s.pw.data();
  int64_t row0 = 0;  // first radial row of the block
  for (int blk = 0; blk < 2; ++blk) {
    const Angular<T>& b = P.block[blk];
    if (!b.active()) continue;
    const int64_t n_eta = b.n_eta, n_zl = b.n_zl();
    T* acc = s.acc.data();
    for (int64_t k = 0; k < n_zl * n_eta; ++k) acc[k] = T(0);
    const T* R = s.radial.data() + row0 * cap;
    for (int64_t p = 0; p + 1 < m; ++p) {
      const int64_t K = triplet_row(P, b.with_jk, false, p, m, s);
      if (K == 0) continue;
      for (int64_t e = 0; e < n_eta; ++e) {
        const T* __restrict Re = R + e * cap;
        const T rp = Re[p];
        T* __restrict Ee = E + e * lcap;
        if (b.with_jk && b.eta[e] >= T(0)) {
          const T minus_eta = -b.eta[e];
          for (int64_t t = 0; t < K; ++t)
            Ee[t] = static_cast<T>(exp_nonpositive(static_cast<double>(minus_eta * cr[t])));
#pragma omp simd
          for (int64_t t = 0; t < K; ++t) Ee[t] = rp * Re[cq[t]] * Ee[t] * cw[t];
        } else if (b.with_jk) {  // eta < 0: a growing exponential, outside exp_nonpositive's domain
          for (int64_t t = 0; t < K; ++t) Ee[t] = rp * Re[cq[t]] * std::exp(-b.eta[e] * cr[t]) * cw[t];
        } else {
          for (int64_t t = 0; t < K; ++t) Ee[t] = rp * Re[cq[t]] * cw[t];
        }
      }
      for (int64_t zi = 0; zi < b.n_zeta; ++zi)
        for (int64_t li = 0; li < b.n_lambda; ++li) {
          const int64_t zl = zi * b.n_lambda + li;
          const int64_t nz = static_cast<int64_t>(b.zeta_int[zi]);
          if (nz > 0) {
            // the folded form of angular_factor: 2 h^zeta, h = (1 + lambda cos) / 2 (no overflow at large zeta)
            const T lambda = b.lambda[li];
            for (int64_t t = 0; t < K; ++t) {
              base[t] = (T(1) + lambda * cc[t]) * T(0.5);
              Av[t] = base[t];
              pw[t] = T(1);
            }
            for (int64_t k = nz - 1; k > 0; k >>= 1) {
              if (k & 1)
                for (int64_t t = 0; t < K; ++t) pw[t] *= Av[t];
              if (k > 1)
                for (int64_t t = 0; t < K; ++t) Av[t] *= Av[t];
            }
            for (int64_t t = 0; t < K; ++t) Av[t] = T(2) * pw[t] * base[t];
          } else {
            for (int64_t t = 0; t < K; ++t) {
              T unused;
              angular_factor(b, zi, li, cc[t], Av[t], unused);
            }
          }
          for (int64_t e = 0; e < n_eta; ++e) {
            const T* __restrict Ee = E + e * lcap;
            T lanes[L] = {};
            for (int64_t t0 = 0; t0 < K; t0 += L)
              for (int64_t l = 0; l < L; ++l) lanes[l] += Av[t0 + l] * Ee[t0 + l];
            T sum = T(0);
            for (int64_t l = 0; l < L; ++l) sum += lanes[l];
            acc[zl * n_eta + e] += sum;
          }
        }
    }
    // Rs enters as the constant factor exp(m eta Rs^2).
    T* block_out = out + b.column;
    for (int64_t zl = 0; zl < n_zl; ++zl)
      for (int64_t e = 0; e < n_eta; ++e)
        for (int64_t r = 0; r < b.n_rs; ++r)
          block_out[(zl * n_eta + e) * b.n_rs + r] = acc[zl * n_eta + e] * b.rs_factor[e * b.n_rs + r];
    row0 += n_eta;
  }
}

// dL/dvectors of one centre's entries given dL/dfeatures (grad_out). grad (n, 3) is overwritten.
// Vectorised as the forward: per row p the contributing partners are compacted (triplet_row), then every
// per-triplet quantity is a unit-stride pass over them: exp(-eta r_jk^2) (exp_nonpositive), A and dA/dcos
// (int_pow's squarings as array passes), B_e = sum_zl W A and dB_e = sum_zl W dA, the coefficients of
// dcos, dr_ij, dr_ik, dr_jk, and the p-side gradient as a lane sum; only the scatter into the partners'
// rows is scalar. Same formulas as wacsf_math.h, summed in another order: results agree to rounding.
template <typename T>
FPCORE_INLINE void centre_backward_cpu(const Params<T>& P, int64_t n, const T* vec, const int64_t* nbr,
                                       const int64_t* numbers, const T* grad_out, Scratch<T>& s, T* grad) {
  for (int64_t k = 0; k < 3 * n; ++k) grad[k] = T(0);
  const int64_t m = pack_centre_backward(P, n, vec, nbr, numbers, s);
  const int64_t cap = s.cap, lcap = s.lcap;
  T* __restrict GX = s.gx.data(), * __restrict GY = s.gy.data(), * __restrict GZ = s.gz.data();
  const T* __restrict X = s.x.data(), * __restrict Y = s.y.data(), * __restrict Z = s.z.data(), * __restrict D = s.d.data();
  // G2: dG2/dd = Z exp(-eta t^2) (f_c' - 2 eta t f_c), t = d - Rs, over the packed entries (exactly
  // those that contribute); GX temporarily holds dL/dd.
  {
    const T* __restrict FC = s.fc.data(), * __restrict DFC = s.dfc.data(), * __restrict WT = s.wt.data();
    T* __restrict gd = GX;
    for (int64_t k = 0; k < m; ++k) gd[k] = T(0);
    for (int64_t a = 0; a < P.n_g2_eta; ++a)
      for (int64_t r = 0; r < P.n_g2_rs; ++r) {
        const T eta = P.g2_eta[a], rs = P.g2_rs[r], go = grad_out[a * P.n_g2_rs + r];
        if (eta >= T(0)) {
          const T minus_eta = -eta;
          for (int64_t k = 0; k < m; ++k) {
            const T t = D[k] - rs;
            const T ex = static_cast<T>(exp_nonpositive(static_cast<double>(minus_eta * t * t)));
            gd[k] += go * WT[k] * ex * (DFC[k] - T(2) * eta * t * FC[k]);
          }
        } else {  // a growing exponential, outside exp_nonpositive's domain
          for (int64_t k = 0; k < m; ++k) {
            const T t = D[k] - rs;
            gd[k] += go * WT[k] * std::exp(-eta * t * t) * (DFC[k] - T(2) * eta * t * FC[k]);
          }
        }
      }
    for (int64_t k = 0; k < m; ++k) {
      const T sc = gd[k] / D[k];
      GY[k] = sc * Y[k];
      GZ[k] = sc * Z[k];
      GX[k] = sc * X[k];
    }
  }
  if (P.any_angular() && m >= 2) {
    T* __restrict W = s.W.data();
    const T *__restrict cc = s.ccos.data(), *__restrict cr = s.cr2.data(), *__restrict cw = s.cw.data(),
            *__restrict cd = s.cdw.data();
    const int64_t* __restrict cq = s.cq.data();
    T *__restrict Ex = s.E.data(), *__restrict Av = s.Av.data(),
      *__restrict base = s.base.data(), *__restrict pw = s.pw.data(), *__restrict rjk = s.crjk.data(),
      *__restrict Az = s.Az.data(), *__restrict dAz = s.dAz.data(),
      *__restrict Sp = s.s_p.data(), *__restrict Sq = s.s_q.data(), *__restrict Sjk = s.s_jk.data();
    int64_t row0 = 0;
    for (int blk = 0; blk < 2; ++blk) {
      const Angular<T>& b = P.block[blk];
      if (!b.active()) continue;
      const int64_t n_eta = b.n_eta, n_zl = b.n_zl();
      // W[zl, e] = sum_Rs dL/dG[zl, e, Rs] exp(m eta Rs^2): the incoming gradient folded over Rs.
      const T* g = grad_out + b.column;
      for (int64_t zl = 0; zl < n_zl; ++zl)
        for (int64_t e = 0; e < n_eta; ++e) {
          T sum = T(0);
          for (int64_t r = 0; r < b.n_rs; ++r) sum += g[(zl * n_eta + e) * b.n_rs + r] * b.rs_factor[e * b.n_rs + r];
          W[zl * n_eta + e] = sum;
        }
      const T* R = s.radial.data() + row0 * cap;
      const T* dR = s.dradial.data() + row0 * cap;
      for (int64_t p = 0; p + 1 < m; ++p) {
        const int64_t K = triplet_row(P, b.with_jk, true, p, m, s);
        if (K == 0) continue;
        const T xp = X[p], yp = Y[p], zp = Z[p];
        for (int64_t t = 0; t < K; ++t) rjk[t] = std::sqrt(cr[t]);
        // A and dA/dcos per (zeta, lambda) into rows of Az, dAz (n_zl, lcap)
        for (int64_t zi = 0; zi < b.n_zeta; ++zi)
          for (int64_t li = 0; li < b.n_lambda; ++li) {
            const int64_t zl = zi * b.n_lambda + li;
            const int64_t nz = static_cast<int64_t>(b.zeta_int[zi]);
            T* __restrict Arow = Az + zl * lcap;
            T* __restrict dArow = dAz + zl * lcap;
            if (nz > 0) {
              // the folded form of angular_factor: A = 2 h^zeta, dA = zeta lambda h^(zeta-1), h = (1 + lambda cos) / 2
              const T lambda = b.lambda[li], zeta_lambda = b.zeta[zi] * lambda;
              for (int64_t t = 0; t < K; ++t) {
                base[t] = (T(1) + lambda * cc[t]) * T(0.5);
                Av[t] = base[t];
                pw[t] = T(1);
              }
              for (int64_t k = nz - 1; k > 0; k >>= 1) {
                if (k & 1)
                  for (int64_t t = 0; t < K; ++t) pw[t] *= Av[t];
                if (k > 1)
                  for (int64_t t = 0; t < K; ++t) Av[t] *= Av[t];
              }
              for (int64_t t = 0; t < K; ++t) {
                Arow[t] = T(2) * pw[t] * base[t];
                dArow[t] = zeta_lambda * pw[t];
              }
            } else {
              for (int64_t t = 0; t < K; ++t) angular_factor(b, zi, li, cc[t], Arow[t], dArow[t]);
            }
          }
        // exp(-eta r_jk^2) per eta (1 for G5)
        for (int64_t e = 0; e < n_eta; ++e) {
          const T eta = b.eta[e];
          T* __restrict Ee = Ex + e * lcap;
          if (!b.with_jk) {
            for (int64_t t = 0; t < K; ++t) Ee[t] = T(1);
          } else if (eta >= T(0)) {
            const T minus_eta = -eta;
            for (int64_t t = 0; t < K; ++t)
              Ee[t] = static_cast<T>(exp_nonpositive(static_cast<double>(minus_eta * cr[t])));
          } else {  // a growing exponential, outside exp_nonpositive's domain
            for (int64_t t = 0; t < K; ++t) Ee[t] = std::exp(-eta * cr[t]);
          }
        }
        // Per block of lanes, in registers: B_e = sum_zl W A, dB_e = sum_zl W dA, the coefficients of dcos,
        // dr_ij, dr_ik, dr_jk, then dcos/da = b/(|a||b|) - cos a/|a|^2, dr_jk/da = -(b - a)/r_jk (and
        // symmetrically for b). The p side sums over lanes; the q side's coefficients go to Sp, Sq, Sjk for
        // the scatter below.
        constexpr int64_t L = kLanes<T>;
        using V = Simd<T>;
        const T* __restrict IDv = s.inv_d.data();
        const T inv_dp = IDv[p];
        // The partners' values gathered into unit-stride rows, so that the lane loop below is vector code (with
        // the indirect loads in it, gcc kept it scalar).
        T *__restrict RQ = s.rq.data(), *__restrict dRQ = s.drq.data(), *__restrict XQ = s.xq.data(),
          *__restrict YQ = s.yq.data(), *__restrict ZQ = s.zq.data(), *__restrict IQ = s.idq.data();
        for (int64_t t = 0; t < K; ++t) {
          const int64_t q = cq[t];
          XQ[t] = X[q];
          YQ[t] = Y[q];
          ZQ[t] = Z[q];
          IQ[t] = IDv[q];
        }
        for (int64_t e = 0; e < n_eta; ++e) {
          const T* __restrict Re = R + e * cap, * __restrict dRe = dR + e * cap;
          T* __restrict rq = RQ + e * lcap, * __restrict drq = dRQ + e * lcap;
          for (int64_t t = 0; t < K; ++t) {
            rq[t] = Re[cq[t]];
            drq[t] = dRe[cq[t]];
          }
        }
        V l0 = {}, l1 = {}, l2 = {};
        for (int64_t t0 = 0; t0 < K; t0 += L) {
          V sc = {}, sp = {}, sq = {}, sjk = {};
          const V wjk = load(cw + t0), dwjk = load(cd + t0), r = load(rjk + t0);
          for (int64_t e = 0; e < n_eta; ++e) {
            V B = {}, dB = {};
            for (int64_t zl = 0; zl < n_zl; ++zl) {
              const T w = W[zl * n_eta + e];
              B += w * load(Az + zl * lcap + t0);
              dB += w * load(dAz + zl * lcap + t0);
            }
            const T rp = R[e * cap + p], drp = dR[e * cap + p], two_eta = b.with_jk ? T(2) * b.eta[e] : T(0);
            const V rq = load(RQ + e * lcap + t0), drq = load(dRQ + e * lcap + t0), E = load(Ex + e * lcap + t0);
            const V xf = E * wjk;                          // exp(-eta r_jk^2) f_c(r_jk), 1 for G5
            const V dxf = E * (dwjk - two_eta * r * wjk);  // its r_jk derivative, 0 for G5 (G5: no r_jk term)
            const V brq = B * rq;
            sc += dB * rp * rq * xf;
            sp += brq * drp * xf;
            sq += B * rp * drq * xf;
            sjk += brq * rp * dxf;
          }
          const V xq = load(XQ + t0), yq = load(YQ + t0), zq = load(ZQ + t0), inv_dq = load(IQ + t0);
          const V cos_theta = load(cc + t0);
          // coefficients of the entry vectors a (centre side) and b: dcos/da = b/(|a||b|) - cos a/|a|^2
          const V cp_a = (sp - sc * cos_theta * inv_dp) * inv_dp;
          const V cq_b = (sq - sc * cos_theta * inv_dq) * inv_dq;
          const V cross = sc * inv_dp * inv_dq;
          // r_jk = 0 only for padding (s_jk = 0 there) or coincident entries (no r_jk direction: 0)
          const V jk = only<T>(r > T(0), sjk / r);
          l0 += cp_a * xp + cross * xq - jk * (xq - xp);
          l1 += cp_a * yp + cross * yq - jk * (yq - yp);
          l2 += cp_a * zp + cross * zq - jk * (zq - zp);
          store(Sp + t0, cq_b);
          store(Sq + t0, cross);
          store(Sjk + t0, jk);
        }
        T ga0 = T(0), ga1 = T(0), ga2 = T(0);
        for (int64_t l = 0; l < L; ++l) {
          ga0 += l0[l];
          ga1 += l1[l];
          ga2 += l2[l];
        }
        GX[p] += ga0;
        GY[p] += ga1;
        GZ[p] += ga2;
        // partners q are distinct within a row: a plain scatter (padding has q = p and zero coefficients)
        for (int64_t t = 0; t < K; ++t) {
          const int64_t q = cq[t];
          const T cq_b = Sp[t], cross = Sq[t], jk = Sjk[t];
          const T xq = X[q], yq = Y[q], zq = Z[q];
          GX[q] += cq_b * xq + cross * xp + jk * (xq - xp);
          GY[q] += cq_b * yq + cross * yp + jk * (yq - yp);
          GZ[q] += cq_b * zq + cross * zp + jk * (zq - zp);
        }
      }
      row0 += n_eta;
    }
  }
  for (int64_t k = 0; k < m; ++k) {
    const int64_t p = s.index[k];
    grad[3 * p] = GX[k];
    grad[3 * p + 1] = GY[k];
    grad[3 * p + 2] = GZ[k];
  }
}

// The forward and backward over centres [begin, end), compiled per CPU level (target_clones): everything it calls
// in the hot path is inlined so the AVX2 clone vectorises it all.
#define FPCORE_WACSF_DEFINE(T)                                                                                        \
  FPCORE_CPU_CLONES void forward_range(const Params<T>& P, const int64_t* ptr, const int64_t* nbr, const int64_t* z,  \
                                       const T* vec, T* o, int64_t begin, int64_t end, Scratch<T>& s) {               \
    for (int64_t i = begin; i < end; ++i) {                                                                           \
      const int64_t b = ptr[i];                                                                                       \
      centre_forward_cpu(P, ptr[i + 1] - b, vec + 3 * b, nbr + b, z, s, o + i * P.n_features);                        \
    }                                                                                                                 \
  }                                                                                                                   \
  FPCORE_CPU_CLONES void backward_range(const Params<T>& P, const int64_t* ptr, const int64_t* nbr, const int64_t* z, \
                                        const T* vec, const T* g, T* gv, int64_t begin, int64_t end, Scratch<T>& s) { \
    for (int64_t i = begin; i < end; ++i) {                                                                           \
      const int64_t b = ptr[i];                                                                                       \
      centre_backward_cpu(P, ptr[i + 1] - b, vec + 3 * b, nbr + b, z, g + i * P.n_features, s, gv + 3 * b);           \
    }                                                                                                                 \
  }
FPCORE_WACSF_DEFINE(float)
FPCORE_WACSF_DEFINE(double)
#undef FPCORE_WACSF_DEFINE

at::Tensor wacsf_cpu(const at::Tensor& vectors_in, const at::Tensor& row_ptr_in, const at::Tensor& neighbors_j_in,
                     const at::Tensor& numbers_in, List g2_eta, List g2_rs, List g4_zeta, List g4_lambda, List g4_eta,
                     List g4_rs, List g5_zeta, List g5_lambda, List g5_eta, List g5_rs, c10::string_view cutoff_fn,
                     double cutoff) {
  check_inputs(vectors_in, row_ptr_in, neighbors_j_in, numbers_in);
  const HostParams h = make_params(g2_eta, g2_rs, g4_zeta, g4_lambda, g4_eta, g4_rs, g5_zeta, g5_lambda, g5_eta, g5_rs,
                                   cutoff_fn, cutoff);
  const at::Tensor vectors = vectors_in.contiguous(), row_ptr = row_ptr_in.contiguous();
  const at::Tensor neighbors_j = neighbors_j_in.contiguous(), numbers = numbers_in.contiguous();
  const int64_t n_atoms = row_ptr.size(0) - 1;
  check_index_values("fpcore.wacsf", row_ptr, neighbors_j);
  at::Tensor out = at::empty({n_atoms, h.n_features}, vectors.options());
  AT_DISPATCH_FLOATING_TYPES(vectors.scalar_type(), "wacsf_cpu", [&] {
    std::vector<scalar_t> table(h.table.begin(), h.table.end());
    const Params<scalar_t> P = view_params<scalar_t>(h, table.data());
    const int64_t* ptr = row_ptr.data_ptr<int64_t>();
    const int64_t* nbr = neighbors_j.data_ptr<int64_t>();
    const int64_t* z = numbers.data_ptr<int64_t>();
    const scalar_t* vec = vectors.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    for_each_chunk<scalar_t>(P, ptr, n_atoms, false, [&](int64_t begin, int64_t end, Scratch<scalar_t>& s) {
      forward_range(P, ptr, nbr, z, vec, o, begin, end, s);
    });
  });
  return out;
}

at::Tensor wacsf_backward_cpu(const at::Tensor& grad_in, const at::Tensor& vectors_in, const at::Tensor& row_ptr_in,
                              const at::Tensor& neighbors_j_in, const at::Tensor& numbers_in, List g2_eta, List g2_rs,
                              List g4_zeta, List g4_lambda, List g4_eta, List g4_rs, List g5_zeta, List g5_lambda,
                              List g5_eta, List g5_rs, c10::string_view cutoff_fn, double cutoff) {
  check_inputs(vectors_in, row_ptr_in, neighbors_j_in, numbers_in);
  const HostParams h = make_params(g2_eta, g2_rs, g4_zeta, g4_lambda, g4_eta, g4_rs, g5_zeta, g5_lambda, g5_eta, g5_rs,
                                   cutoff_fn, cutoff);
  const int64_t n_atoms = row_ptr_in.size(0) - 1;
  check_grad(grad_in, vectors_in, n_atoms, h.n_features);
  const at::Tensor vectors = vectors_in.contiguous(), row_ptr = row_ptr_in.contiguous();
  const at::Tensor neighbors_j = neighbors_j_in.contiguous(), numbers = numbers_in.contiguous();
  const at::Tensor grad = grad_in.contiguous();
  check_index_values("fpcore.wacsf", row_ptr, neighbors_j);
  at::Tensor grad_vectors = at::empty_like(vectors);
  AT_DISPATCH_FLOATING_TYPES(vectors.scalar_type(), "wacsf_backward_cpu", [&] {
    std::vector<scalar_t> table(h.table.begin(), h.table.end());
    const Params<scalar_t> P = view_params<scalar_t>(h, table.data());
    const int64_t* ptr = row_ptr.data_ptr<int64_t>();
    const int64_t* nbr = neighbors_j.data_ptr<int64_t>();
    const int64_t* z = numbers.data_ptr<int64_t>();
    const scalar_t* vec = vectors.data_ptr<scalar_t>();
    const scalar_t* g = grad.data_ptr<scalar_t>();
    scalar_t* gv = grad_vectors.data_ptr<scalar_t>();
    for_each_chunk<scalar_t>(P, ptr, n_atoms, true, [&](int64_t begin, int64_t end, Scratch<scalar_t>& s) {
      backward_range(P, ptr, nbr, z, vec, g, gv, begin, end, s);
    });
  });
  return grad_vectors;
}

}  // namespace
}  // namespace wacsf

TORCH_LIBRARY_IMPL(fpcore, CPU, m) {
  m.impl("wacsf", &wacsf::wacsf_cpu);
  m.impl("wacsf_backward", &wacsf::wacsf_backward_cpu);
}

}  // namespace fpcore
