// CPU kernels of fpcore::gmp and fpcore::gmp_backward: parallel over centre atoms, per-centre
// moment scratch, memory linear in pairs.
#include <ATen/Parallel.h>
#include <torch/library.h>
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <bit>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "common/index_checks.h"
#include "descriptors/gmp_checks.h"
#include "common/vector_math.h"
#include "descriptors/gmp_math.h"

namespace fpcore {
namespace {

using gmp::Tables;

// ---------------------------------------------------------------------------------------------------
// Blocked, vectorisable CPU evaluation. Per centre the entries (self term + pairs) are grouped by the
// species of j and, within a species, bucketed by distance (a counting sort into about one bucket per
// entry, uniform in d^2), so the entries inside any inclusion radius are a prefix up to one boundary
// bucket: a (species, Gaussian, group) row or a feature's own radius costs one bucket lookup instead of a
// filtering pass, and only the boundary bucket's few entries are tested against the radius. The group's
// entries are processed in blocks of kBlock in structure-of-arrays form: one pass computes exp(C2 d^2),
// the moment polynomials P_a and the products W_ab = exp(C2 d^2) P_a(lam x) P_b(lam y) shared by all
// orders of the group; a monomial of any order is then one multiply-add W_ab P_c per entry, summed in 256-bit
// vectors (Simd), and the amplitude C1 of the (feature, species, Gaussian) multiplies the block's sums once
// (gcc vectorises the per-block passes, exp included, see exp_nonpositive). Lanes sum in a different order
// than the per-entry loop of gmp_math.h: the results agree to rounding.
// ---------------------------------------------------------------------------------------------------
constexpr int kBlock = 64;

// Row of W_ab (a + b <= kMaxOrder) in the triangular layout a-major.
constexpr int ab_row(int a, int b) {
  return a * (gmp::kMaxOrder + 1) - a * (a - 1) / 2 + b;
}
constexpr int kProducts = ab_row(gmp::kMaxOrder, 0) + 1;  // 55

// Entries of one centre, structure of arrays. idx = pair index, -1 for the self term and for padding.
template <typename T>
struct EntryList {
  std::vector<T> x, y, z, d2;
  std::vector<int64_t> idx;
  void reserve(int64_t cap) {
    cap += kBlock;  // a block reads whole lanes past the last entry
    if (static_cast<int64_t>(x.size()) < cap) {
      x.resize(cap);
      y.resize(cap);
      z.resize(cap);
      d2.resize(cap);
      idx.resize(cap);
    }
  }
  FPCORE_INLINE void put(int64_t q, T vx, T vy, T vz, int64_t id) {
    x[q] = vx;
    y[q] = vy;
    z[q] = vz;
    d2[q] = vx * vx + vy * vy + vz * vz;
    idx[q] = id;
  }
  FPCORE_INLINE void copy(int64_t q, const EntryList& from, int64_t r) {
    x[q] = from.x[r];
    y[q] = from.y[r];
    z[q] = from.z[r];
    d2[q] = from.d2[r];
    idx[q] = from.idx[r];
  }
  // zero entries after the last one, so that lanes read past it hold finite values
  void pad(int64_t n) {
    for (int64_t q = n; q < n + kLanes<T> && q < static_cast<int64_t>(x.size()); ++q) put(q, T(0), T(0), T(0), -1);
  }
};

// The entries of a species segment within a radius: every entry before `begin` is inside, every entry from
// `end` on is outside, those in [begin, end) (one bucket) are inside where d2 <= r2.
struct Within {
  int64_t begin, end;
};

// Per-block arrays: exp(C2 d^2), P_a(lam x), P_b(lam y), P_c(lam z) (a, b, c <= kMaxOrder) and
// W_ab = exp(C2 d^2) P_a P_b.
template <typename T>
struct BlockPolys {
  alignas(64) T ex[kBlock];
  alignas(64) T px[gmp::kMaxOrder + 1][kBlock];
  alignas(64) T py[gmp::kMaxOrder + 1][kBlock];
  alignas(64) T pz[gmp::kMaxOrder + 1][kBlock];
  alignas(64) T w[kProducts][kBlock];
  const T* d2 = nullptr;  // the block's squared distances

