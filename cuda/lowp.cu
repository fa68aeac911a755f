// optkern._cuda.lowp_*: the format conversions and blockwise 8-bit quantization of
// optkern._cpu (cpp/lowp.cpp) on CuPy arrays, with the same bits: the same functions of
// rules/lowp.hpp per element, the same argument checks (optkern/lowp_convert_args.hpp), the
// same Philox words for stochastic rounding (element i: word offset + i of stream `stream`).
//
// A block's 8-bit scale is block_scale(absmax, any < 0) over its values, as the CPU's: the
// absmax as an integer max over the bits of |x| (lowp::abs_bits; NaN and inf count as 0), which the
// threads of a block reduce in any order to the same value. Work goes to CuPy's current
// stream with the GIL released; nothing is launched for empty arrays.
//
// SWALP's quantizers (lowp_quantize_fixed_point / _block_fp) use rules/lowp.hpp's grid functions
// per element with the same words; a block's exponent comes from its largest finite |x| as the
// bits of |x| (an integer max, any order), reduced by a first kernel into stream-ordered scratch
// memory and read by the second: no host synchronization.
#include <cuda_runtime.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "cuda_arrays.hpp"
#include "optkern/lowp_convert_args.hpp"
#include "optkern/lowp_storage.hpp"
#include "optkern/philox.hpp"
#include "optkern/rules/lowp.hpp"
#include "optkern/scalar_checks.hpp"

