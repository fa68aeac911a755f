// Exhaustive check of the CPU float32 -> float16 conversion loop (cpp/lowp_convert_loops.hpp:
// vcvtps2ph where the CPU has F16C) against the scalar rule of rules/lowp.hpp (f32_to_f16), and of
// the stochastic loops against their scalar rules, over all 2^32 float32 bit patterns. ~20 s:
//
//   g++ -O3 -std=c++17 -Icpp -Icpp/include tools/f16_exhaustive.cpp -o /tmp/f16x && /tmp/f16x
//
// (OPTKERN_PORTABLE=1 checks the portable loops instead.) The test suite checks a 1M-pattern sweep
// and every threshold; this checks everything.
#include <cstdio>
#include <vector>

#include "lowp_convert_loops.hpp"
using namespace optkern::lowp;

int main() {
  const int64_t kBatch = 1 << 16;
  std::vector<float> x(kBatch);
  std::vector<uint16_t> h(kBatch), hs(kBatch);
  std::vector<uint32_t> w(kBatch);
  long bad = 0, bad_sr = 0;
  for (uint64_t base = 0; base < (uint64_t(1) << 32); base += kBatch) {
    for (int64_t i = 0; i < kBatch; ++i) {
      x[i] = float_of(uint32_t(base + uint64_t(i)));
      w[i] = uint32_t(base + uint64_t(i)) * 2654435761u;  // any words: the SR loops are pure functions of them
    }
    to_f16_loop(x.data(), h.data(), kBatch);
    to_f16_sr_loop(x.data(), w.data(), hs.data(), kBatch);
    for (int64_t i = 0; i < kBatch; ++i) {
      if (h[i] != f32_to_f16(x[i]) && bad++ < 10)
        std::printf("f16 %08x: loop %04x rule %04x\n", unsigned(base + uint64_t(i)), h[i], f32_to_f16(x[i]));
      if (hs[i] != f32_to_f16_sr(x[i], w[i]) && bad_sr++ < 10)
        std::printf("f16 sr %08x: loop %04x rule %04x\n", unsigned(base + uint64_t(i)), hs[i], f32_to_f16_sr(x[i], w[i]));
    }
  }
  std::printf("float16 (%s): %ld mismatches nearest, %ld stochastic, of 2^32\n",
              optkern::use_f16c() ? "F16C" : "portable", bad, bad_sr);
  return bad || bad_sr ? 1 : 0;
}
