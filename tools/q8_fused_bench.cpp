// In-cache cost of the fused 8-bit Adam block (cpp/lowp_q8_fused.hpp's update_block: decode of m
// and v, the Adam rule, the new absmax), one thread, thread CPU time, ns per element: min and
// max of 40 repeats over 256 blocks of 256 (64K elements: floats and codes stay in L2). With
// tools/q8_codec_bench.cpp (the encode) it A/B-tests a change to the 8-bit step's loops in
// seconds instead of a module build; the hash (of the master weights, the decoded-and-updated
// states and the new scales) must not change unless the bits are meant to. Build against a tree
// (to pair two trees, build both and alternate the runs):
//
//   g++ -O3 -std=c++17 -fopenmp-simd -fno-math-errno -fno-trapping-math -ffp-contract=off
//       -Icpp -Icpp/include tools/q8_fused_bench.cpp -o /tmp/q8f && /tmp/q8f
//
// (the module's code generation: without -fopenmp-simd the rule's `omp simd` loop compiles
// differently, without -ffp-contract=off its roundings change; the CPU needs AVX512_VBMI.)
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <random>
#include <vector>

#include "lowp_q8_fused.hpp"
using namespace optkern;

static double now() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

static uint32_t mix(uint32_t h, float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return h * 0x9e3779b1u + u;
}

int main() {
#if defined(OPTKERN_Q8_AVX512)
  if (!lowp::fused_q8(256)) {
    std::printf("this CPU does not run the fused block (AVX512_VBMI)\n");
    return 1;
  }
  const int B = 256, NB = 256, kReps = 40;
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  std::vector<float> w0(B * NB), g(B * NB), sbuf(2 * B);
  std::vector<uint8_t> qm(B * NB), qv(B * NB);
  for (auto& x : w0) x = nd(rng);
  for (auto& x : g) x = 1e-2f * nd(rng);
  for (auto& c : qm) c = uint8_t(rng());  // any code of each map
  for (auto& c : qv) c = uint8_t(rng());
  // an early step's Adam (bc2_sqrt != 1: the plain form, two divisions and a sqrt an element)
  rules::Adam<float, false, false> rule{};
  rule.one_minus_beta1 = 0.1f, rule.beta2 = 0.999f, rule.one_minus_beta2 = 1e-3f, rule.eps = 1e-8f;
  rule.decay = 1.0f, rule.step_size = 1e-3f, rule.bc2_sqrt = 0.0447f;
  // the blocks of one pass, in order (`hash`: also mixes each block's states and scales, untimed)
  const auto pass = [&](std::vector<float>& w, uint32_t* hash) {
    for (int b = 0; b < NB; ++b) {
      const uint8_t* q[2] = {qm.data() + b * B, qv.data() + b * B};
      const float scale[2] = {-0.01f, 1e-4f};  // m: the signed map (scale < 0), v: the unsigned one
      float* s[2] = {sbuf.data(), sbuf.data() + B};
      float new_scale[2];
      lowp::avx512::update_block(rule, w.data() + b * B, g.data() + b * B, q, scale, s, B, new_scale);
      if (hash) {
        *hash = mix(mix(*hash, new_scale[0]), new_scale[1]);
        for (float x : sbuf) *hash = mix(*hash, x);
      }
    }
  };
  double lo = 1e30, hi = 0.0;
  for (int rep = 0; rep < kReps; ++rep) {
    std::vector<float> w = w0;
    const double t0 = now();
    pass(w, nullptr);
    const double t = now() - t0;
    lo = std::min(lo, t), hi = std::max(hi, t);
  }
  std::vector<float> w = w0;
  uint32_t h = 0;
  pass(w, &h);
  for (float x : w) h = mix(h, x);
  const double per = 1e9 / double(B * NB);
  std::printf("update_block ns/element: %.3f [max %.3f]  (hash %08x)\n", lo * per, hi * per, h);
  return 0;
#else
  std::printf("built without the AVX-512 forms\n");
  return 1;
#endif
}
