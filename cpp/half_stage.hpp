// Half-precision storage (float16, bfloat16) on the CPU for the normalization and dropout calls,
// with the CUDA module's contract (cuda/norm_common.cuh): x, weight, bias, out and the gradients in
// the storage type, mean / rstd / var / running statistics / ‖v‖ in float32; each element loaded to
// float32, the float32 kernel's math, each result rounded to nearest even on output
// (rules/lowp.hpp's conversions, the bits the GPU's __float2half_rn / __float2bfloat16_rn give).
//
// The normalizations run their float32 kernels unchanged, so the statistics are exactly the float32
// path's (the corrected two-pass of norm_cpu.hpp) and no second copy of the loops exists to drift
// from the tested one: the row norms (norm_rows.cpp), batch norm (norm_channels_kernels.hpp) and
// weight norm (norm_weight.cpp) run on float32 rows / blocks loaded one at a time (load_row,
// store_row, tasks below), never on float32 copies of whole arrays (a pass more over memory, and
// the copies' memory). The element-wise dropout converts batch by batch (Half16, load_n / store_n).
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "lowp_convert_loops.hpp"
#include "optkern/common.hpp"
#include "optkern/rules/lowp.hpp"
#include "parallel.hpp"
#include "py_arrays.hpp"
#include "stream_store.hpp"  // (OK_INLINE)

