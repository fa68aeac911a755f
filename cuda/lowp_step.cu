// optkern._cuda.lowp_step: the low-precision optimizer step of optkern._cpu.lowp_step
// (cpp/lowp_step.cpp) on CuPy arrays, with the same bits: the same argument checks and
// rule construction (optkern/lowp_step_args.hpp), the same element update
// (lowp::update_element, load/store, load_state/store_states of optkern/lowp_storage.hpp,
// whose semantics the CPU loop is pinned to) and the same 8-bit block encoding:
//
//   per element:  s = float(state)        fp32 / bf16, or code * block scale (lowp::dequantize)
//                 rule(w, float(g), s)     the fp32 rule of rules/optim.hpp; master and param stored
//   per 8-bit block of new values:  scale = block_scale(absmax, any < 0), code = quantize(s, scale)
//
// One launch per 256 tensors of a multi-tensor table (lowp::Tensor: void pointers, since
// params, states and scales differ in format). A block of threads owns a chunk of kChunk
// elements, a whole number of tiles of kTile = 4096 elements, and a tile a whole number of
// 8-bit blocks (<= 4096 values), so each 8-bit block is dequantized, updated, reduced and
// requantized by one block of threads. The block absmax is an integer max over the bits of
// |x| (lowp::abs_bits), so the warp shuffles and shared-memory atomics that reduce it give
// the CPU's result in any order.
//
// found_inf (optional, one float32 on the device; CUDA only): when nonzero the kernel returns
// before writing anything -- torch GradScaler's skipped step, decided on the device with no
// host synchronization. Work goes to CuPy's current stream, the GIL released; nothing is
// launched when the lists hold no element.
#include <cuda_runtime.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda_arrays.hpp"
#include "multi_tensor.cuh"
#include "optkern/lowp_step_args.hpp"