  FPCORE_INLINE void compute(const EntryList<T>& L, int64_t b, int nb, T c2, T lam, T v, int nmax) {
    const T* X = L.x.data() + b;
    const T* Y = L.y.data() + b;
    const T* Z = L.z.data() + b;
    const T* D = L.d2.data() + b;
    d2 = D;
    for (int p = 0; p < nb; ++p) ex[p] = static_cast<T>(exp_nonpositive(static_cast<double>(c2 * D[p])));
    if (nmax < 0) return;
    for (int p = 0; p < nb; ++p) {
      px[0][p] = py[0][p] = pz[0][p] = T(1);
    }
    if (nmax >= 1) {
      for (int p = 0; p < nb; ++p) {
        px[1][p] = lam * X[p];
        py[1][p] = lam * Y[p];
        pz[1][p] = lam * Z[p];
      }
    }
    // P_{k+1} = u P_k + k v P_{k-1}
    for (int k = 1; k < nmax; ++k) {
      const T kv = T(k) * v;
      for (int p = 0; p < nb; ++p) {
        px[k + 1][p] = px[1][p] * px[k][p] + kv * px[k - 1][p];
        py[k + 1][p] = py[1][p] * py[k][p] + kv * py[k - 1][p];
        pz[k + 1][p] = pz[1][p] * pz[k][p] + kv * pz[k - 1][p];
      }
    }
    for (int a = 0; a <= nmax; ++a) {
      T ea[kBlock];
      for (int p = 0; p < nb; ++p) ea[p] = ex[p] * px[a][p];
      for (int bb = 0; bb <= nmax - a; ++bb) {
        T* wr = w[ab_row(a, bb)];
        for (int p = 0; p < nb; ++p) wr[p] = ea[p] * py[bb][p];
      }
    }
  }

