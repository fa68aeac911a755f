// The column-block kernels of the Lanczos orthogonalization (cpp/linalg.cpp: the single-vector pass
// and the block of independent vectors; cpp/orthonormal.cpp: a block of rows made orthonormal in
// order). One definition, so every caller's rows get the bits of lanczos_orthogonalize_.
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

#include "lane_sums.hpp"
#include "optkern/common.hpp"
#include "optkern/rules/second_order.hpp"
#include "parallel.hpp"

namespace optkern {
namespace linalg {
namespace {  // (internal in each file that includes it, as the ISA clones were when linalg.cpp held them)
constexpr int64_t kBlock = 2048;  // columns per block: w's block stays in L1 (larger blocks measured no faster)

template <class TQ, class T> double block_dot(const TQ* OK_RESTRICT q, const T* OK_RESTRICT w, int64_t len) {
  return lane_dot<double>(len, [&](int64_t j) { return double(q[j]); }, [&](int64_t j) { return double(w[j]); });
}

// The per-block loops, compiled per ISA level (the module's baseline is SSE2: without the clones
// these ran at a quarter of the AVX2 width and the reorthogonalization was compute-bound).

// part[i] = Q_i . w over the block, for the first k rows.
template <class TQ, class T>
OK_CLONES void block_dots(const TQ* Q, int64_t n, int64_t k, int64_t lo, int64_t len, const T* w, double* part) {
  for (int64_t i = 0; i < k; ++i) part[i] = block_dot(Q + i * n + lo, w + lo, len);
}

// w -= sum_i c_i Q_i over the block (rows in order: the rounding does not depend on the blocking;
// each product rounded, as the GPU's update_kernel and every ISA clone).
template <class TQ, class T>
OK_CLONES void block_update(const TQ* Q, int64_t n, int64_t k, int64_t lo, int64_t len, const double* c, T* w) {
  T* OK_RESTRICT wb = w + lo;
  for (int64_t i = 0; i < k; ++i) {
    const T ci = T(c[i]);
    const TQ* OK_RESTRICT q = Q + i * n + lo;
#pragma omp simd
    for (int64_t j = 0; j < len; ++j) wb[j] = rules::scaled_plus(-ci, T(q[j]), wb[j]);  // (never contracted)
  }
}

template <class T> OK_CLONES double block_norm2(const T* w, int64_t lo, int64_t len) {
  return block_dot(w + lo, w + lo, len);
}

template <class T> OK_CLONES void block_scale(T* w, int64_t lo, int64_t len, T s) {
  T* OK_RESTRICT wb = w + lo;
#pragma omp simd
  for (int64_t j = 0; j < len; ++j) wb[j] *= s;
}

// ||w|| and w / ||w|| where the direct sum of squares left the range (rare: a float64 w of entries
// near 1e+-154 or beyond, a float32 w of norm below 2^-125): max|w|, then the squares of w 2^-e,
// block by block (bitwise the same for any thread count). 0 for a zero w (left as it is), NaN or
// Inf for a w holding NaN or Inf (left too).
template <class T> double scaled_normalize(T* w, const std::vector<Chunk>& blocks, std::vector<double>& part) {
  int64_t n = 0;
  for (const Chunk& bl : blocks) n += bl.len;
  for_each_chunk(blocks, n, [&](const Chunk& bl) {
    double m = 0.0;
    for (int64_t j = bl.start; j < bl.start + bl.len; ++j) m = rules::max_abs(m, double(w[j]));
    part[size_t(bl.start / kBlock)] = m;
  });
  double amax = 0.0;
  for (double v : part) amax = rules::max_abs(amax, v);
  if (!rules::finite_(amax) || amax == 0.0) return amax;
  const int e = rules::scale_exp(amax);
  for_each_chunk(blocks, n, [&](const Chunk& bl) {
    part[size_t(bl.start / kBlock)] = lane_sum<double>(bl.len, [&](int64_t j) {
      const double v = rules::scale2(double(w[bl.start + j]), -e);
      return v * v;
    });
  });
  double ssq = 0.0;
  for (double v : part) ssq += v;
  const double inv = 1.0 / std::sqrt(ssq);
  for_each_chunk(blocks, n, [&](const Chunk& bl) {
    for (int64_t j = bl.start; j < bl.start + bl.len; ++j) w[j] = rules::lanczos_unit_scaled(w[j], e, inv);
  });
  return rules::norm_scaled(ssq, e);
}

template <class TQ, class T>
double cgs2_normalize(const TQ* Q, int64_t n, int64_t k, T* w, double* coeffs, int passes,
                      const double* first = nullptr) {
  const int64_t nb = (n + kBlock - 1) / kBlock;
  std::vector<Chunk> blocks;
  for (int64_t b = 0; b < nb; ++b) blocks.push_back({0, b * kBlock, std::min(kBlock, n - b * kBlock)});
  std::vector<double> part(size_t(nb * (k > 0 ? k : 1)));
  std::vector<double> c(static_cast<size_t>(k)), nrm(static_cast<size_t>(nb));
  const int64_t work = n * (k + 1);
  auto dots = [&](const Chunk& bl) { block_dots(Q, n, k, bl.start, bl.len, w, &part[size_t(bl.start / kBlock * k)]); };
  auto sum_parts = [&]() {
    for (int64_t i = 0; i < k; ++i) {
      double s = 0.0;
      for (int64_t b = 0; b < nb; ++b) s += part[size_t(b * k + i)];
      c[size_t(i)] = s;
    }
  };
  auto update = [&](const Chunk& bl) { block_update(Q, n, k, bl.start, bl.len, c.data(), w); };
  if (k > 0) {
    if (first != nullptr) {  // (pass 1's Q w summed by the caller as sum_parts sums it: the same bits)
      for (int64_t i = 0; i < k; ++i) c[size_t(i)] = first[i];
    } else {
      for_each_chunk(blocks, work, dots);  // pass 1: Q w
      sum_parts();
    }
    for (int64_t i = 0; i < k; ++i) coeffs[i] = c[size_t(i)];
    if (passes == 2) {
      for_each_chunk(blocks, work, [&](const Chunk& bl) {  // pass 1 update, pass 2 dots
        update(bl);
        dots(bl);
      });
      sum_parts();
      for (int64_t i = 0; i < k; ++i) coeffs[i] += c[size_t(i)];
    }
  }
  for_each_chunk(blocks, work, [&](const Chunk& bl) {  // last pass's update, ||w||^2
    if (k > 0) update(bl);
    nrm[size_t(bl.start / kBlock)] = block_norm2(w, bl.start, bl.len);
  });
  double s = 0.0;
  for (double v : nrm) s += v;
  if (!rules::lanczos_sumsq_direct<T>(s)) return scaled_normalize(w, blocks, nrm);
  const double beta = std::sqrt(s);
  if (beta > 0.0) {
    const T inv = T(1.0 / beta);
    for_each_chunk(blocks, n, [&](const Chunk& bl) { block_scale(w, bl.start, bl.len, inv); });
  }
  return beta;
}

// Rows of Q per group where several vectors meet a block of it (a group's slab of the block stays in
// L2 while the vectors pass over it).
constexpr int64_t kRows = 8;

}  // namespace
}  // namespace linalg
}  // namespace optkern
