#pragma once
// Cutoff functions f_c(d) of wACSF and EAD (docs/descriptors/wacsf.md) and their derivatives df_c/dd.
// Every function is 0 for d >= rc. Shared by the CPU and CUDA kernels.
#include <cmath>
#include <cstdint>
#include <string>

#include "common/host_device.h"

namespace fpcore {

enum class CutoffFunction : int64_t { Cosine = 0, Tanh = 1, Poly1 = 2, Poly2 = 3, Poly3 = 4, Poly4 = 5, Exponent = 6 };

// Value and derivative with respect to d. `value` and `derivative` are written even outside rc (0).
template <typename T>
FPCORE_HD void cutoff_function(CutoffFunction kind, T d, T rc, T& value, T& derivative) {
  value = T(0);
  derivative = T(0);
  if (!(d < rc)) return;
  const T x = d / rc;
  switch (kind) {
    case CutoffFunction::Cosine: {
      const T pi = T(3.14159265358979323846);
      value = T(0.5) * (cos(pi * x) + T(1));
      derivative = T(-0.5) * pi * sin(pi * x) / rc;
      break;
    }
    case CutoffFunction::Tanh: {
      const T t = tanh(T(1) - x);
      value = t * t * t;
      derivative = -T(3) * t * t * (T(1) - t * t) / rc;
      break;
    }
    case CutoffFunction::Poly1:
      value = x * x * (T(2) * x - T(3)) + T(1);
      derivative = x * (T(6) * x - T(6)) / rc;
      break;
    case CutoffFunction::Poly2:
      value = x * x * x * (x * (T(15) - T(6) * x) - T(10)) + T(1);
      derivative = x * x * (x * (T(60) - T(30) * x) - T(30)) / rc;
      break;
    case CutoffFunction::Poly3:
      value = x * x * x * x * (x * (x * (T(20) * x - T(70)) + T(84)) - T(35)) + T(1);
      derivative = x * x * x * (x * (x * (T(140) * x - T(420)) + T(420)) - T(140)) / rc;
      break;
    case CutoffFunction::Poly4:
      value = x * x * x * x * x * (x * (x * (x * (T(315) - T(70) * x) - T(540)) + T(420)) - T(126)) + T(1);
      derivative = x * x * x * x * (x * (x * (x * (T(2520) - T(630) * x) - T(3780)) + T(2520)) - T(630)) / rc;
      break;
    case CutoffFunction::Exponent: {
      const T s = T(1) - x * x;
      value = exp(T(1) - T(1) / s);
      derivative = value * (-T(2) * x / (s * s)) / rc;
      break;
    }
  }
}

// Parses the names used in the Python API; returns false for an unknown name.
inline bool parse_cutoff_function(const std::string& name, CutoffFunction& kind) {
  static const char* names[] = {"cosine", "tanh", "poly1", "poly2", "poly3", "poly4", "exponent"};
  for (int64_t k = 0; k < 7; ++k) {
    if (name == names[k]) {
      kind = static_cast<CutoffFunction>(k);
      return true;
    }
  }
  return false;
}

}  // namespace fpcore
