// Exhaustive check of the AVX-512 bf16 stores of the CPU stage loop (cpp/lowp_bf16_avx512.hpp; with
// AVX512_BF16 also its store_bf16_rne_cvt)
// against the scalar rules of rules/lowp.hpp (f32_to_bf16, f32_to_bf16_sr), over all 2^32 float32
// bit patterns; the stochastic store with three words per pattern (one hashed, and the 16 added
// bits all zero and all one: the ends of its carry), from both halves of the word. ~60 s:
//
//   g++ -O3 -std=c++17 -Icpp -Icpp/include tools/bf16_exhaustive.cpp -o /tmp/bf16x && /tmp/bf16x
//
// (Exits 2 without AVX-512.) The test suite checks the stores through steps; this checks everything.
#include <cstdio>
#include <vector>

#include "lowp_bf16_avx512.hpp"
#include "optkern/rules/lowp.hpp"
using namespace optkern::lowp;

int main() {
#if defined(OPTKERN_BF16_AVX512)
  if (!optkern::use_avx512()) return std::puts("no AVX-512 here"), 2;
  const int64_t kBatch = 1 << 16;
  std::vector<float> x(kBatch);
  std::vector<uint16_t> h(kBatch);
  std::vector<uint32_t> w(kBatch);
  long bad = 0, bad_sr = 0;
  for (uint64_t base = 0; base < (uint64_t(1) << 32); base += kBatch) {
    for (int64_t i = 0; i < kBatch; ++i) x[i] = float_of(uint32_t(base + uint64_t(i)));
    avx512::store_bf16_rne(h.data(), x.data(), kBatch - 3);  // (a partial last vector too)
    for (int64_t i = 0; i < kBatch - 3; ++i) bad += h[i] != f32_to_bf16(x[i]);
    if (optkern::use_avx512_bf16()) {  // (AVX512_BF16's conversion; a subnormal's vector pair falls back)
      avx512::store_bf16_rne_cvt(h.data(), x.data(), kBatch - 3);
      for (int64_t i = 0; i < kBatch - 3; ++i) bad += h[i] != f32_to_bf16(x[i]);
    }
    for (int variant = 0; variant < 3; ++variant)
      for (int high = 0; high < 2; ++high) {
        for (int64_t i = 0; i < kBatch; ++i) {
          const uint32_t hashed = uint32_t(base + uint64_t(i)) * 2654435761u;
          w[i] = variant == 0 ? hashed : variant == 1 ? 0u : 0xffffffffu;
        }
        if (high) avx512::store_bf16_sr<true>(h.data(), x.data(), w.data(), kBatch);
        else avx512::store_bf16_sr<false>(h.data(), x.data(), w.data(), kBatch);
        for (int64_t i = 0; i < kBatch; ++i) {
          const uint32_t bits = high ? w[i] : w[i] << 16;  // (lowp_storage.hpp's state_bits)
          if (h[i] != f32_to_bf16_sr(x[i], bits) && bad_sr++ < 5)
            std::printf("  sr mismatch x=%a bits=%08x got %04x want %04x\n", x[i], bits, h[i], f32_to_bf16_sr(x[i], bits));
        }
      }
  }
  std::printf("nearest: %ld mismatches; stochastic: %ld mismatches\n", bad, bad_sr);
  return bad || bad_sr ? 1 : 0;
#else
  return std::puts("not an x86-64 GCC build"), 2;
#endif
}
