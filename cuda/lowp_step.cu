// optkern._cuda.lowp_step: the low-precision optimizer step of optkern._cpu.lowp_step
// (cpp/lowp_step.cpp) on CuPy arrays, with the same bits: the same argument checks and
// rule construction (optkern/lowp_step_args.hpp), the same element update
// (lowp::load_weight / load_raw / widen, apply_element, store_states of optkern/lowp_storage.hpp,
// whose semantics the CPU loop is pinned to) and the same 8-bit block encoding:
//
//   per element:  s = float(state)        fp32 / bf16, or code * block scale (lowp::dequantize)
//                 rule(w, float(g), s)     the fp32 rule of rules/optim.hpp; master and param stored
//   per 8-bit block of new values:  scale = block_scale(absmax, any < 0), code = quantize(s, scale)
//
// One launch per 256 tensors of a multi-tensor table (lowp::Tensor: void pointers, since
// params, states and scales differ in format). Each thread updates its elements in batches of
// kBatch, the batch's loads all issued before its first store (a thread with one element's loads
// in flight at a time left the 8-bit step latency-bound: 17-20 % of the copy probe on an H200).
//
// fp32 / bf16 states: a block of threads owns a chunk of kChunk elements. 8-bit states: a block
// owns a chunk of whole tiles of max(block, kStride) elements, each tile a whole number of 8-bit
// blocks, taken one at a time: every element of the tile is updated, its new state values kept
// in shared memory; then each warp takes whole 8-bit blocks,
// reduces their absmax and sign, and writes their scale and codes (rules/lowp.hpp's quantize: the
// block's reciprocal once, a product and an FMA per value, as the CPU's loops). The absmax is an integer max over the bits of |x| (lowp::abs_bits),
// so the reduction gives the CPU's result in any order.
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
#include "optkern/rules/lowp.hpp"
#include "optkern/scalar_checks.hpp"

