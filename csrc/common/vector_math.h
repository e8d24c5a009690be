// Small helpers for CPU loops that gcc must vectorise: a branch-free exp for non-positive arguments,
// sin(pi u) / cos(pi u) polynomials for |u| <= 1/2,
// integer bit-pattern types for branch-free selects, a 256-bit vector type for lane loops, and the x86-64
// runtime-dispatch attribute.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#if defined(__GNUC__)
#define FPCORE_INLINE inline __attribute__((always_inline))
// after a lambda's parameter list: a lambda called from a target_clones function is compiled for the baseline
// ISA unless it is inlined into the clone
#define FPCORE_INLINE_LAMBDA __attribute__((always_inline))
#define FPCORE_UNROLL _Pragma("GCC unroll 64")
#else
#define FPCORE_INLINE inline
#define FPCORE_INLINE_LAMBDA
#define FPCORE_UNROLL
#endif

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
// Runtime CPU dispatch (ifunc): an AVX2+FMA clone and the baseline x86-64 one.
#define FPCORE_CPU_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define FPCORE_CPU_CLONES
#endif

namespace fpcore {

// Integer type of the size of T: comparisons and selects are done on bit patterns, because gcc does
// not if-convert floating-point comparisons under its default -ftrapping-math, and a loop with a
// branch does not vectorise. Non-negative IEEE numbers order like their bit patterns.
template <typename T>
using Bits = std::conditional_t<sizeof(T) == 8, int64_t, int32_t>;

// exp(x) for x <= 0 with branch-free arithmetic only (Cody-Waite reduction, degree-13 Taylor on
// |r| <= ln2/2: truncation 4e-18 relative, a few ulp overall), so loops over it vectorise; std::exp
// does not (errno). Arguments below -700 are clamped: their exp (< 1e-304) is below any use callers
// make of it (masked-out entries, padding, or a negligible term).
FPCORE_INLINE double exp_nonpositive(double x) {
  constexpr int64_t lim = std::bit_cast<int64_t>(700.0);
  const int64_t xb = std::bit_cast<int64_t>(x);
  const int64_t over = -static_cast<int64_t>((xb & std::numeric_limits<int64_t>::max()) > lim);
  x = std::bit_cast<double>((xb & ~over) | (std::bit_cast<int64_t>(-700.0) & over));
  constexpr double shifter = 6755399441055744.0;  // 1.5 * 2^52: adding it rounds to an integer in the low bits
  const double kd_shifted = x * 1.4426950408889634 + shifter;
  const int64_t bits = std::bit_cast<int64_t>(kd_shifted);
  const double kd = kd_shifted - shifter;
  const double r = (x - kd * 6.93147180369123816490e-01) - kd * 1.90821492927058770002e-10;
  double p = 1.0 / 6227020800.0;
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  // the low bits of kd_shifted hold k (two's complement): (k + 1023) << 52 is 2^k for -1022 <= k <= 0
  const int64_t scale_bits = static_cast<int64_t>(static_cast<uint64_t>(bits + 1023) << 52);
  return p * std::bit_cast<double>(scale_bits);
}

// sin(pi u) and cos(pi u) for |u| <= 1/2 by their Taylor series (truncation below 2e-18, so the result
// is within rounding of libm): inlined, branch-free, and several times cheaper than a cos call.
template <typename T>
FPCORE_INLINE T sin_pi_half(T u) {
  const T v = u * u;
  T s = T(5.392664662608129e-10);
  s = s * v + T(-2.2948428997269873e-08);
  s = s * v + T(7.952054001475513e-07);
  s = s * v + T(-2.1915353447830217e-05);
  s = s * v + T(0.00046630280576761255);
  s = s * v + T(-0.0073704309457143504);
  s = s * v + T(0.08214588661112823);
  s = s * v + T(-0.5992645293207921);
  s = s * v + T(2.5501640398773455);
  s = s * v + T(-5.16771278004997);
  s = s * v + T(3.141592653589793);
  return s * u;
}

template <typename T>
FPCORE_INLINE T cos_pi_half(T u) {
  const T v = u * u;
  T c = T(1.3768647280377414e-12);
  c = c * v + T(-7.700707130601354e-11);
  c = c * v + T(3.604730797462501e-09);
  c = c * v + T(-1.3878952462213771e-07);
  c = c * v + T(4.303069587032947e-06);
  c = c * v + T(-0.0001046381049248457);
  c = c * v + T(0.0019295743094039231);
  c = c * v + T(-0.02580689139001406);
  c = c * v + T(0.2353306303588932);
  c = c * v + T(-1.3352627688545895);
  c = c * v + T(4.0587121264167685);
  c = c * v + T(-4.934802200544679);
  return c * v + T(1);
}

// Every function taking or returning Simd is inlined, so no call crosses the vector ABI that -Wpsabi warns of.
#pragma GCC diagnostic ignored "-Wpsabi"
// One 256-bit register of T (gcc vector extensions). Lane loops that gcc vectorised badly are written with it:
// left to itself it vectorised GMP's monomial sums across monomials, with scalar reductions through memory, and kept
// wACSF's per-triplet gradient scalar.
template <typename T>
struct SimdOf;
template <>
struct SimdOf<double> {
  typedef double type __attribute__((vector_size(32)));
  typedef int64_t mask __attribute__((vector_size(32)));
};
template <>
struct SimdOf<float> {
  typedef float type __attribute__((vector_size(32)));
  typedef int32_t mask __attribute__((vector_size(32)));
};
template <typename T>
using Simd = typename SimdOf<T>::type;
template <typename T>
using SimdMask = typename SimdOf<T>::mask;  // lanes all ones (keep) or zero
template <typename T>
constexpr int kLanes = static_cast<int>(sizeof(Simd<T>) / sizeof(T));  // the kernels' lane width

// v in the lanes of m, +0 in the others: a select, so a NaN or inf in a cleared lane does not leak as it would
// through a multiplication by 0
template <typename T>
FPCORE_INLINE Simd<T> only(SimdMask<T> m, Simd<T> v) {
  return reinterpret_cast<Simd<T>>(reinterpret_cast<SimdMask<T>>(v) & m);
}

template <typename T>
FPCORE_INLINE Simd<T> load(const T* p) {
  Simd<T> v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

template <typename T>
FPCORE_INLINE void store(T* p, Simd<T> v) {
  std::memcpy(p, &v, sizeof v);
}

}  // namespace fpcore