namespace optkern {
namespace {

using lowp::Half;

constexpr int kThreads = 256;

inline unsigned grid_for(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return unsigned(blocks < 65536 ? blocks : 65536);  // grid-stride beyond
}

template <Half K, bool SR>
__global__ void __launch_bounds__(kThreads) to_half_kernel(const float* __restrict__ x, uint16_t* __restrict__ o,
                                                           int64_t n, uint64_t seed, uint64_t stream,
                                                           uint64_t offset) {
  for (int64_t i = blockIdx.x * int64_t(kThreads) + threadIdx.x; i < n; i += int64_t(gridDim.x) * kThreads) {
    if constexpr (SR) {
      const uint32_t rnd = philox::word(offset + uint64_t(i), seed, stream);
      o[i] = K == Half::bf16 ? lowp::f32_to_bf16_sr(x[i], rnd) : lowp::f32_to_f16_sr(x[i], rnd);
    } else {
      o[i] = K == Half::bf16 ? lowp::f32_to_bf16(x[i]) : lowp::f32_to_f16(x[i]);
    }
  }
}

template <Half K>
__global__ void __launch_bounds__(kThreads) from_half_kernel(const uint16_t* __restrict__ x, float* __restrict__ o,
                                                             int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(kThreads) + threadIdx.x; i < n; i += int64_t(gridDim.x) * kThreads)
    o[i] = K == Half::bf16 ? lowp::bf16_to_f32(x[i]) : lowp::f16_to_f32(x[i]);
}

// One block of threads per 8-bit block: its absmax and sign reduced, then its codes.
__global__ void __launch_bounds__(kThreads) quantize_kernel(const float* __restrict__ x, uint8_t* __restrict__ c,
                                                            float* __restrict__ scales, int64_t n, int64_t block) {
  __shared__ uint32_t amax, neg;
  const int64_t lo = int64_t(blockIdx.x) * block, hi = lo + block < n ? lo + block : n;
  if (threadIdx.x == 0) amax = neg = 0u;
  __syncthreads();
  uint32_t a = 0u, ng = 0u;
  for (int64_t i = lo + threadIdx.x; i < hi; i += kThreads) {
    const uint32_t b = lowp::abs_bits(x[i]);
    a = b > a ? b : a;
    ng |= lowp::block_flags(x[i]);
  }
  atomicMax(&amax, a);  // (integer max and or: the same in any order)
  atomicOr(&neg, ng);
  __syncthreads();
  const float scale = lowp::scale_of(amax, neg);
  constexpr lowp::MapTables<7> t7 = lowp::make_map<7>();
  constexpr lowp::MapTables<8> t8 = lowp::make_map<8>();
  const lowp::BlockRecip rb = lowp::block_recip(scale);  // (once per thread, not per value)
  for (int64_t i = lo + threadIdx.x; i < hi; i += kThreads) c[i] = lowp::quantize_by(x[i], scale, rb, t7, t8);
  if (threadIdx.x == 0) scales[blockIdx.x] = scale;
}

__global__ void __launch_bounds__(kThreads) dequantize_kernel(const uint8_t* __restrict__ c,
                                                              const float* __restrict__ scales,
                                                              float* __restrict__ o, int64_t n, int shift) {
  for (int64_t i = blockIdx.x * int64_t(kThreads) + threadIdx.x; i < n; i += int64_t(gridDim.x) * kThreads)
    o[i] = lowp::dequantize(c[i], scales[i >> shift]);
}

// ---- SWALP's quantizers --------------------------------------------------------------------------

// x and o: the same array (in place) or disjoint; no __restrict__.
__global__ void __launch_bounds__(kThreads) fixed_point_kernel(const float* x, float* o, int64_t n,
                                                               lowp::Grid g, bool sr, uint64_t seed,
                                                               uint64_t stream, uint64_t offset) {
  for (int64_t i = blockIdx.x * int64_t(kThreads) + threadIdx.x; i < n; i += int64_t(gridDim.x) * kThreads) {
    const uint32_t w = sr ? philox::word(offset + uint64_t(i), seed, stream) : 0u;
    o[i] = lowp::quantize_grid(x[i], g, sr, w);
  }
}

// amax[b] = max over block b (`span` elements) of the bits of the finite |x| (0 for none), as the
// CPU's finite_absmax_bits; `per` thread blocks share a block (amax zeroed before).
__global__ void __launch_bounds__(kThreads) finite_absmax_kernel(const float* __restrict__ x,
                                                                 uint32_t* __restrict__ amax, int64_t n,
                                                                 int64_t span, int64_t per) {
  __shared__ uint32_t m;
  const int64_t b = blockIdx.x / per, part = blockIdx.x % per;
  const int64_t lo = b * span, hi = lo + span < n ? lo + span : n;
  if (threadIdx.x == 0) m = 0u;
  __syncthreads();
  uint32_t a = 0u;
  for (int64_t i = lo + part * kThreads + threadIdx.x; i < hi; i += per * kThreads) {
    const uint32_t u = lowp::bits_of(x[i]) & 0x7fffffffu;
    a = u < 0x7f800000u && u > a ? u : a;
  }
  atomicMax(&m, a);
  __syncthreads();
  if (threadIdx.x == 0) atomicMax(&amax[b], m);
}

__global__ void __launch_bounds__(kThreads) block_fp_kernel(const float* x, float* o, const uint32_t* __restrict__ amax,
                                                            int64_t n, int64_t span, int bits, bool sr,
                                                            uint64_t seed, uint64_t stream, uint64_t offset) {
  for (int64_t i = blockIdx.x * int64_t(kThreads) + threadIdx.x; i < n; i += int64_t(gridDim.x) * kThreads) {
    const lowp::Grid g = lowp::block_fp_grid(lowp::float_of(amax[i / span]), bits);
    const uint32_t w = sr ? philox::word(offset + uint64_t(i), seed, stream) : 0u;
    o[i] = lowp::quantize_grid(x[i], g, sr, w);
  }
}

// CuPy's current stream, the arrays being on the current device (`first`: the first argument).
cudaStream_t stream_for(int device, const char* first) {
  require_current_device(device, first);
  return current_stream();
}

void to_half(py::handle x, py::handle out, const std::string& fmt, checks::Flag stochastic_arg, uint64_t seed, uint64_t stream,
             uint64_t offset) {
  const bool stochastic = checks::flag(stochastic_arg, "stochastic");
  const Half k = lowp::half_kind(fmt);
  lowp::Map<DeviceArrays> m;
  lowp::gather_to_half(m, x, out, stochastic, offset);
  if (m.n == 0) return;  // nothing to launch: needs neither CuPy's stream nor a device
  const cudaStream_t s = stream_for(m.args.device, "x");
  const auto* xp = static_cast<const float*>(m.x);
  auto* op = static_cast<uint16_t*>(m.out);
  py::gil_scoped_release nogil;
  const unsigned g = grid_for(m.n);
  if (k == Half::bf16 && stochastic) to_half_kernel<Half::bf16, true><<<g, kThreads, 0, s>>>(xp, op, m.n, seed, stream, offset);
  if (k == Half::bf16 && !stochastic) to_half_kernel<Half::bf16, false><<<g, kThreads, 0, s>>>(xp, op, m.n, seed, stream, offset);
  if (k == Half::f16 && stochastic) to_half_kernel<Half::f16, true><<<g, kThreads, 0, s>>>(xp, op, m.n, seed, stream, offset);
  if (k == Half::f16 && !stochastic) to_half_kernel<Half::f16, false><<<g, kThreads, 0, s>>>(xp, op, m.n, seed, stream, offset);
  check_launch("optkern._cuda lowp_to_half");
}

void from_half(py::handle x, py::handle out, const std::string& fmt) {
  const Half k = lowp::half_kind(fmt);
  lowp::Map<DeviceArrays> m;
  lowp::gather_map(m, x, "uint16", out, "float32");
  if (m.n == 0) return;
  const cudaStream_t s = stream_for(m.args.device, "x");
  const auto* xp = static_cast<const uint16_t*>(m.x);
  auto* op = static_cast<float*>(m.out);
  py::gil_scoped_release nogil;
  if (k == Half::bf16) from_half_kernel<Half::bf16><<<grid_for(m.n), kThreads, 0, s>>>(xp, op, m.n);
  else from_half_kernel<Half::f16><<<grid_for(m.n), kThreads, 0, s>>>(xp, op, m.n);
  check_launch("optkern._cuda lowp_from_half");
}

void quantize_blockwise(py::handle x, py::handle codes, py::handle scales, int64_t block) {
  lowp::Blocks<DeviceArrays> b;
  lowp::gather_quantize(b, x, codes, scales, block);
  if (b.n == 0) return;
  const cudaStream_t s = stream_for(b.args.device, "x");
  const int64_t nb = lowp::block_count(b.n, block);
  if (nb > int64_t(INT32_MAX)) throw py::value_error("x: too many blocks for one launch");
  py::gil_scoped_release nogil;
  quantize_kernel<<<unsigned(nb), kThreads, 0, s>>>(b.x, b.codes, b.scales, b.n, block);
  check_launch("optkern._cuda lowp_quantize_blockwise");
}

void dequantize_blockwise(py::handle codes, py::handle scales, py::handle out, int64_t block) {
  lowp::Blocks<DeviceArrays> b;
  lowp::gather_dequantize(b, codes, scales, out, block);
  if (b.n == 0) return;
  const cudaStream_t s = stream_for(b.args.device, "codes");
  const int shift = __builtin_ctzll(static_cast<unsigned long long>(block));  // block: a power of two
  py::gil_scoped_release nogil;
  dequantize_kernel<<<grid_for(b.n), kThreads, 0, s>>>(b.codes_in, b.scales_in, b.values, b.n, shift);
  check_launch("optkern._cuda lowp_dequantize_blockwise");
}

void quantize_fixed_point(py::handle x, py::handle out, int64_t bits, int64_t frac, checks::Flag stochastic_arg, uint64_t seed,
                          uint64_t stream, uint64_t offset) {
  const bool stochastic = checks::flag(stochastic_arg, "stochastic");
  lowp::GridCall<DeviceArrays> c;
  lowp::gather_grid(c, x, out, bits, stochastic, offset);
  lowp::check_frac(frac);
  if (c.n == 0) return;
  const cudaStream_t s = stream_for(c.in.device, "x");
  const lowp::Grid g = lowp::fixed_point_grid(int(bits), int(frac));
  py::gil_scoped_release nogil;
  fixed_point_kernel<<<grid_for(c.n), kThreads, 0, s>>>(c.x, c.out, c.n, g, stochastic, seed, stream, offset);
  check_launch("optkern._cuda lowp_quantize_fixed_point");
}

void quantize_block_fp(py::handle x, py::handle out, int64_t bits, int64_t block, checks::Flag stochastic_arg, uint64_t seed,
                       uint64_t stream, uint64_t offset) {
  const bool stochastic = checks::flag(stochastic_arg, "stochastic");
  lowp::GridCall<DeviceArrays> c;
  lowp::gather_grid(c, x, out, bits, stochastic, offset);
  lowp::check_fp_block(block);
  if (c.n == 0) return;
  const cudaStream_t s = stream_for(c.in.device, "x");
  const int64_t span = block == 0 || block > c.n ? c.n : block;  // block 0: the whole array
  const int64_t nb = lowp::block_count(c.n, span);
  constexpr int64_t kPerThread = 16;  // elements a thread reduces, about
  int64_t per = (span + kThreads * kPerThread - 1) / (kThreads * kPerThread);
  per = per < 1 ? 1 : (per > 4096 ? 4096 : per);
  if (nb > int64_t(INT32_MAX) / per) throw py::value_error("x: too many blocks for one launch");
  const ScratchBuffer buf(sizeof(uint32_t) * size_t(nb), s, c.in.device);
  uint32_t* amax = buf.as<uint32_t>();
  {
    py::gil_scoped_release nogil;
    check_cuda(cudaMemsetAsync(amax, 0, sizeof(uint32_t) * size_t(nb), s), "lowp_quantize_block_fp");
    finite_absmax_kernel<<<unsigned(nb * per), kThreads, 0, s>>>(c.x, amax, c.n, span, per);
    block_fp_kernel<<<grid_for(c.n), kThreads, 0, s>>>(c.x, c.out, amax, c.n, span, int(bits), stochastic, seed,
                                                        stream, offset);
  }
  check_launch("optkern._cuda lowp_quantize_block_fp");
}

}  // namespace

void register_lowp(py::module_& m) {
  sig::lowp_convert(m, &to_half, &from_half, &quantize_blockwise, &dequantize_blockwise);
  sig::lowp_grid(m, &quantize_fixed_point, &quantize_block_fp);
}

}  // namespace optkern