  // lanes of the entries p0 + l of the block that are inside (p < end and d2 <= r2)
  FPCORE_INLINE SimdMask<T> mask(int p0, int end, T r2) const {
    SimdMask<T> keep;
    for (int l = 0; l < kLanes<T>; ++l) keep[l] = (p0 + l < end) & (d2[p0 + l] <= r2) ? -1 : 0;
    return keep;
  }
};

// The block-relative range of a feature (see Within): entries [0, full) are inside (whole lanes), those in
// [full, end) are tested.
struct BlockRange {
  int full, end;
};

FPCORE_INLINE BlockRange block_range(const Within& w, int64_t b, int nb, int lanes) {
  const int64_t begin = std::clamp<int64_t>(w.begin - b, 0, nb), end = std::clamp<int64_t>(w.end - b, 0, nb);
  return {static_cast<int>(begin / lanes * lanes), static_cast<int>(end)};
}

// f(a, b, m) for the monomials (a, b, N - a - b) of order N in the kernels' enumeration (a = N..0, b = N-a..0),
// m = 0, 1, ... their index in it; unrolled, so a, b and m are constants in f.
template <int N, typename F>
FPCORE_INLINE void for_each_monomial(F&& f) {
  int m = 0;
  FPCORE_UNROLL
  for (int a = N; a >= 0; --a) {
    FPCORE_UNROLL
    for (int b = N - a; b >= 0; --b, ++m) f(a, b, m);
  }
}

// Q[m] (a lane vector per moment: the lanes are summed once per centre, not per block) += c1 sum_p W_ab P_c over
// the block's entries inside r2 and the monomials (a, b, c) of order N (kernels' enumeration).
template <int N, typename T>
FPCORE_INLINE void add_order(const BlockPolys<T>& B, BlockRange R, T r2, T c1, T* Q) {
  using V = Simd<T>;
  constexpr int L = kLanes<T>;
  constexpr int M = (N + 1) * (N + 2) / 2;
  V acc[M] = {};
  for (int p0 = 0; p0 < R.end; p0 += L) {
    const SimdMask<T> keep =
        p0 < R.full ? ~SimdMask<T>{} : B.mask(p0, R.end, r2);  // the boundary bucket's lanes are tested
    for_each_monomial<N>([&](int a, int b, int m) FPCORE_INLINE_LAMBDA {
      acc[m] += only<T>(keep, load(B.w[ab_row(a, b)] + p0) * load(B.pz[N - a - b] + p0));
    });
  }
  for (int m = 0; m < M; ++m) store(Q + m * L, load(Q + m * L) + c1 * acc[m]);
}

template <typename T>
FPCORE_INLINE void add_density(const BlockPolys<T>& B, BlockRange R, T r2, T c1, T* Q) {
  using V = Simd<T>;
  constexpr int L = kLanes<T>;
  V acc = {};
  for (int p0 = 0; p0 < R.end; p0 += L) {
    const SimdMask<T> keep = p0 < R.full ? ~SimdMask<T>{} : B.mask(p0, R.end, r2);
    acc += only<T>(keep, load(B.ex + p0));
  }
  store(Q, load(Q) + c1 * acc);
}

// Gradient pieces of c1 sum_m G_m Q_m for a feature of order N, per entry of the block inside r2: radial +=
// sum_m G_m e T_m, ang_x += sum_m G_m e a P_{a-1} P_b P_c (and y, z), with e T_m = W_ab P_c. The angular sums
// run over the monomials (a', b', c') of order N - 1: ang_x += (a'+1) G_{a'+1,b',c'} W_a'b' P_c' (P_a' = a'
// P_{a'-1}), and the same product W_a'b' P_c' serves y and z.
template <int N, typename T>
FPCORE_INLINE void grad_order(const BlockPolys<T>& B, BlockRange R, T r2, T c1, const T* G, T* radial, T* ax, T* ay,
                              T* az) {
  using V = Simd<T>;
  constexpr int L = kLanes<T>;
  constexpr int M = (N + 1) * (N + 2) / 2;
  constexpr int M1 = N > 0 ? N * (N + 1) / 2 : 1;  // monomials of order N - 1
  // index of monomial (a, b) of order n in for_each_monomial's enumeration
  constexpr auto mono = [](int n, int a, int b) { return (n - a) * (n - a + 1) / 2 + (n - a - b); };
  T gr[M], gx[M1], gy[M1], gz[M1];
  for (int m = 0; m < M; ++m) gr[m] = c1 * G[m];
  if constexpr (N > 0) {
    for_each_monomial<N - 1>([&](int a, int b, int m) FPCORE_INLINE_LAMBDA {
      gx[m] = T(a + 1) * gr[mono(N, a + 1, b)];
      gy[m] = T(b + 1) * gr[mono(N, a, b + 1)];
      gz[m] = T(N - a - b) * gr[mono(N, a, b)];
    });
  }
  for (int p0 = 0; p0 < R.end; p0 += L) {
    const SimdMask<T> keep = p0 < R.full ? ~SimdMask<T>{} : B.mask(p0, R.end, r2);
    V r = {}, sx = {}, sy = {}, sz = {};
    for_each_monomial<N>([&](int a, int b, int m) FPCORE_INLINE_LAMBDA {
      r += gr[m] * load(B.w[ab_row(a, b)] + p0) * load(B.pz[N - a - b] + p0);
    });
    if constexpr (N > 0) {
      for_each_monomial<N - 1>([&](int a, int b, int m) FPCORE_INLINE_LAMBDA {
        const V t = load(B.w[ab_row(a, b)] + p0) * load(B.pz[N - 1 - a - b] + p0);
        sx += gx[m] * t;
        sy += gy[m] * t;
        sz += gz[m] * t;
      });
    }
    store(radial + p0, load(radial + p0) + only<T>(keep, r));
    store(ax + p0, load(ax + p0) + only<T>(keep, sx));
    store(ay + p0, load(ay + p0) + only<T>(keep, sy));
    store(az + p0, load(az + p0) + only<T>(keep, sz));
  }
}

template <typename T, typename F>
FPCORE_INLINE void dispatch_order(int n, F&& f) {
  switch (n) {
    case 0:
      f(std::integral_constant<int, 0>{});
      break;
    case 1:
      f(std::integral_constant<int, 1>{});
      break;
    case 2:
      f(std::integral_constant<int, 2>{});
      break;
    case 3:
      f(std::integral_constant<int, 3>{});
      break;
    case 4:
      f(std::integral_constant<int, 4>{});
      break;
    case 5:
      f(std::integral_constant<int, 5>{});
      break;
    case 6:
      f(std::integral_constant<int, 6>{});
      break;
    case 7:
      f(std::integral_constant<int, 7>{});
      break;
    case 8:
      f(std::integral_constant<int, 8>{});
      break;
    case 9:
      f(std::integral_constant<int, 9>{});
      break;
    default:
      f(std::integral_constant<int, -1>{});
  }
}

// Per-thread scratch of the blocked kernels.
template <typename T>
struct CentreScratch {
  EntryList<T> grouped, sorted;
  std::vector<int64_t> cnt;     // counting sort by species
  std::vector<int64_t> bucket;  // per species segment sg at [lo, hi): its n + 1 bucket ends at bucket[lo + sg ...]
  std::vector<T> top, scale;    // per segment: largest d2 and the bucket scale
  std::vector<Within> feature_within;  // per feature of the current group
  BlockPolys<T> blk;
  alignas(64) T radial[kBlock], ax[kBlock], ay[kBlock], az[kBlock];

