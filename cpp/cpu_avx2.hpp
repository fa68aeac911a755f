// Whether the hand-written AVX2 loops run (cpp/lowp_q8_avx2.hpp, philox_cpu.hpp's fill_words):
// the CPU has AVX2 and FMA, asked once. OPTKERN_PORTABLE=1 in the environment turns them off,
// so that the tests also pin the portable loops on an AVX2 machine (tests/test_lowp_q8.py).
#pragma once
#if defined(__x86_64__) && defined(__GNUC__)
#define OPTKERN_X86_AVX2 1
#include <cstdlib>

namespace optkern {

inline bool use_avx2() {
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                         !(std::getenv("OPTKERN_PORTABLE") && std::getenv("OPTKERN_PORTABLE")[0] == '1');
  return ok;
}

// F16C's half conversions (cpp/lowp_convert_loops.hpp), under the same switch.
inline bool use_f16c() {
  static const bool ok = use_avx2() && __builtin_cpu_supports("f16c");
  return ok;
}

}  // namespace optkern
#endif
