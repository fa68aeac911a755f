// The activation element loop of cpp/nn.cpp (one chunk, no Python, no threads), in a header so
// that tests/test_hunt44a_gelu_vectorize.py can compile it alone and check that it vectorizes.
#pragma once
#include <cstdint>

#include "optkern/common.hpp"
#include "optkern/rules/activation.hpp"

namespace optkern {

// One activation over [0, n): the kind is a template argument so the rule inlines without a switch
// and the loop vectorizes. The derivatives not asked for are never computed (the rule inlines and
// what feeds only g1 / g2 is dead code).
template <class T, rules::Act K>
OK_CLONES void activation_range(const T* OK_RESTRICT z, T* OK_RESTRICT a, T* OK_RESTRICT d1, T* OK_RESTRICT d2,
                                int64_t n) {
  if (d2) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) rules::activation(K, z[i], a[i], d1[i], d2[i]);
  } else if (d1) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      T g2;
      rules::activation(K, z[i], a[i], d1[i], g2);
    }
  } else {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      T g1, g2;
      rules::activation(K, z[i], a[i], g1, g2);
    }
  }
}

}  // namespace optkern
