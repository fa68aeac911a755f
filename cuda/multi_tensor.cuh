// Multi-tensor apply: one launch runs an element-wise op over many arrays.
//
// The host cuts every non-empty array into chunks of kChunk elements and
// fills a table passed by value with the launch (pointers of each list, sizes,
// and the prefix sum of chunk counts); one block handles one chunk and finds
// its array by binary search in the prefix sums. A table holds up to
// kMaxTensors arrays and any number of chunks, so a flat array costs one
// launch and 1000 arrays cost four. Chunks start at multiples of kChunk, so
// a chunk is 16-byte aligned exactly when its arrays' base pointers are: then
// it moves 16-byte packs (float4 / double2), otherwise and for the tail it
// moves scalars.
//
// An op ("source") passed to apply_kernel has
//     static constexpr int kDepth;        // lists it reads: p, g, states...
//     static constexpr unsigned kWritten; // bit k set: list k is stored back
//     __device__ Op load() const;         // per-block: read device scalars
// and the loaded op has `__device__ void operator()(T* v) const` updating one
// element's values v[0..kDepth) in place. RuleOp adapts a rule of
// rules/optim.hpp (DeviceRuleOp: built on the device, capturable mode);
// reductions (reduce_kernel) take ops returning a double.
#pragma once
#include <cuda_runtime.h>

#include <array>
#include <cstdint>
#include <stdexcept>

#include "cuda_arrays.hpp"
#include "optkern/rules/optim.hpp"
#include "optkern/rules/step_inputs.hpp"

