// Small helpers for CPU loops that gcc must vectorise: a branch-free exp for non-positive arguments,
// integer bit-pattern types for branch-free selects, and the x86-64 runtime-dispatch attribute.
#pragma once

#include <bit>
#include <cstdint>
#include <limits>
#include <type_traits>

#if defined(__GNUC__)
#define FPCORE_INLINE inline __attribute__((always_inline))
#define FPCORE_UNROLL _Pragma("GCC unroll 64")
#else
#define FPCORE_INLINE inline
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

}  // namespace fpcore