  // Counting sort of grouped[lo, hi) into sorted[lo, hi) by bucket floor(d2 n / top) (stable, so reproducible).
  void bucket_segment(size_t sg, int64_t lo, int64_t hi) {
    const int64_t n = hi - lo;
    const T* d2 = grouped.d2.data() + lo;
    T t = T(0);
    for (int64_t q = 0; q < n; ++q) t = d2[q] > t || d2[q] != d2[q] ? d2[q] : t;  // NaN propagates
    top[sg] = t;
    int64_t* bk = bucket.data() + lo + sg;  // n + 1 slots
    if (t == T(0)) {                        // only d2 = 0: every radius includes everything
      for (int64_t q = 0; q < n; ++q) sorted.copy(lo + q, grouped, lo + q);
      return;
    }
    // The 1 - 1e-6 absorbs the rounding of n / top. A NaN or infinite d2 (vectors the op was given directly) puts the
    // finite entries in bucket 0, where each is tested, and the NaN ones in the last bucket, which no radius includes.
    const T sc = std::isfinite(t) ? static_cast<T>(n) / t * T(0.999999) : T(0);
    scale[sg] = sc;
    std::fill(bk, bk + n + 1, int64_t(0));
    for (int64_t q = 0; q < n; ++q) ++bk[bucket_of(d2[q], sc, n) + 1];
    for (int64_t k = 0; k < n; ++k) bk[k + 1] += bk[k];
    // bk[k] is the first slot of bucket k; after the scatter it is the first slot of bucket k + 1
    for (int64_t q = 0; q < n; ++q) sorted.copy(lo + bk[bucket_of(d2[q], sc, n)]++, grouped, lo + q);
  }

  // Bucket of squared distance x among n: non-decreasing in x, so every entry of a lower bucket than r2's is inside
  // r2 and every entry of a higher one outside; n - 1 for NaN.
  static FPCORE_INLINE int64_t bucket_of(T x, T sc, int64_t n) {
    const T b = x * sc;
    return b < static_cast<T>(n - 1) ? static_cast<int64_t>(b) : n - 1;
  }

  // The entries of segment sg (n entries) within squared radius r2 (r2 >= 0).
  FPCORE_INLINE Within within(size_t sg, int64_t lo, int64_t n, T r2) const {
    if (r2 >= top[sg]) return {n, n};
    const int64_t k = bucket_of(r2, scale[sg], n);
    const int64_t* bk = bucket.data() + lo + sg;
    return {k > 0 ? bk[k - 1] : 0, bk[k]};
  }

