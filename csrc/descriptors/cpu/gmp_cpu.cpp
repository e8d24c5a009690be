// CPU kernels of fpcore::gmp and fpcore::gmp_backward: parallel over centre atoms, per-centre
// moment scratch, memory linear in pairs.
#include <ATen/Parallel.h>
#include <torch/library.h>
#include <ATen/ATen.h>

#include <algorithm>
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
// Blocked, vectorisable CPU evaluation. Per centre the entries (self term + pairs) are sorted by the
// species of j (counting sort), and for every (species, Gaussian) the entries are filtered down the
// descending-radius group rows with an in-place compaction, so each (entry, Gaussian, group) that the
// inclusion rule keeps is visited once and the excluded ones cost nothing. The kept entries are then
// processed in blocks of kBlock in structure-of-arrays form: one pass computes exp(C2 d^2) and the
// moment polynomials P_a for the whole block, then one loop per feature accumulates the monomials
// over fixed-width lane arrays, which gcc turns into SIMD code (exp included, see exp_nonpositive).
// Lanes sum in a different order than the per-entry loop of gmp_math.h: the results agree to rounding.
// ---------------------------------------------------------------------------------------------------
constexpr int kBlock = 64;

template <typename T>
constexpr int kLanes = 32 / static_cast<int>(sizeof(T));  // one 256-bit register

// Compacted entries of one (centre, species, Gaussian), structure of arrays. idx = pair index, -1
// for the self term and for padding.
template <typename T>
struct EntryList {
  std::vector<T> x, y, z, d2;
  std::vector<int64_t> idx;
  int64_t n = 0;
  void reserve(int64_t cap) {
    cap += kBlock;
    if (static_cast<int64_t>(x.size()) < cap) {
      x.resize(cap);
      y.resize(cap);
      z.resize(cap);
      d2.resize(cap);
      idx.resize(cap);
    }
  }
  // Keeps the entries of src[b, e) with d2 <= r2 (src may be *this with b = 0: stable, in place).
  void filter(const EntryList& src, int64_t b, int64_t e, T r2) {
    // raw pointers: the loop is the hottest scalar part and must not reload the vectors' members
    const T *sx = src.x.data(), *sy = src.y.data(), *sz = src.z.data(), *sd = src.d2.data();
    const int64_t* si = src.idx.data();
    T *dx = x.data(), *dy = y.data(), *dz = z.data(), *dd = d2.data();
    int64_t* di = idx.data();
    int64_t w = 0;
    for (int64_t q = b; q < e; ++q) {
      const T d = sd[q];
      dx[w] = sx[q];
      dy[w] = sy[q];
      dz[w] = sz[q];
      dd[w] = d;
      di[w] = si[q];
      w += d <= r2 ? 1 : 0;
    }
    n = w;
    // padding up to whole lanes/blocks: excluded by every radius, zero moments
    for (int64_t q = n; q < n + kLanes<T> && q < static_cast<int64_t>(x.size()); ++q) {
      x[q] = y[q] = z[q] = T(0);
      d2[q] = std::numeric_limits<T>::max();
      idx[q] = -1;
    }
  }
};

// Per-block arrays: exp(C2 d^2) and P_a(lam x), P_b(lam y), P_c(lam z), a, b, c <= kMaxOrder.
template <typename T>
struct BlockPolys {
  alignas(64) T ex[kBlock];
  alignas(64) T px[gmp::kMaxOrder + 1][kBlock];
  alignas(64) T py[gmp::kMaxOrder + 1][kBlock];
  alignas(64) T pz[gmp::kMaxOrder + 1][kBlock];
  alignas(64) T e[kBlock];

  FPCORE_INLINE void compute(const EntryList<T>& L, int64_t b, int nb, T c2, T lam, T v, int nmax) {
    const T* X = L.x.data() + b;
    const T* Y = L.y.data() + b;
    const T* Z = L.z.data() + b;
    const T* D = L.d2.data() + b;
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
  }