namespace optkern {
namespace {

using lowp::Fmt;

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kBatch = 4;                               // elements per thread with loads in flight together
constexpr int64_t kStride = int64_t(kThreads) * kBatch;  // 1024 elements per batch of a block
constexpr int64_t kChunk = 32 * kStride;                 // fp32 / bf16 states: elements per block
constexpr int kMaxTensors = 256;
constexpr int64_t kMaxChunks = int64_t(1) << 30;        // grid.x and int32 safe
static_assert(lowp::kSmallestBlock % 32 == 0, "a warp's lanes must cover an 8-bit block evenly");
// 8-bit tiles keep K float32 values per element in shared memory: K <= 3 and the largest tile
// (one 4096 block) take 48 KB, which with the static tables passes the 48 KB a launch gets
// without cudaFuncSetAttribute's opt-in (made by launch); 64 KB leaves an H200's SM (228 KB)
// three blocks of the largest tile.
static_assert(3 * lowp::kLargestBlock * sizeof(float) <= 64 * 1024, "8-bit tile values exceed 64 KB");

// Elements of a chunk (fp32 / bf16 states), or of a tile (8-bit states: the values in shared memory).
__host__ __device__ inline int64_t span_of(bool q8, int64_t block) { return q8 ? (block > kStride ? block : kStride) : kChunk; }
// Elements per block of threads: 8-bit states take whole tiles, at least kQ8Chunk elements (each
// block sets up its tables once: 0.90 -> 0.89 ms at 64M on an H200, within noise; kept for the
// four times smaller grid).
constexpr int64_t kQ8Chunk = 4 * kStride;
__host__ __device__ inline int64_t chunk_of(bool q8, int64_t block) {
  const int64_t tile = span_of(q8, block);
  return q8 && tile < kQ8Chunk ? kQ8Chunk : tile;  // (tiles and kQ8Chunk: powers of two)
}

// The launch's tensors and the prefix sum of their chunk counts (one block per chunk).
struct Table {
  lowp::Tensor t[kMaxTensors];
  int32_t first_chunk[kMaxTensors + 1];
  int32_t count;
};
static_assert(sizeof(Table) + 512 < 32764, "kernel parameters are limited to 32 KB");

// State k of element i as stored: fp32 / bf16 (as Raw), or an 8-bit code with its block's scale.
template <Fmt SF> struct StateRaw {
  lowp::Raw<SF> v;
  float scale;  // 8-bit only
};
template <Fmt SF>
__device__ __forceinline__ StateRaw<SF> state_raw(const lowp::Tensor& t, int k, int64_t i, int shift) {
  if constexpr (SF == Fmt::q8) return {lowp::load_raw<SF>(t.s[k], i), t.scale[k][i >> shift]};
  else return {lowp::load_raw<SF>(t.s[k], i), 0.0f};
}
// The two 8-bit maps' values, dyn_decode(c, false) in u[c] and dyn_decode(c, true) in s[c], filled
// once per block of threads: a shared-memory lookup in place of each code's decode (a chain of
// selects and conversions; with four codes stored per lane, ncu on an H200 counted 226 M -> 180 M
// instructions for a 16M step, 1.32 -> 0.90 ms at 64M).
struct DecodeTable {
  float u[256], s[256];
};
__device__ __forceinline__ void fill_decode_table(DecodeTable& d) {
  for (int c = int(threadIdx.x); c < 256; c += kThreads) {
    d.u[c] = lowp::dyn_decode(uint8_t(c), false);
    d.s[c] = lowp::dyn_decode(uint8_t(c), true);
  }
}
template <Fmt SF> __device__ __forceinline__ float state_value(StateRaw<SF> r, const DecodeTable* d) {
  if constexpr (SF == Fmt::q8)
    return lowp::dequantize_by(r.v, r.scale, [d](uint8_t c, bool is_signed) { return is_signed ? d->s[c] : d->u[c]; });
  else return lowp::widen<SF>(r.v);
}

// One batch: elements a + u kThreads + thread (u < kBatch) below hi updated. Their new states are
// stored (fp32 / bf16) or, with 8-bit states, kept in vals[k * span + (i - lo)] for quantize_tile.
// Every load of the batch is issued, as stored, before the first value is widened: a conversion
// (or a decode) right after its load would wait for it before the next element's loads.
template <Fmt PF, Fmt SF, class Rule>
__device__ __forceinline__ void update_batch(const Rule& rule, const lowp::Tensor& t, int64_t a, int64_t hi,
                                             const lowp::Config& c, int shift, float* vals, int64_t lo,
                                             int64_t span, const DecodeTable* dec) {
  constexpr int K = Rule::kState;
  constexpr int KS = K > 0 ? K : 1;
  float w[kBatch];
  lowp::Raw<PF> g[kBatch];
  StateRaw<SF> r[kBatch][KS];
#pragma unroll
  for (int u = 0; u < kBatch; ++u) {
    const int64_t i = a + int64_t(u) * kThreads + threadIdx.x;
    const bool in = i < hi;
    const int64_t ii = in ? i : lo;  // (a valid index: the loads need no branch; unused when out)
    w[u] = lowp::load_weight<PF>(t, ii);
    g[u] = lowp::load_raw<PF>(t.g, ii);
#pragma unroll
    for (int k = 0; k < K; ++k) r[u][k] = state_raw<SF>(t, k, ii, shift);
  }
#pragma unroll
  for (int u = 0; u < kBatch; ++u) {
    const int64_t i = a + int64_t(u) * kThreads + threadIdx.x;
    if (i >= hi) continue;
    float s[KS];
#pragma unroll
    for (int k = 0; k < K; ++k) s[k] = state_value<SF>(r[u][k], dec);
    lowp::apply_element<PF>(rule, t, i, c, w[u], lowp::grad_of<PF>(g[u], c), s);
    if constexpr (SF == Fmt::q8) {
#pragma unroll
      for (int k = 0; k < K; ++k) vals[int64_t(k) * span + (i - lo)] = s[k];
    } else {
      lowp::store_states<SF, K>(t, i, s, c);
    }
  }
}

// Codes of the n values v[0, n) into codes[0, n) by the lanes of a warp, `encode` per value:
// four consecutive values per lane read as one float4 and stored as one 32-bit word where codes is
// 4-byte aligned (v, in shared memory, is 16-byte aligned: tiles and blocks are multiples of 64),
// the rest one byte per lane.
template <class Encode>
__device__ __forceinline__ void encode_block(const float* v, int n, uint8_t* codes, int lane, const Encode& encode) {
  const int n4 = (reinterpret_cast<uintptr_t>(codes) & 3u) == 0u ? n & ~3 : 0;
  for (int e = 4 * lane; e < n4; e += 128) {
    const float4 q = *reinterpret_cast<const float4*>(v + e);
    *reinterpret_cast<uint32_t*>(codes + e) = uint32_t(encode(q.x)) | uint32_t(encode(q.y)) << 8 |
                                              uint32_t(encode(q.z)) << 16 | uint32_t(encode(q.w)) << 24;
  }
  for (int e = n4 + lane; e < n; e += 32) codes[e] = encode(v[e]);
}

// The 8-bit blocks of the tile [lo, hi) whose new values are in vals: warp by warp, one (state,
// block) at a time, the block's absmax bits and sign reduced over its values (lanes, then
// shuffles), its scale written by lane 0 and its codes by all lanes (consecutive bytes), encoded
// by rules/lowp.hpp's quantize_by with the block's reciprocal, whose tables m7, m8 live in shared
// memory.
template <int K>
__device__ void quantize_tile(const lowp::Tensor& t, int64_t lo, int64_t hi, int shift, const float* vals,
                              int64_t span, const lowp::MapTables<7>& m7, const lowp::MapTables<8>& m8) {
  const int lane = int(threadIdx.x & 31u), warp = int(threadIdx.x >> 5);
  const int block = 1 << shift;
  const int nb = int((hi - lo + block - 1) >> shift);
  for (int x = warp; x < K * nb; x += kWarps) {
    const int k = x / nb, b = x % nb;
    const int first = b << shift;  // the block's offset in the tile
    const int n = hi - lo - first < block ? int(hi - lo - first) : block;
    const float* v = vals + int64_t(k) * span + first;
    uint32_t amax = 0u, neg = 0u;
    const auto see = [&](float x) {
      amax = max(amax, lowp::abs_bits(x));
      neg |= lowp::block_flags(x);
    };
    for (int e = 4 * lane; e < (n & ~3); e += 128) {
      const float4 q = *reinterpret_cast<const float4*>(v + e);
      see(q.x), see(q.y), see(q.z), see(q.w);
    }
    for (int e = (n & ~3) + lane; e < n; e += 32) see(v[e]);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      amax = max(amax, __shfl_xor_sync(0xffffffffu, amax, o));
      neg |= __shfl_xor_sync(0xffffffffu, neg, o);
    }
    const float scale = lowp::scale_of(amax, neg);
    if (lane == 0) t.scale[k][((lo + first) >> shift)] = scale;
    uint8_t* codes = static_cast<uint8_t*>(t.s[k]) + lo + first;
    const lowp::BlockRecip rb = lowp::block_recip(scale);  // (RN(1 / s): the CPU's)
    encode_block(v, n, codes, lane, [&](float x) { return lowp::quantize_by(x, scale, rb, m7, m8); });
  }
}

template <Fmt PF, Fmt SF, class Rule>
__global__ void __launch_bounds__(kThreads)
    lowp_kernel(const __grid_constant__ Table tab, const Rule rule, const lowp::Config config, const float* found_inf) {
  if (found_inf && *found_inf != 0.0f) return;  // a skipped step writes nothing
  lowp::Config c = config;
  if (c.grad_scale) c.grad_mul = rules::inv_scale(*c.grad_scale);  // GradScaler's scale, read on the device
  constexpr bool kQ8 = SF == Fmt::q8 && Rule::kState > 0;
  const int64_t span = span_of(kQ8, c.block), chunk = chunk_of(kQ8, c.block);
  const int ci = int(blockIdx.x);
  const int ti = mt::find_tensor(tab, ci);
  const lowp::Tensor& t = tab.t[ti];
  const int64_t lo = int64_t(ci - tab.first_chunk[ti]) * chunk;
  const int64_t hi = t.n < lo + chunk ? t.n : lo + chunk;
  const int shift = __ffsll(static_cast<long long>(c.block)) - 1;  // block: a power of two
  // 8-bit states: [K][span]; read as float4 (quantize_tile, encode_block), so declared as float4s:
  // 16-byte aligned by its type, not by the static tables' sizes happening to be multiples of 16
  extern __shared__ float4 vals_packs[];
  float* const vals = reinterpret_cast<float*>(vals_packs);
  if constexpr (kQ8) {
    __shared__ DecodeTable table;
    __shared__ lowp::MapTables<7> m7;
    __shared__ lowp::MapTables<8> m8;
    fill_decode_table(table);
    if (threadIdx.x == 0) {  // (constants, evaluated by the compiler as the CPU's kMap)
      constexpr lowp::MapTables<7> c7 = lowp::make_map<7>();
      constexpr lowp::MapTables<8> c8 = lowp::make_map<8>();
      m7 = c7;
      m8 = c8;
    }
    __syncthreads();
    for (int64_t tlo = lo; tlo < hi; tlo += span) {  // the chunk's tiles, one at a time through vals
      const int64_t thi = hi < tlo + span ? hi : tlo + span;
      for (int64_t a = tlo; a < thi; a += kStride)
        update_batch<PF, SF>(rule, t, a, thi, c, shift, vals, tlo, span, &table);
      __syncthreads();
      quantize_tile<Rule::kState>(t, tlo, thi, shift, vals, span, m7, m8);
      __syncthreads();  // (the next tile's values overwrite vals)
    }
  } else {
    for (int64_t a = lo; a < hi; a += kStride) update_batch<PF, SF>(rule, t, a, hi, c, shift, vals, lo, span, nullptr);
  }
}

// One launch per table of up to kMaxTensors non-empty tensors.
template <Fmt PF, Fmt SF, class Rule>
void launch(const Rule& rule, const std::vector<lowp::Tensor>& ts, const lowp::Config& c, const float* found_inf,
            cudaStream_t s) {
  constexpr bool q8 = SF == Fmt::q8 && Rule::kState > 0;
  const int64_t span = span_of(q8, c.block), chunk = chunk_of(q8, c.block);
  const size_t shared = q8 ? size_t(Rule::kState) * size_t(span) * sizeof(float) : 0;
  if (q8) {  // (every launch: the attribute is set per device)
    check_cuda(cudaFuncSetAttribute(lowp_kernel<PF, SF, Rule>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(shared)),
               "optkern._cuda lowp_step (shared memory opt-in)");
  }
  Table tab{};
  const auto flush = [&] {
    if (tab.count == 0) return;
    lowp_kernel<PF, SF, Rule><<<unsigned(tab.first_chunk[tab.count]), kThreads, shared, s>>>(tab, rule, c, found_inf);
    check_launch("optkern._cuda lowp_step");
    tab.count = 0;
  };
  for (const lowp::Tensor& t : ts) {
    if (t.n == 0) continue;
    const int64_t chunks = (t.n + chunk - 1) / chunk;
    if (chunks > kMaxChunks) throw std::runtime_error("optkern._cuda: array too large for one launch");
    if (tab.first_chunk[tab.count] + chunks > kMaxChunks) flush();
    tab.t[tab.count] = t;
    tab.first_chunk[tab.count + 1] = tab.first_chunk[tab.count] + int32_t(chunks);
    if (++tab.count == kMaxTensors) flush();
  }
  flush();
}

py::object lowp_step(const std::string& rule, const std::vector<checks::Real>& x, const std::vector<checks::Flag>& flags,
               py::handle params, py::handle grads, py::handle masters, py::handle states, py::handle scales,
               const std::string& param_fmt, const std::string& state_fmt, checks::Flag stochastic_arg, uint64_t seed,
               uint64_t step, int64_t block, py::handle grad_scale, py::handle bases, py::handle found_inf) {
  const bool stochastic = checks::flag(stochastic_arg, "stochastic");
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