  // Fills `sorted` with the self term and the pairs of centre i, grouped by species (ascending) and
  // bucketed by distance within a species; returns the segment boundaries through seg_species / seg_begin.
  void gather(const T* vec, const int64_t* rp, const int64_t* nj, const int64_t* sp, int64_t i, int64_t Z,
              std::vector<int64_t>& seg_species, std::vector<int64_t>& seg_begin) {
    const int64_t b = rp[i], e = rp[i + 1], n = e - b + 1;
    grouped.reserve(n);
    sorted.reserve(n);
    seg_species.clear();
    seg_begin.clear();
    const int64_t s_self = sp[i];
    bool single = true;
    for (int64_t p = b; p < e; ++p) single &= sp[nj[p]] == s_self;
    if (single) {
      grouped.put(0, T(0), T(0), T(0), -1);
      for (int64_t p = b; p < e; ++p) grouped.put(p - b + 1, vec[3 * p], vec[3 * p + 1], vec[3 * p + 2], p);
      seg_species.push_back(s_self);
      seg_begin.push_back(0);
      seg_begin.push_back(n);
    } else {
      cnt.assign(Z + 1, 0);
      ++cnt[s_self + 1];
      for (int64_t p = b; p < e; ++p) ++cnt[sp[nj[p]] + 1];
      for (int64_t s = 0; s < Z; ++s) {
        if (cnt[s + 1] > 0) {
          seg_species.push_back(s);
          seg_begin.push_back(cnt[s]);
        }
        cnt[s + 1] += cnt[s];
      }
      seg_begin.push_back(n);
      // cnt[s] is now the first slot of species s
      grouped.put(cnt[s_self]++, T(0), T(0), T(0), -1);
      for (int64_t p = b; p < e; ++p) grouped.put(cnt[sp[nj[p]]]++, vec[3 * p], vec[3 * p + 1], vec[3 * p + 2], p);
    }
    const size_t n_seg = seg_species.size();
    bucket.resize(n + n_seg);
    top.resize(n_seg);
    scale.resize(n_seg);
    for (size_t sg = 0; sg < n_seg; ++sg) bucket_segment(sg, seg_begin[sg], seg_begin[sg + 1]);
    sorted.pad(n);
  }
};

// Walks the (species, Gaussian, group) rows of centres [begin, end): for every centre with start(i) true,
// block(b, slot, nb, n_in, k, c2, lam, s, g) for every block [b, b + nb) of the first n_in entries of the
// species segment (those that can be inside the group's radius; b counts from the segment's first entry,
// slot = b + that entry's slot in S.sorted; nb is rounded up to whole lanes), with the block's polynomials in
// S.blk and the entries within the radius of feature q of group k in S.feature_within[q - group_ptr[k]], then
// finish(i).
template <typename T, typename Start, typename Block, typename Finish>
FPCORE_INLINE void walk_centres(const Tables<T>& t, const T* vec, const int64_t* rp, const int64_t* nj,
                                const int64_t* sp, int64_t begin, int64_t end, CentreScratch<T>& S, Start&& start,
                                Block&& block, Finish&& finish) {
  constexpr int L = kLanes<T>;
  std::vector<int64_t> seg_s, seg_b;
  const int64_t Z = t.n_species, G = t.n_gauss, K = t.n_groups;
  int64_t max_group = 0;
  for (int64_t k = 0; k < K; ++k) max_group = std::max(max_group, t.group_ptr[k + 1] - t.group_ptr[k]);
  S.feature_within.resize(max_group);
  for (int64_t i = begin; i < end; ++i) {
    if (!start(i)) continue;
    S.gather(vec, rp, nj, sp, i, Z, seg_s, seg_b);
    for (size_t sg = 0; sg < seg_s.size(); ++sg) {
      const int64_t s = seg_s[sg], lo = seg_b[sg], n = seg_b[sg + 1] - lo;
      for (int64_t g = 0; g < G; ++g) {
        for (int64_t r = 0; r < K; ++r) {
          const T* gc = t.group_consts + ((r * Z + s) * G + g) * gmp::kGroupConsts;
          if (!(gc[3] >= 0)) break;  // padding rows (radius^2 = -1) come last
          const int64_t n_in = S.within(sg, lo, n, gc[3]).end;
          if (n_in == 0) break;  // rows by descending radius: the next ones include nothing either
          const int64_t k = static_cast<int64_t>(gc[4]);
          const int nmax = static_cast<int>(t.group_max_order[k]);
          for (int64_t q = t.group_ptr[k]; q < t.group_ptr[k + 1]; ++q) {
            const T r2 = t.radii2[(t.group_features[q] * Z + s) * G + g];
            S.feature_within[q - t.group_ptr[k]] = r2 >= 0 ? S.within(sg, lo, n, r2) : Within{0, 0};
          }
          for (int64_t b = 0; b < n_in; b += kBlock) {
            const int nb = static_cast<int>(std::min<int64_t>(kBlock, (n_in - b + L - 1) / L * L));
            S.blk.compute(S.sorted, lo + b, nb, gc[0], gc[1], gc[2], nmax);
            block(b, lo + b, nb, n_in, k, gc[0], gc[1], s, g);
          }
        }
      }
    }
    finish(i);
  }
}

template <typename T>
FPCORE_INLINE void forward_centres_impl(const Tables<T>& t, const T* vec, const int64_t* rp, const int64_t* nj,
                                        const int64_t* sp, T* mom, T* out, int64_t n_moments, bool square,
                                        int64_t begin, int64_t end) {
  constexpr int L = kLanes<T>;
  CentreScratch<T> S;
  std::vector<T> lanes(n_moments * L);  // the centre's moments, a lane vector each
  T* Q = nullptr;
  const int64_t Z = t.n_species, G = t.n_gauss, F = t.n_features;
  walk_centres(
      t, vec, rp, nj, sp, begin, end, S,
      [&](int64_t i) FPCORE_INLINE_LAMBDA {
        Q = mom + i * n_moments;
        std::fill(lanes.begin(), lanes.end(), T(0));
        return true;
      },
      [&](int64_t b, int64_t, int nb, int64_t, int64_t k, T, T, int64_t s, int64_t g) FPCORE_INLINE_LAMBDA {
        for (int64_t q = t.group_ptr[k]; q < t.group_ptr[k + 1]; ++q) {
          const BlockRange R = block_range(S.feature_within[q - t.group_ptr[k]], b, nb, L);
          if (R.end == 0) continue;
          const int64_t f = t.group_features[q];
          const int64_t fsg = (f * Z + s) * G + g;
          T* Qf = lanes.data() + t.offsets[f] * L;
          dispatch_order<T>(static_cast<int>(t.orders[f]), [&](auto NC) FPCORE_INLINE_LAMBDA {
            constexpr int N = decltype(NC)::value;
            if constexpr (N < 0)
              add_density(S.blk, R, t.radii2[fsg], t.c1[fsg], Qf);
            else
              add_order<N>(S.blk, R, t.radii2[fsg], t.c1[fsg], Qf);
          });
        }
      },
      [&](int64_t i) FPCORE_INLINE_LAMBDA {
        for (int64_t m = 0; m < n_moments; ++m) {
          T sum = T(0);
          for (int l = 0; l < L; ++l) sum += lanes[m * L + l];
          Q[m] = sum;
        }
        for (int64_t f = 0; f < F; ++f) out[i * F + f] = gmp::feature_value(t, f, Q, square);
      });
}

template <typename T>
FPCORE_INLINE void backward_centres_impl(const Tables<T>& t, const T* vec, const int64_t* rp, const int64_t* nj,
                                         const int64_t* sp, const T* mom, const T* gf, const T* gmom, T* gv,
                                         int64_t n_moments, bool square, int64_t begin, int64_t end) {
  constexpr int L = kLanes<T>;
  CentreScratch<T> S;
  std::vector<T> Gbuf(n_moments);
  T* Gm = Gbuf.data();
  // dL/d(entry vector) per slot of S.sorted: summed over the centre's rows in unit-stride vector passes, written to
  // grad_vectors once per centre (every pair of a centre is one entry of it)
  std::vector<T> gx, gy, gz;
  const int64_t Z = t.n_species, G = t.n_gauss, F = t.n_features;
  walk_centres(
      t, vec, rp, nj, sp, begin, end, S,
      [&](int64_t i) FPCORE_INLINE_LAMBDA {
        if (rp[i] == rp[i + 1]) return false;  // only the constant self term
        const size_t slots = static_cast<size_t>(rp[i + 1] - rp[i] + 1 + kBlock);
        for (auto* v : {&gx, &gy, &gz}) v->assign(slots, T(0));
        const T* Q = mom + i * n_moments;
        for (int64_t m = 0; m < n_moments; ++m) Gm[m] = gmom ? gmom[i * n_moments + m] : T(0);
        for (int64_t f = 0; f < F; ++f) gmp::feature_backward(t, f, Q, gf[i * F + f], square, Gm);
        return true;
      },
      [&](int64_t b, int64_t slot, int nb, int64_t n_in, int64_t k, T c2, T lam, int64_t s, int64_t g)
          FPCORE_INLINE_LAMBDA {
            for (int p = 0; p < nb; ++p) S.radial[p] = S.ax[p] = S.ay[p] = S.az[p] = T(0);
            for (int64_t q = t.group_ptr[k]; q < t.group_ptr[k + 1]; ++q) {
              const BlockRange R = block_range(S.feature_within[q - t.group_ptr[k]], b, nb, L);
              if (R.end == 0) continue;
              const int64_t f = t.group_features[q];
              const int64_t fsg = (f * Z + s) * G + g;
              const T* Gf = Gm + t.offsets[f];
              dispatch_order<T>(static_cast<int>(t.orders[f]), [&](auto NC) FPCORE_INLINE_LAMBDA {
                constexpr int N = decltype(NC)::value;
                if constexpr (N < 0) {
                  const T g0 = t.c1[fsg] * Gf[0];
                  for (int p0 = 0; p0 < R.end; p0 += L) {
                    const SimdMask<T> keep = p0 < R.full ? ~SimdMask<T>{} : S.blk.mask(p0, R.end, t.radii2[fsg]);
                    store(S.radial + p0, load(S.radial + p0) + only<T>(keep, g0 * load(S.blk.ex + p0)));
                  }
                } else {
                  grad_order<N>(S.blk, R, t.radii2[fsg], t.c1[fsg], Gf, S.radial, S.ax, S.ay, S.az);
                }
              });
            }
            const T two_c2 = T(2) * c2;
            const EntryList<T>& E = S.sorted;
            for (int p = 0; p < nb; p += L) {  // lanes past the group's entries have zero gradient pieces
              const Simd<T> rad = two_c2 * load(S.radial + p);
              store(gx.data() + slot + p,
                    load(gx.data() + slot + p) + rad * load(E.x.data() + slot + p) + lam * load(S.ax + p));
              store(gy.data() + slot + p,
                    load(gy.data() + slot + p) + rad * load(E.y.data() + slot + p) + lam * load(S.ay + p));
              store(gz.data() + slot + p,
                    load(gz.data() + slot + p) + rad * load(E.z.data() + slot + p) + lam * load(S.az + p));
            }
          },
      [&](int64_t i) FPCORE_INLINE_LAMBDA {
        // grad_vectors is allocated uninitialised: every row of the centre is written here, by its thread
        const int64_t n = rp[i + 1] - rp[i] + 1;
        const int64_t* idx = S.sorted.idx.data();
        for (int64_t q = 0; q < n; ++q) {
          const int64_t id = idx[q];
          if (id < 0) continue;  // the self term (constant)
          gv[3 * id] = gx[q];
          gv[3 * id + 1] = gy[q];
          gv[3 * id + 2] = gz[q];
        }
      });
}

#define FPCORE_GMP_DEFINE(T)                                                                                      \
  FPCORE_CPU_CLONES void forward_centres(const Tables<T>& t, const T* vec, const int64_t* rp, const int64_t* nj,  \
                                         const int64_t* sp, T* mom, T* out, int64_t n_moments, bool square,       \
                                         int64_t begin, int64_t end) {                                            \
    forward_centres_impl<T>(t, vec, rp, nj, sp, mom, out, n_moments, square, begin, end);                         \
  }                                                                                                               \
  FPCORE_CPU_CLONES void backward_centres(const Tables<T>& t, const T* vec, const int64_t* rp, const int64_t* nj, \
                                          const int64_t* sp, const T* mom, const T* gf, const T* gmom, T* gv,     \
                                          int64_t n_moments, bool square, int64_t begin, int64_t end) {           \
    backward_centres_impl<T>(t, vec, rp, nj, sp, mom, gf, gmom, gv, n_moments, square, begin, end);               \
  }
FPCORE_GMP_DEFINE(float)
FPCORE_GMP_DEFINE(double)
#undef FPCORE_GMP_DEFINE

std::tuple<at::Tensor, at::Tensor> gmp_cpu(const at::Tensor& vectors_in, const at::Tensor& row_ptr_in,
                                           const at::Tensor& neighbors_j_in, const at::Tensor& numbers_in,
                                           const at::Tensor& group_consts_in, const at::Tensor& group_ptr_in,
                                           const at::Tensor& group_features_in, const at::Tensor& group_max_order_in,
                                           const at::Tensor& orders_in, const at::Tensor& offsets_in,
                                           const at::Tensor& c1_in, const at::Tensor& radii2_in,
                                           const at::Tensor& coeffs_in, const at::Tensor& multiplicity_in,
                                           int64_t n_moments, bool square) {
  gmp::check_inputs(vectors_in, row_ptr_in, neighbors_j_in, numbers_in, group_consts_in, group_ptr_in,
                    group_features_in, group_max_order_in, orders_in, offsets_in, c1_in, radii2_in, coeffs_in,
                    multiplicity_in, n_moments);
  gmp::check_feature_tables(group_ptr_in, group_features_in, group_max_order_in, orders_in, offsets_in, n_moments);
  const at::Tensor vectors = vectors_in.contiguous(), row_ptr = row_ptr_in.contiguous();
  const at::Tensor neighbors_j = neighbors_j_in.contiguous(), numbers = numbers_in.contiguous();
  const at::Tensor group_consts = group_consts_in.contiguous(), group_ptr = group_ptr_in.contiguous();
  const at::Tensor group_features = group_features_in.contiguous(), gmax = group_max_order_in.contiguous();
  const at::Tensor orders = orders_in.contiguous(), offsets = offsets_in.contiguous();
  const at::Tensor c1 = c1_in.contiguous(), radii2 = radii2_in.contiguous();
  const at::Tensor coeffs = coeffs_in.contiguous(), multiplicity = multiplicity_in.contiguous();
  check_index_values("fpcore.gmp", row_ptr, neighbors_j, &numbers, "numbers", group_consts.size(1));

  const int64_t N = numbers.size(0), F = orders.size(0);
  at::Tensor features = at::zeros({N, F}, vectors.options());
  at::Tensor moments = at::zeros({N, n_moments}, vectors.options());
  AT_DISPATCH_FLOATING_TYPES(vectors.scalar_type(), "gmp_cpu", [&] {
    const Tables<scalar_t> t = gmp::make_tables<scalar_t>(group_consts, group_ptr, group_features, gmax, orders,
                                                          offsets, c1, radii2, coeffs, multiplicity);
    const scalar_t* vec = vectors.data_ptr<scalar_t>();
    const int64_t* rp = row_ptr.data_ptr<int64_t>();
    const int64_t* nj = neighbors_j.data_ptr<int64_t>();
    const int64_t* sp = numbers.data_ptr<int64_t>();
    scalar_t* out = features.data_ptr<scalar_t>();
    scalar_t* mom = moments.data_ptr<scalar_t>();
    at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
      forward_centres(t, vec, rp, nj, sp, mom, out, n_moments, square, begin, end);
    });
  });
  return {features, moments};
}