  // e = C1 exp(C2 d^2) where d^2 <= r2 (the feature's own radius), else 0
  FPCORE_INLINE void weights(const EntryList<T>& L, int64_t b, int nb, T c1, T r2) {
    using I = Bits<T>;
    const T* D = L.d2.data() + b;
    const I rb = std::bit_cast<I>(r2);  // r2 >= 0 and d2 >= 0: compare bit patterns
    for (int p = 0; p < nb; ++p)
      e[p] = std::bit_cast<T>(std::bit_cast<I>(c1 * ex[p]) & -static_cast<I>(std::bit_cast<I>(D[p]) <= rb));
  }
};

// Q[m] += sum_p e_p P_a P_b P_c over the monomials (a, b, c) of order N (kernels' enumeration).
template <int N, typename T>
FPCORE_INLINE void add_order(const BlockPolys<T>& B, int nb, T* Q) {
  constexpr int L = kLanes<T>;
  constexpr int M = (N + 1) * (N + 2) / 2;
  T acc[M][L] = {};
  for (int p0 = 0; p0 < nb; p0 += L) {
    int m = 0;
    FPCORE_UNROLL
    for (int a = N; a >= 0; --a) {
      T ea[L];
      for (int l = 0; l < L; ++l) ea[l] = B.e[p0 + l] * B.px[a][p0 + l];
      FPCORE_UNROLL
      for (int b = N - a; b >= 0; --b, ++m) {
        for (int l = 0; l < L; ++l) acc[m][l] += ea[l] * B.py[b][p0 + l] * B.pz[N - a - b][p0 + l];
      }
    }
  }
  for (int m = 0; m < M; ++m) {
    T s = 0;
    for (int l = 0; l < L; ++l) s += acc[m][l];
    Q[m] += s;
  }
}

template <typename T>
FPCORE_INLINE void add_density(const BlockPolys<T>& B, int nb, T* Q) {
  constexpr int L = kLanes<T>;
  T acc[L] = {};
  for (int p0 = 0; p0 < nb; p0 += L)
    for (int l = 0; l < L; ++l) acc[l] += B.e[p0 + l];
  T s = 0;
  for (int l = 0; l < L; ++l) s += acc[l];
  Q[0] += s;
}

