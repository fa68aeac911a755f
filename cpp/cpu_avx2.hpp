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

// Whether the AVX-512 forms run (cpp/lowp_q8_avx512.hpp, philox_cpu.hpp's fill_words): F, BW, DQ
// and VL besides the above. OPTKERN_NO_AVX512=1 turns them off (the AVX2 forms run), so that the
// tests also pin the AVX2 loops on an AVX-512 machine.
inline bool use_avx512() {
  static const bool ok = use_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
                         !(std::getenv("OPTKERN_NO_AVX512") && std::getenv("OPTKERN_NO_AVX512")[0] == '1');
  return ok;
}

// Whether the 8-bit decode looks its values up by byte permutes and the encode narrows 64 codes
// by two (AVX512_VBMI, besides the above; cpp/lowp_q8_avx512.hpp's decode_vbmi, encode_vbmi).
// OPTKERN_NO_AVX512_VBMI=1 turns them off (the arithmetic AVX-512 decode and the 16-value
// encode run), so that the tests pin both on a VBMI machine.
inline bool use_avx512_vbmi() {
  static const bool ok =
      use_avx512() && __builtin_cpu_supports("avx512vbmi") &&
      !(std::getenv("OPTKERN_NO_AVX512_VBMI") && std::getenv("OPTKERN_NO_AVX512_VBMI")[0] == '1');
  return ok;
}

// Whether bf16 rounding to nearest even uses AVX512_BF16's conversion (besides the AVX-512 forms;
// cpp/lowp_bf16_avx512.hpp's store_bf16_rne_cvt). OPTKERN_NO_AVX512_BF16=1 turns it off, so that
// the tests pin both forms on such a CPU.
inline bool use_avx512_bf16() {
  static const bool ok =
      use_avx512() && __builtin_cpu_supports("avx512bf16") &&
      !(std::getenv("OPTKERN_NO_AVX512_BF16") && std::getenv("OPTKERN_NO_AVX512_BF16")[0] == '1');
  return ok;
}

// F16C's half conversions (cpp/lowp_convert_loops.hpp), under the same switch.
inline bool use_f16c() {
  static const bool ok = use_avx2() && __builtin_cpu_supports("f16c");
  return ok;
}

}  // namespace optkern
#endif