at::Tensor gmp_backward_cpu(const at::Tensor& grad_features_in, const c10::optional<at::Tensor>& grad_moments_in,
                            const at::Tensor& moments_in, const at::Tensor& vectors_in, const at::Tensor& row_ptr_in,
                            const at::Tensor& neighbors_j_in, const at::Tensor& numbers_in,
                            const at::Tensor& group_consts_in, const at::Tensor& group_ptr_in,
                            const at::Tensor& group_features_in, const at::Tensor& group_max_order_in,
                            const at::Tensor& orders_in, const at::Tensor& offsets_in, const at::Tensor& c1_in,
                            const at::Tensor& radii2_in, const at::Tensor& coeffs_in, const at::Tensor& multiplicity_in,
                            int64_t n_moments, bool square) {
  gmp::check_inputs(vectors_in, row_ptr_in, neighbors_j_in, numbers_in, group_consts_in, group_ptr_in,
                    group_features_in, group_max_order_in, orders_in, offsets_in, c1_in, radii2_in, coeffs_in,
                    multiplicity_in, n_moments);
  gmp::check_feature_tables(group_ptr_in, group_features_in, group_max_order_in, orders_in, offsets_in, n_moments);
  const int64_t N = numbers_in.size(0), F = orders_in.size(0);
  gmp::check_backward_inputs(grad_features_in, grad_moments_in, moments_in, vectors_in, N, F, n_moments);
  const bool has_gm = grad_moments_in.has_value() && grad_moments_in->defined();
  const at::Tensor vectors = vectors_in.contiguous(), row_ptr = row_ptr_in.contiguous();
  const at::Tensor neighbors_j = neighbors_j_in.contiguous(), numbers = numbers_in.contiguous();
  const at::Tensor group_consts = group_consts_in.contiguous(), group_ptr = group_ptr_in.contiguous();
  const at::Tensor group_features = group_features_in.contiguous(), gmax = group_max_order_in.contiguous();
  const at::Tensor orders = orders_in.contiguous(), offsets = offsets_in.contiguous();
  const at::Tensor c1 = c1_in.contiguous(), radii2 = radii2_in.contiguous();
  const at::Tensor coeffs = coeffs_in.contiguous(), multiplicity = multiplicity_in.contiguous();
  const at::Tensor grad_features = grad_features_in.contiguous(), moments = moments_in.contiguous();
  const at::Tensor grad_moments = has_gm ? grad_moments_in->contiguous() : at::Tensor();
  check_index_values("fpcore.gmp", row_ptr, neighbors_j, &numbers, "numbers", group_consts.size(1));

  // Uninitialised: every centre with pairs zeroes its own rows before accumulating into them (backward_centres).
  at::Tensor grad_vectors = at::empty_like(vectors);
  AT_DISPATCH_FLOATING_TYPES(vectors.scalar_type(), "gmp_backward_cpu", [&] {
    const Tables<scalar_t> t = gmp::make_tables<scalar_t>(group_consts, group_ptr, group_features, gmax, orders,
                                                          offsets, c1, radii2, coeffs, multiplicity);
    const scalar_t* vec = vectors.data_ptr<scalar_t>();
    const int64_t* rp = row_ptr.data_ptr<int64_t>();
    const int64_t* nj = neighbors_j.data_ptr<int64_t>();
    const int64_t* sp = numbers.data_ptr<int64_t>();
    const scalar_t* gf = grad_features.data_ptr<scalar_t>();
    const scalar_t* mom = moments.data_ptr<scalar_t>();
    const scalar_t* gmom = has_gm ? grad_moments.data_ptr<scalar_t>() : nullptr;
    scalar_t* gv = grad_vectors.data_ptr<scalar_t>();
    at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
      backward_centres(t, vec, rp, nj, sp, mom, gf, gmom, gv, n_moments, square, begin, end);
    });
  });
  return grad_vectors;
}

}  // namespace

TORCH_LIBRARY_IMPL(fpcore, CPU, m) {
  m.impl("gmp", &gmp_cpu);
  m.impl("gmp_backward", &gmp_backward_cpu);
}

}  // namespace fpcore