// Gradient pieces of sum_m G_m Q_m for a feature of order N: per entry, radial += e sum_m G_m T_m,
// ang_x += e sum_m G_m a P_{a-1} P_b P_c (and y, z), T_m = P_a P_b P_c.
template <int N, typename T>
FPCORE_INLINE void grad_order(const BlockPolys<T>& B, int nb, const T* G, T* radial, T* ax, T* ay, T* az) {
  constexpr int L = kLanes<T>;
  for (int p0 = 0; p0 < nb; p0 += L) {
    T r[L] = {}, sx[L] = {}, sy[L] = {}, sz[L] = {};
    int m = 0;
    FPCORE_UNROLL
    for (int a = N; a >= 0; --a) {
      FPCORE_UNROLL
      for (int b = N - a; b >= 0; --b, ++m) {
        const int c = N - a - b;
        const T gm = G[m];
        for (int l = 0; l < L; ++l) {
          const int p = p0 + l;
          const T yz = B.py[b][p] * B.pz[c][p];
          r[l] += gm * B.px[a][p] * yz;
          if (a > 0) sx[l] += (gm * T(a)) * B.px[a - 1][p] * yz;
          if (b > 0) sy[l] += (gm * T(b)) * B.px[a][p] * B.py[b - 1][p] * B.pz[c][p];
          if (c > 0) sz[l] += (gm * T(c)) * B.px[a][p] * B.py[b][p] * B.pz[c - 1][p];
        }
      }
    }
    for (int l = 0; l < L; ++l) {
      const T e = B.e[p0 + l];
      radial[p0 + l] += e * r[l];
      ax[p0 + l] += e * sx[l];
      ay[p0 + l] += e * sy[l];
      az[p0 + l] += e * sz[l];
    }
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
  EntryList<T> sorted, kept;
  std::vector<int64_t> cnt;  // counting sort by species
  BlockPolys<T> blk;
  alignas(64) T radial[kBlock], ax[kBlock], ay[kBlock], az[kBlock];

  // Fills `sorted` with the self term and the pairs of centre i, grouped by species; returns the
  // segment boundaries through seg_species / seg_begin (segments in ascending species).
  void gather(const T* vec, const int64_t* rp, const int64_t* nj, const int64_t* sp, int64_t i, int64_t Z,
              std::vector<int64_t>& seg_species, std::vector<int64_t>& seg_begin) {
    const int64_t b = rp[i], e = rp[i + 1], n = e - b + 1;
    sorted.reserve(n);
    kept.reserve(n);
    seg_species.clear();
    seg_begin.clear();
    const int64_t s_self = sp[i];
    bool single = true;
    for (int64_t p = b; p < e; ++p) single &= sp[nj[p]] == s_self;
    if (single) {
      sorted.x[0] = sorted.y[0] = sorted.z[0] = sorted.d2[0] = T(0);
      sorted.idx[0] = -1;
      for (int64_t p = b; p < e; ++p) {
        const int64_t q = p - b + 1;
        const T x = vec[3 * p], y = vec[3 * p + 1], z = vec[3 * p + 2];
        sorted.x[q] = x;
        sorted.y[q] = y;
        sorted.z[q] = z;
        sorted.d2[q] = x * x + y * y + z * z;
        sorted.idx[q] = p;
      }
      seg_species.push_back(s_self);
      seg_begin.push_back(0);
      seg_begin.push_back(n);
      return;
    }
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
    auto put = [&](int64_t s, T x, T y, T z, int64_t id) {
      const int64_t q = cnt[s]++;
      sorted.x[q] = x;
      sorted.y[q] = y;
      sorted.z[q] = z;
      sorted.d2[q] = x * x + y * y + z * z;
      sorted.idx[q] = id;
    };
    put(s_self, T(0), T(0), T(0), -1);
    for (int64_t p = b; p < e; ++p) put(sp[nj[p]], vec[3 * p], vec[3 * p + 1], vec[3 * p + 2], p);
  }
};

// Walks the kept (entry, Gaussian, group) triples of centres [begin, end): for every centre with
// start(i) true, block(kept, b, nb, k, c2, lam, s, g) for every block of at most kBlock kept entries of
// group k (with the block's exponentials and moment polynomials in S.blk), then finish(i).
template <typename T, typename Start, typename Block, typename Finish>
FPCORE_INLINE void walk_centres(const Tables<T>& t, const T* vec, const int64_t* rp, const int64_t* nj,
                                const int64_t* sp, int64_t begin, int64_t end, CentreScratch<T>& S, Start&& start,
                                Block&& block, Finish&& finish) {
  constexpr int L = kLanes<T>;
  std::vector<int64_t> seg_s, seg_b;
  const int64_t Z = t.n_species, G = t.n_gauss, K = t.n_groups;
  for (int64_t i = begin; i < end; ++i) {
    if (!start(i)) continue;
    S.gather(vec, rp, nj, sp, i, Z, seg_s, seg_b);
    for (size_t sg = 0; sg < seg_s.size(); ++sg) {
      const int64_t s = seg_s[sg];
      for (int64_t g = 0; g < G; ++g) {
        for (int64_t r = 0; r < K; ++r) {
          const T* gc = t.group_consts + ((r * Z + s) * G + g) * gmp::kGroupConsts;
          if (!(gc[3] >= 0)) break;  // padding rows (radius^2 = -1) come last
          if (r == 0)
            S.kept.filter(S.sorted, seg_b[sg], seg_b[sg + 1], gc[3]);
          else
            S.kept.filter(S.kept, 0, S.kept.n, gc[3]);
          const int64_t n = S.kept.n;
          if (n == 0) break;
          const int64_t k = static_cast<int64_t>(gc[4]);
          const int nmax = static_cast<int>(t.group_max_order[k]);
          for (int64_t b = 0; b < n; b += kBlock) {
            const int nb = static_cast<int>(std::min<int64_t>(kBlock, (n - b + L - 1) / L * L));
            S.blk.compute(S.kept, b, nb, gc[0], gc[1], gc[2], nmax);
            block(S.kept, b, nb, k, gc[0], gc[1], s, g);
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
  CentreScratch<T> S;
  T* Q = nullptr;
  const int64_t Z = t.n_species, G = t.n_gauss, F = t.n_features;
  walk_centres(
      t, vec, rp, nj, sp, begin, end, S,
      [&](int64_t i) {
        Q = mom + i * n_moments;
        return true;
      },
      [&](const EntryList<T>& kept, int64_t b, int nb, int64_t k, T, T, int64_t s, int64_t g) {
        for (int64_t q = t.group_ptr[k]; q < t.group_ptr[k + 1]; ++q) {
          const int64_t f = t.group_features[q];
          const int64_t fsg = (f * Z + s) * G + g;
          const T r2 = t.radii2[fsg];
          if (!(r2 >= 0)) continue;
          S.blk.weights(kept, b, nb, t.c1[fsg], r2);
          T* Qf = Q + t.offsets[f];
          dispatch_order<T>(static_cast<int>(t.orders[f]), [&](auto NC) {
            constexpr int N = decltype(NC)::value;
            if constexpr (N < 0)
              add_density(S.blk, nb, Qf);
            else
              add_order<N>(S.blk, nb, Qf);
          });
        }
      },
      [&](int64_t i) {
        for (int64_t f = 0; f < F; ++f) out[i * F + f] = gmp::feature_value(t, f, Q, square);
      });
}

template <typename T>
FPCORE_INLINE void backward_centres_impl(const Tables<T>& t, const T* vec, const int64_t* rp, const int64_t* nj,
                                         const int64_t* sp, const T* mom, const T* gf, const T* gmom, T* gv,
                                         int64_t n_moments, bool square, int64_t begin, int64_t end) {
  CentreScratch<T> S;
  std::vector<T> Gbuf(n_moments);
  T* Gm = Gbuf.data();
  const int64_t Z = t.n_species, G = t.n_gauss, F = t.n_features;
  walk_centres(
      t, vec, rp, nj, sp, begin, end, S,
      [&](int64_t i) {
        if (rp[i] == rp[i + 1]) return false;  // only the constant self term
        // This centre's rows of grad_vectors (allocated uninitialised): zeroed here, by the thread that fills
        // them and while they are about to be used, instead of in a separate pass over all pairs.
        std::fill(gv + 3 * rp[i], gv + 3 * rp[i + 1], T(0));
        const T* Q = mom + i * n_moments;
        for (int64_t m = 0; m < n_moments; ++m) Gm[m] = gmom ? gmom[i * n_moments + m] : T(0);
        for (int64_t f = 0; f < F; ++f) gmp::feature_backward(t, f, Q, gf[i * F + f], square, Gm);
        return true;
      },
      [&](const EntryList<T>& kept, int64_t b, int nb, int64_t k, T c2, T lam, int64_t s, int64_t g) {
        for (int p = 0; p < nb; ++p) S.radial[p] = S.ax[p] = S.ay[p] = S.az[p] = T(0);
        for (int64_t q = t.group_ptr[k]; q < t.group_ptr[k + 1]; ++q) {
          const int64_t f = t.group_features[q];
          const int64_t fsg = (f * Z + s) * G + g;
          const T r2 = t.radii2[fsg];
          if (!(r2 >= 0)) continue;
          S.blk.weights(kept, b, nb, t.c1[fsg], r2);
          const T* Gf = Gm + t.offsets[f];
          dispatch_order<T>(static_cast<int>(t.orders[f]), [&](auto NC) {
            constexpr int N = decltype(NC)::value;
            if constexpr (N < 0) {
              const T g0 = Gf[0];
              for (int p = 0; p < nb; ++p) S.radial[p] += g0 * S.blk.e[p];
            } else {
              grad_order<N>(S.blk, nb, Gf, S.radial, S.ax, S.ay, S.az);
            }
          });
        }
        const T two_c2 = T(2) * c2;
        for (int p = 0; p < nb; ++p) {
          const int64_t id = kept.idx[b + p];
          if (id < 0) continue;  // self term (constant) and padding
          const T rad = two_c2 * S.radial[p];
          gv[3 * id] += rad * kept.x[b + p] + lam * S.ax[p];
          gv[3 * id + 1] += rad * kept.y[b + p] + lam * S.ay[p];
          gv[3 * id + 2] += rad * kept.z[b + p] + lam * S.az[p];
        }
      },
      [](int64_t) {});
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