namespace optkern {
namespace mt {

constexpr int kBlock = 256;             // threads per block
constexpr int64_t kChunk = 32768;       // elements per block: 32 packs of float4 per thread
constexpr int kMaxTensors = 256;        // arrays per launch; 5 lists -> 13 KB of parameters
constexpr int64_t kMaxChunks = int64_t(1) << 30;  // chunks per launch (grid.x and int32 safe)

template <class T> struct alignas(16) Pack {
  static constexpr int N = int(16 / sizeof(T));
  T v[N];
};

// The launch's arrays. Kernel parameters up to 32 KB need CUDA 12.1+ and
// Volta or newer; this module requires both (CUDA 13, Turing+).
template <class T, int D> struct Table {
  T* ptr[D][kMaxTensors];
  int64_t size[kMaxTensors];
  int32_t first_chunk[kMaxTensors + 1];  // first_chunk[t]: first chunk of array t
  int32_t count;                          // arrays in this launch
};

// The array holding chunk c: the last t with first_chunk[t] <= c (of any launch table with
// `first_chunk` and `count`: Table here, cuda/lowp_step.cu's table of mixed-format tensors).
template <class Tab> __device__ __forceinline__ int find_tensor(const Tab& tab, int c) {
  int lo = 0, hi = tab.count - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (tab.first_chunk[mid] <= c) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

// f(v) for every element of this block's chunk, v[k] being list k's value;
// lists whose bit is set in Written are stored back.
template <class T, int D, unsigned Written, class F>
__device__ __forceinline__ void visit_chunk(const Table<T, D>& tab, F&& f) {
  const int c = int(blockIdx.x);
  const int t = find_tensor(tab, c);
  const int64_t start = int64_t(c - tab.first_chunk[t]) * kChunk;
  const int64_t left = tab.size[t] - start;
  const int n = int(left < kChunk ? left : kChunk);
  T* ptr[D];
  uintptr_t bits = 0;
#pragma unroll
  for (int k = 0; k < D; ++k) {
    ptr[k] = tab.ptr[k][t] + start;
    bits |= reinterpret_cast<uintptr_t>(ptr[k]);
  }
  int done = 0;
  if (bits % 16 == 0) {
    constexpr int N = Pack<T>::N;
    const int packs = n / N;
    for (int i = int(threadIdx.x); i < packs; i += kBlock) {
      Pack<T> pk[D];
#pragma unroll
      for (int k = 0; k < D; ++k) pk[k] = reinterpret_cast<const Pack<T>*>(ptr[k])[i];
#pragma unroll
      for (int j = 0; j < N; ++j) {
        T v[D];
#pragma unroll
        for (int k = 0; k < D; ++k) v[k] = pk[k].v[j];
        f(v);
#pragma unroll
        for (int k = 0; k < D; ++k)
          if (Written >> k & 1u) pk[k].v[j] = v[k];
      }
#pragma unroll
      for (int k = 0; k < D; ++k)
        if (Written >> k & 1u) reinterpret_cast<Pack<T>*>(ptr[k])[i] = pk[k];
    }
    done = packs * N;
  }
  for (int i = done + int(threadIdx.x); i < n; i += kBlock) {
    T v[D];
#pragma unroll
    for (int k = 0; k < D; ++k) v[k] = ptr[k][i];
    f(v);
#pragma unroll
    for (int k = 0; k < D; ++k)
      if (Written >> k & 1u) ptr[k][i] = v[k];
  }
}

// The one element-wise kernel: every optimizer rule and gradient transform.
template <class T, class Src>
__global__ void __launch_bounds__(kBlock)
    apply_kernel(const __grid_constant__ Table<T, Src::kDepth> tab, const Src src) {
  const auto op = src.load();
  visit_chunk<T, Src::kDepth, Src::kWritten>(tab, [&](T* v) { op(v); });
}

// ---- deterministic reductions ----------------------------------------------
// Stage 1: one partial per chunk (fixed per-thread order, fixed tree);
// stage 2: one block adds the partials in index order. Same bits every run.
// Contributions are >= 0 (|x|^p, flags), so 0 is the identity of max too.

template <bool Max> __device__ __forceinline__ double combine(double a, double b) {
  if constexpr (Max) return (b > a || b != b) ? b : a;  // NaN wins
  else return a + b;
}

// The block's total, valid in thread 0.
template <bool Max> __device__ __forceinline__ double block_reduce(double v) {
  __shared__ double warp_total[kBlock / 32];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = combine<Max>(v, __shfl_down_sync(0xffffffffu, v, o));
  const int lane = int(threadIdx.x) & 31, warp = int(threadIdx.x) >> 5;
  if (lane == 0) warp_total[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < kBlock / 32 ? warp_total[lane] : 0.0;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = combine<Max>(v, __shfl_down_sync(0xffffffffu, v, o));
  }
  return v;
}

// An Op may say `__device__ bool skip() const`, read from device memory: then every block writes the
// identity 0 and returns before loading anything (a pass only some calls need, decided on the device
// by an earlier one, with no host round trip: SAM's rescaled norm, cuda/sam.cu).
template <class Op> __device__ __forceinline__ auto op_skips(const Op& op, int) -> decltype(op.skip()) {
  return op.skip();
}
template <class Op> __device__ __forceinline__ bool op_skips(const Op&, long) { return false; }

// Op: kDepth, kMax and `__device__ double operator()(const T* v) const` (optionally skip(), above).
template <class T, class Op>
__global__ void __launch_bounds__(kBlock)
    reduce_kernel(const __grid_constant__ Table<T, Op::kDepth> tab, const Op op, double* __restrict__ partials) {
  if (op_skips(op, 0)) {  // (uniform over the grid: no thread reaches block_reduce's barrier)
    if (threadIdx.x == 0) partials[blockIdx.x] = 0.0;
    return;
  }
  double acc = 0.0;
  visit_chunk<T, Op::kDepth, 0u>(tab, [&](T* v) { acc = combine<Op::kMax>(acc, op(v)); });
  acc = block_reduce<Op::kMax>(acc);
  if (threadIdx.x == 0) partials[blockIdx.x] = acc;
}

// Fin: kMax and `__device__ void operator()(double total) const`.
template <class Fin>
__global__ void __launch_bounds__(kBlock) finish_kernel(const double* __restrict__ partials, int64_t n, const Fin fin) {
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += kBlock) acc = combine<Fin::kMax>(acc, partials[i]);
  acc = block_reduce<Fin::kMax>(acc);
  if (threadIdx.x == 0) fin(acc);
}

// ---- host side ---------------------------------------------------------------

template <int D> using Lists = std::array<const DeviceList*, D>;

inline int64_t chunks_of(int64_t n) { return (n + kChunk - 1) / kChunk; }

inline int64_t total_chunks(const DeviceList& l) {
  int64_t c = 0;
  for (int64_t n : l.size) c += chunks_of(n);
  return c;
}

// launch(table, chunks, first_chunk_overall) for each full table, in order.
// All lists have the sizes of lists[0]; empty arrays are skipped.
template <class T, int D, class Launch> void for_each_table(const Lists<D>& lists, Launch&& launch) {
  Table<T, D> tab{};
  int64_t launched = 0;
  const auto flush = [&] {
    if (tab.count == 0) return;
    const int32_t chunks = tab.first_chunk[tab.count];
    launch(tab, chunks, launched);
    launched += chunks;
    tab.count = 0;
  };
  const DeviceList& first = *lists[0];
  for (size_t i = 0; i < first.count(); ++i) {
    const int64_t n = first.size[i];
    if (n == 0) continue;
    const int64_t chunks = chunks_of(n);
    if (chunks > kMaxChunks) throw std::runtime_error("optkern._cuda: array too large for one launch");
    if (tab.first_chunk[tab.count] + chunks > kMaxChunks) flush();
    const int t = tab.count;
    for (int k = 0; k < D; ++k) tab.ptr[k][t] = lists[size_t(k)]->template ptr<T>(i);
    tab.size[t] = n;
    tab.first_chunk[t + 1] = tab.first_chunk[t] + int32_t(chunks);
    tab.count = t + 1;
    if (tab.count == kMaxTensors) flush();
  }
  flush();
}

template <class T, class Src> void launch_apply(const Src& src, const Lists<Src::kDepth>& lists, cudaStream_t s) {
  for_each_table<T, Src::kDepth>(lists, [&](const Table<T, Src::kDepth>& tab, int32_t chunks, int64_t) {
    apply_kernel<T, Src><<<unsigned(chunks), kBlock, 0, s>>>(tab, src);
    check_launch("optkern._cuda multi-tensor apply");
  });
}

// Stage 1 alone: one partial per chunk into partials[0, total_chunks) (a distributed norm
// gathers every rank's: the one process's partials are the ranks' concatenated, cuda/reduce.cu).
template <class T, class Op>
void launch_partials(const Op& op, const Lists<Op::kDepth>& lists, double* partials, cudaStream_t s) {
  for_each_table<T, Op::kDepth>(lists, [&](const Table<T, Op::kDepth>& tab, int32_t chunks, int64_t first) {
    reduce_kernel<T, Op><<<unsigned(chunks), kBlock, 0, s>>>(tab, op, partials + first);
    check_launch("optkern._cuda reduction");
  });
}

// Stage 2 alone: fin(the n partials combined in finish_kernel's fixed tree).
template <class Fin> void launch_finish(const double* partials, int64_t n, const Fin& fin, cudaStream_t s) {
  finish_kernel<Fin><<<1, kBlock, 0, s>>>(partials, n, fin);
  check_launch("optkern._cuda reduction");
}

// Two-stage reduction of op over the lists; fin(total) runs on the device.
template <class T, class Op, class Fin>
void launch_reduce(const Op& op, const Lists<Op::kDepth>& lists, const Fin& fin, int device, cudaStream_t s) {
  const int64_t n = total_chunks(*lists[0]);
  const ScratchBuffer scratch(size_t(n) * sizeof(double), s, device);
  double* partials = scratch.as<double>();
  launch_partials<T>(op, lists, partials, s);
  launch_finish(partials, n, fin, s);
}

// ---- adapters ------------------------------------------------------------------

// A rule of rules/optim.hpp: lists p, g, then Rule::kState states; all but g
// are written.
template <class Rule, class T> struct RuleOp {
  static constexpr int kDepth = 2 + Rule::kState;
  static constexpr unsigned kWritten = ((1u << kDepth) - 1u) & ~2u;
  Rule rule;
  bool skip = false;  // GradScaler's found_inf: every value stored back as it was loaded
  __device__ RuleOp load() const { return *this; }
  __device__ void operator()(T* v) const {
    if (!skip) rule(v[0], v[1], v + 2);
  }
};

// Capturable mode: the rule built on the device when each block starts, by
// the host's Rule::at from the step counters and lr in device memory
// (counters[0] = steps taken, counters[1] = NAdam's mu_product; null lr: the
// host's). finish_counters advances them after every block has read them. A nonzero
// *found_inf (GradScaler) skips the update and leaves the counters; so do counters or
// an lr the host would refuse (rules/step_inputs.hpp: the CPU's checks, which raise,
// and these give one verdict). No host reads them (graph capture): the refusal is
// not reported, but nothing is written (counters = [NaN] or lr = NaN wrote NaN into
// every param, as torch's capturable steps do).
template <class Rule> struct DeviceStep {
  typename Rule::Hyper hyper;
  rules::Counters host;     // used when counters is null
  double* counters;         // n_counters doubles, or null
  int n_counters;
  const double* lr;         // or null
  const float* found_inf;   // or null
  rules::BufferChecks checks;  // what counters and lr must be (sig::buffer_checks)
  __device__ bool refused() const {
    return (lr && !rules::lr_buffer_ok(lr[0], checks)) || (counters && !rules::counters_ok(counters, checks, hyper));
  }
  __device__ bool skipped() const { return (found_inf && *found_inf != 0.0f) || refused(); }
  __device__ rules::Counters counters_at() const {
    if (!counters) return host;
    return {counters[0] + 1.0, n_counters > 1 ? counters[1] : 1.0};
  }
  __device__ Rule rule() const {
    typename Rule::Hyper h = hyper;
    if (lr) h.lr = lr[0];
    return Rule::at(h, counters_at());
  }
};

template <class Rule, class T> struct DeviceRuleOp {
  static constexpr int kDepth = RuleOp<Rule, T>::kDepth;
  static constexpr unsigned kWritten = RuleOp<Rule, T>::kWritten;
  DeviceStep<Rule> step;
  __device__ RuleOp<Rule, T> load() const { return {step.rule(), step.skipped()}; }
};

template <class Rule> __global__ void finish_counters(const DeviceStep<Rule> step) {
  if (step.skipped()) return;
  const rules::Counters next = rules::advance(step.rule(), step.counters_at());
  step.counters[0] = next.t;
  if (step.n_counters > 1) step.counters[1] = next.mu_product;
}

// A state-free transform g <- f(g) of one list (rules::Scale, rules::ClampValue).
template <class F, class T> struct MapOp {
  static constexpr int kDepth = 1;
  static constexpr unsigned kWritten = 1u;
  F f;
  __device__ MapOp load() const { return *this; }
  __device__ void operator()(T* v) const { v[0] = f(v[0]); }
};

}  // namespace mt
}  // namespace optkern
