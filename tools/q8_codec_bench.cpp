// In-cache cost of the CPU 8-bit codec (cpp/lowp_q8.hpp's block functions as the step calls them):
// ns per element and map of the encode (signed map for exp_avg-like, unsigned for exp_avg_sq-like
// blocks of 256), the decode and the block scale, one thread, thread CPU time; min and max of 15
// repeats. Build against a tree (to pair two trees, build both and alternate the runs):
//
//   g++ -O3 -std=c++17 -Icpp -Icpp/include tools/q8_codec_bench.cpp -o /tmp/q8b && /tmp/q8b [reps]
//
// (OPTKERN_NO_AVX512_VBMI=1, OPTKERN_NO_AVX512=1, OPTKERN_PORTABLE=1 time the other forms.)
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <random>
#include <vector>

#include "lowp_q8.hpp"
using namespace optkern::lowp;

static double now() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

int main(int argc, char** argv) {
  const int B = 256, NB = 256;  // 64K elements a state: floats and codes stay in L2
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  std::vector<float> m(B * NB), v(B * NB), out(B * NB), sm(NB), sv(NB);
  std::vector<uint8_t> qm(B * NB), qv(B * NB);
  for (int i = 0; i < B * NB; ++i) {  // Adam-like: m ~ g, v ~ g^2 (g ~ 1e-2 N(0, 1))
    const float g = nd(rng) * 1e-2f;
    m[i] = nd(rng) * 1e-3f;
    v[i] = g * g * 1e-3f;
  }
  for (int b = 0; b < NB; ++b) sm[b] = q8_block_scale(&m[b * B], B), sv[b] = q8_block_scale(&v[b * B], B);
  const int reps = argc > 1 ? std::atoi(argv[1]) : 100;
  std::vector<double> te, td, ts;
  unsigned sink = 0;
  for (int r = 0; r < 15; ++r) {
    const double t0 = now();
    for (int k = 0; k < reps; ++k)
      for (int b = 0; b < NB; ++b) {
        q8_encode_block(&m[b * B], &qm[b * B], B, sm[b]);
        q8_encode_block(&v[b * B], &qv[b * B], B, sv[b]);
      }
    const double t1 = now();
    for (int k = 0; k < reps; ++k)
      for (int b = 0; b < NB; ++b) {
        q8_decode_block(&qm[b * B], &out[b * B], B, sm[b]);
        q8_decode_block(&qv[b * B], &out[b * B], B, sv[b]);
      }
    const double t2 = now();
    for (int k = 0; k < reps; ++k)
      for (int b = 0; b < NB; ++b) sink += bits_of(q8_block_scale(&m[b * B], B)) ^ bits_of(q8_block_scale(&v[b * B], B));
    const double t3 = now();
    te.push_back(t1 - t0), td.push_back(t2 - t1), ts.push_back(t3 - t2);
  }
  const double per = 1e9 / (2.0 * reps * B * NB);
  unsigned h = 0;  // (the codes' hash: two trees must agree)
  for (int i = 0; i < B * NB; ++i) h = h * 31u + qm[i] * 7u + qv[i] + unsigned(out[i] != 0.0f);
  const auto mm = [&](const std::vector<double>& t) {
    const auto [lo, hi] = std::minmax_element(t.begin(), t.end());
    std::printf("%.3f [max %.3f]", *lo * per, *hi * per);
  };
  std::printf("ns/element/map: encode ");
  mm(te);
  std::printf("  decode ");
  mm(td);
  std::printf("  scale ");
  mm(ts);
  std::printf("  (codes hash %08x, %u)\n", h, sink & 1u);
}