namespace optkern {
namespace half {
namespace py = pybind11;

// Whether dt is a 2-byte float storage type (float_dtype<HostArrays>(h, what, true) admits only
// these besides float32 / float64), and which.
inline bool is_half(const py::dtype& dt) { return dt.itemsize() == 2; }
inline bool is_bf16(const py::dtype& dt) { return dtype_name(dt) == "bfloat16"; }

// f(i0, i1) over [0, n) in blocks of kChunk elements, in parallel when large (the split decides
// only who converts a block: an element's bits never depend on it).
template <class F> void blocks(int64_t n, F&& f) {
  const int64_t nb = (n + kChunk - 1) / kChunk;
#ifdef _OPENMP
  const int threads = max_threads();
  if (nb > 1 && threads > 1 && 2 * n >= serial_below(threads)) {
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t b = 0; b < nb; ++b) f(b * kChunk, std::min(n, (b + 1) * kChunk));
    return;
  }
#endif
  for (int64_t b = 0; b < nb; ++b) f(b * kChunk, std::min(n, (b + 1) * kChunk));
}

inline void to_float(const uint16_t* h, float* o, int64_t n, bool bf16) {
  blocks(n, [&](int64_t a, int64_t b) {
    if (bf16) lowp::from_bf16_loop(h + a, o + a, b - a);
    else lowp::from_f16_loop(h + a, o + a, b - a);
  });
}

inline void from_float(const float* x, uint16_t* o, int64_t n, bool bf16) {
  blocks(n, [&](int64_t a, int64_t b) {
    if (bf16) lowp::to_bf16_loop(x + a, o + a, b - a);
    else lowp::to_f16_loop(x + a, o + a, b - a);
  });
}

// ---- Row by row (the row normalizations): no float32 copy of a whole array ----------------------
// A row of half storage loaded to float32 / a float32 row rounded to half, on the caller's thread
// (the vectorized loops: F16C where the CPU has it). The float32 row kernels run on such rows, so
// the math is the float32 path's and the bits its results rounded.
inline void load_row(const uint16_t* h, float* o, int64_t n, bool bf16) {
  if (bf16) lowp::from_bf16_loop(h, o, n);
  else lowp::from_f16_loop(h, o, n);
}
inline void store_row(const float* x, uint16_t* o, int64_t n, bool bf16) {
  if (bf16) lowp::to_bf16_loop(x, o, n);
  else lowp::to_f16_loop(x, o, n);
}
// One element (the rare rescaled redo paths, which gather across rows).
inline float load1(uint16_t h, bool bf16) { return bf16 ? lowp::bf16_to_f32(h) : lowp::f16_to_f32(h); }

// The arithmetic type of storage S: half storage travels as uint16_t bits, computed in float32.
template <class S> using compute_t = std::conditional_t<std::is_same_v<S, uint16_t>, float, S>;

// A small parameter array (weight, bias: a row's or channel's entries) as compute_t<S> values: the
// caller's array itself for float32 / float64, a float32 copy of half storage, `fill` where absent.
template <class S> struct Params {
  using T = compute_t<S>;
  std::vector<T> v;
  const T* p = nullptr;
  Params(const S* s, int64_t n, T fill, bool bf16) {
    if constexpr (std::is_same_v<S, T>) {
      if (s) p = s;
    } else if (s) {
      v.resize(size_t(n));
      to_float(s, v.data(), n, bf16);
    }
    (void)bf16;
    if (!p && v.empty()) v.assign(size_t(n), fill);
    if (!p) p = v.data();
  }
};

// ---- Task by task (batch norm, weight norm) ---------------------------------------------------------
// The elements a task reads and writes: `count` runs of `run` elements, `gap` apart from `off`
// (one run of a row or block when gap == run). With half storage they are loaded to a float32
// buffer, runs packed, and the kernel reads them through a RunView: the same code, `x + i` for
// element i of the caller's array giving its place in the buffer.
struct Region {
  int64_t off, count, gap, run;
};
template <class T> struct RunView {
  T* p;
  int64_t off, gap, run;
  OK_INLINE T* operator+(int64_t i) const {
    const int64_t d = i - off;
    return p + (d / gap) * run + d % gap;
  }
};
using HalfIn = RunView<const float>;
using HalfOut = RunView<float>;

// Tasks [t0, t1) of a kernel over half storage (x, dy in, out: y or dx; dy or out may be null): each
// task's region (k.region(t)) loaded to float32, the kernel bound to the buffers (k.bind(x, dy, out))
// and run, its output rounded back to nearest even.
struct HalfIO {
  const uint16_t *x, *dy;
  uint16_t* out;
  bool bf16;
};
template <class K> OK_INLINE void tasks(const K& k0, const HalfIO& h, int64_t t0, int64_t t1) {
  K k = k0;
  std::vector<float> buf;
  for (int64_t t = t0; t < t1; ++t) {
    const Region g = k.region(t);
    const int64_t n = g.count * g.run;
    if (buf.size() < size_t(3 * n)) buf.resize(size_t(3 * n));
    float *x = buf.data(), *dy = x + n, *out = dy + n;
    for (int64_t r = 0; r < g.count; ++r) {
      load_row(h.x + g.off + r * g.gap, x + r * g.run, g.run, h.bf16);
      if (h.dy) load_row(h.dy + g.off + r * g.gap, dy + r * g.run, g.run, h.bf16);
    }
    k.bind({x, g.off, g.gap, g.run}, {dy, g.off, g.gap, g.run}, {out, g.off, g.gap, g.run});
    k(t);
    for (int64_t r = 0; h.out && r < g.count; ++r)
      store_row(out + r * g.run, h.out + g.off + r * g.gap, g.run, h.bf16);
  }
}
// The element-wise loops (dropout) over half storage: Half16<false> float16, Half16<true> bfloat16,
// each travelling as its bits; a batch is loaded to float32 and stored back by the vectorized
// conversion loops (lowp_convert_loops.hpp: F16C where the CPU has it), the bits of rules/lowp.hpp.
template <bool BF16> struct Half16 {
  uint16_t bits;
};
template <class T> struct Compute {
  using type = T;
};
template <bool B> struct Compute<Half16<B>> {
  using type = float;
};
template <bool B> void load_n(const Half16<B>* h, float* o, int64_t n) {
  if (B) lowp::from_bf16_loop(reinterpret_cast<const uint16_t*>(h), o, n);
  else lowp::from_f16_loop(reinterpret_cast<const uint16_t*>(h), o, n);
}
template <bool B> void store_n(const float* x, Half16<B>* o, int64_t n) {
  if (B) lowp::to_bf16_loop(x, reinterpret_cast<uint16_t*>(o), n);
  else lowp::to_f16_loop(x, reinterpret_cast<uint16_t*>(o), n);
}

}  // namespace half
}  // namespace optkern