namespace optkern {
namespace {

using lowp::Fmt;

constexpr int kThreads = 256;
constexpr int kPer = 16;                              // elements per thread in a tile
constexpr int64_t kTile = int64_t(kThreads) * kPer;  // 4096
constexpr int64_t kChunk = 8 * kTile;                 // elements per block of threads
constexpr int kTileBlocks = int(kTile / lowp::kSmallestBlock);  // 8-bit blocks in a tile, at most
constexpr int kMaxTensors = 256;
constexpr int64_t kMaxChunks = int64_t(1) << 30;      // grid.x and int32 safe
static_assert(kTile % lowp::kLargestBlock == 0, "a tile must be a whole number of 8-bit blocks");
static_assert(lowp::kSmallestBlock % 32 == 0, "a warp's elements must lie in one 8-bit block");

// The launch's tensors and the prefix sum of their chunk counts (one block per chunk).
struct Table {
  lowp::Tensor t[kMaxTensors];
  int32_t first_chunk[kMaxTensors + 1];
  int32_t count;
};
static_assert(sizeof(Table) + 512 < 32764, "kernel parameters are limited to 32 KB");

// Element i with fp32 or bf16 states (or none): load, update, store.
template <Fmt PF, Fmt SF, class Rule>
__device__ __forceinline__ void update(const Rule& rule, const lowp::Tensor& t, int64_t i, const lowp::Config& c) {
  constexpr int K = Rule::kState;
  float s[K > 0 ? K : 1];
#pragma unroll
  for (int k = 0; k < K; ++k) s[k] = lowp::load_state<SF>(t, k, i);
  lowp::update_element<PF>(rule, t, i, c, s);
  lowp::store_states<SF, K>(t, i, s, c);
}

// One tile [lo, hi) with 8-bit states: every element dequantized and updated, its new
// state values kept per thread (element lo + j kThreads + thread); each 8-bit block's
// absmax and sign reduced over its new values (a warp's 32 elements lie in one block:
// shuffles, then one shared atomic per warp); then the codes and the scales written.
// (The j loop is not unrolled: the rule inlined 16 times per instantiation made the
// build much longer; v lives in thread-local memory, coalesced and cached.)
template <Fmt PF, class Rule>
__device__ void q8_tile(const Rule& rule, const lowp::Tensor& t, int64_t lo, int64_t hi, const lowp::Config& c,
                        int shift, uint32_t (*amax)[kTileBlocks], uint32_t (*neg)[kTileBlocks]) {
  constexpr int K = Rule::kState;
  for (int x = int(threadIdx.x); x < K * kTileBlocks; x += kThreads) {
    amax[x / kTileBlocks][x % kTileBlocks] = 0u;
    neg[x / kTileBlocks][x % kTileBlocks] = 0u;
  }
  __syncthreads();
  const bool leader = (threadIdx.x & 31u) == 0u;
  float v[kPer][K];
#pragma unroll 1
  for (int j = 0; j < kPer; ++j) {
    const int64_t i = lo + int64_t(j) * kThreads + threadIdx.x;
    const bool in = i < hi;
    float s[K];
#pragma unroll
    for (int k = 0; k < K; ++k) s[k] = 0.0f;
    if (in) {
#pragma unroll
      for (int k = 0; k < K; ++k) s[k] = lowp::dequantize(static_cast<const uint8_t*>(t.s[k])[i], t.scale[k][i >> shift]);
      lowp::update_element<PF>(rule, t, i, c, s);
    }
#pragma unroll
    for (int k = 0; k < K; ++k) {
      v[j][k] = s[k];
      uint32_t a = in ? lowp::abs_bits(s[k]) : 0u;
      uint32_t n = in && s[k] < 0.0f ? 1u : 0u;
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) {
        const uint32_t ao = __shfl_xor_sync(0xffffffffu, a, o);
        a = ao > a ? ao : a;
        n |= __shfl_xor_sync(0xffffffffu, n, o);
      }
      if (leader && in) {  // (the leader holds the warp's first element: in range if any is)
        const int b = int((i - lo) >> shift);
        atomicMax(&amax[k][b], a);
        atomicOr(&neg[k][b], n);
      }
    }
  }
  __syncthreads();
#pragma unroll 1
  for (int j = 0; j < kPer; ++j) {
    const int64_t i = lo + int64_t(j) * kThreads + threadIdx.x;
    if (i >= hi) break;
    const int b = int((i - lo) >> shift);
#pragma unroll
    for (int k = 0; k < K; ++k)
      static_cast<uint8_t*>(t.s[k])[i] = lowp::quantize(v[j][k], lowp::scale_of(amax[k][b], neg[k][b] != 0u));
  }
  const int nb = int((hi - lo + (int64_t(1) << shift) - 1) >> shift);
  for (int x = int(threadIdx.x); x < K * nb; x += kThreads) {
    const int k = x / nb, b = x % nb;
    t.scale[k][(lo >> shift) + b] = lowp::scale_of(amax[k][b], neg[k][b] != 0u);
  }
  __syncthreads();  // the next tile resets the accumulators
}

template <Fmt PF, Fmt SF, class Rule>
__global__ void __launch_bounds__(kThreads)
    lowp_kernel(const __grid_constant__ Table tab, const Rule rule, const lowp::Config config, const float* found_inf) {
  if (found_inf && *found_inf != 0.0f) return;  // a skipped step writes nothing
  lowp::Config c = config;
  if (c.grad_scale) c.grad_mul = rules::inv_scale(*c.grad_scale);  // GradScaler's scale, read on the device
  const int ci = int(blockIdx.x);
  const int ti = mt::find_tensor(tab, ci);
  const lowp::Tensor& t = tab.t[ti];
  const int64_t lo = int64_t(ci - tab.first_chunk[ti]) * kChunk;
  const int64_t hi = t.n < lo + kChunk ? t.n : lo + kChunk;
  if constexpr (SF == Fmt::q8 && Rule::kState > 0) {
    __shared__ uint32_t amax[Rule::kState][kTileBlocks], neg[Rule::kState][kTileBlocks];
    const int shift = __ffsll(static_cast<long long>(c.block)) - 1;  // block: a power of two
    for (int64_t a = lo; a < hi; a += kTile) q8_tile<PF>(rule, t, a, a + kTile < hi ? a + kTile : hi, c, shift, amax, neg);
  } else {
    for (int64_t i = lo + threadIdx.x; i < hi; i += kThreads) update<PF, SF>(rule, t, i, c);
  }
}

// One launch per table of up to kMaxTensors non-empty tensors.
template <Fmt PF, Fmt SF, class Rule>
void launch(const Rule& rule, const std::vector<lowp::Tensor>& ts, const lowp::Config& c, const float* found_inf,
            cudaStream_t s) {
  Table tab{};
  const auto flush = [&] {
    if (tab.count == 0) return;
    lowp_kernel<PF, SF, Rule><<<unsigned(tab.first_chunk[tab.count]), kThreads, 0, s>>>(tab, rule, c, found_inf);
    check_launch("optkern._cuda lowp_step");
    tab.count = 0;
  };
  for (const lowp::Tensor& t : ts) {
    if (t.n == 0) continue;
    const int64_t chunks = (t.n + kChunk - 1) / kChunk;
    if (chunks > kMaxChunks) throw std::runtime_error("optkern._cuda: array too large for one launch");
    if (tab.first_chunk[tab.count] + chunks > kMaxChunks) flush();
    tab.t[tab.count] = t;
    tab.first_chunk[tab.count + 1] = tab.first_chunk[tab.count] + int32_t(chunks);
    if (++tab.count == kMaxTensors) flush();
  }
  flush();
}

py::object lowp_step(const std::string& rule, const std::vector<double>& x, const std::vector<bool>& flags,
               py::handle params, py::handle grads, py::handle masters, py::handle states, py::handle scales,
               const std::string& param_fmt, const std::string& state_fmt, bool stochastic, uint64_t seed,
               uint64_t step, int64_t block, py::handle grad_scale, py::handle bases, py::handle found_inf) {
  lowp::StepCall<DeviceArrays> c;
  lowp::gather_step(c, params, grads, masters, states, scales, param_fmt, state_fmt, stochastic, seed, step, block,
                    grad_scale, bases, found_inf);
  const double mu = lowp::with_rule(rule, x, flags, step, c.n_states, [&](const auto& r) {
    if (c.elements() == 0) return;  // nothing to launch: empty calls need neither CuPy nor a device
    require_current_device(c.args.device, "params");
    const cudaStream_t s = current_stream();
    py::gil_scoped_release nogil;
    lowp::with_formats(c.pf, c.sf, [&](auto pf, auto sf) {
      launch<decltype(pf)::value, decltype(sf)::value>(r, c.ts, c.cfg, c.found_inf, s);
    });
  });
  return lowp::step_result(mu);
}

}  // namespace

void register_lowp_step(py::module_& m) {
  static const std::string doc = std::string(sig::kLowpStepDoc) +
                                 " found_inf (CUDA only): None, or a 1-element float32 device array; when it holds a "
                                 "nonzero value the step writes nothing (GradScaler's skipped step, without a host "
                                 "sync).";
  sig::lowp_step(m, &lowp_step, doc.c_str(), py::arg("found_inf") = py::none());
}

}  // namespace optkern
