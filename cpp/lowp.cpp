// optkern._cpu.lowp_*: element-wise format conversions and blockwise 8-bit
// quantization (math in rules/lowp.hpp). Half arrays arrive as uint16 views
// (the Python layer turns float16 / ml_dtypes.bfloat16 arrays into them). The
// conversions' signatures and checks are optkern/lowp_convert_args.hpp's, shared
// with their CUDA kernels (cuda/lowp.cu).
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "lowp_convert_loops.hpp"
#include "lowp_q8.hpp"
#include "parallel.hpp"
#include "optkern/lowp_convert_args.hpp"
#include "optkern/lowp_storage.hpp"
#include "philox_cpu.hpp"
#include "py_arrays.hpp"
#include "optkern/rules/lowp.hpp"
#include "optkern/scalar_checks.hpp"

namespace optkern {
namespace py = pybind11;

namespace {

using lowp::Half;

// f(b) for every block b of `block` elements of [0, n): chunks of whole blocks, ~kChunk elements
// each, under one parallel region (a chunk of kChunk blocks would put a 16M array on one thread).
template <class F> void parallel_blocks(int64_t n, int64_t block, F&& f) {
  const auto chunks = make_chunks({lowp::block_count(n, block)}, block >= kChunk ? 1 : kChunk / block);
  for_each_chunk(chunks, 2 * n, [&](const Chunk& c) {  // (work: in and out, parallel.hpp)
    for (int64_t b = c.start; b < c.start + c.len; ++b) f(b);
  });
}

// f(lo, hi) for consecutive ranges of [0, n) in fixed chunks under one parallel region.
template <class F> void parallel_ranges(int64_t n, F&& f) {
  const auto chunks = make_chunks({n});
  for_each_chunk(chunks, 2 * n, [&](const Chunk& c) { f(c.start, c.start + c.len); });  // in and out
}

// float32 -> half, round to nearest even or stochastically (Philox word of
// element offset + i in stream `stream` of `seed`).
void to_half(py::handle src_h, py::handle out_h, const std::string& fmt, checks::Flag stochastic_arg, uint64_t seed,
             uint64_t stream, uint64_t offset) {
  const bool stochastic = checks::flag(stochastic_arg, "stochastic");
  const Half k = lowp::half_kind(fmt);
  lowp::Map<HostArrays> m;
  lowp::gather_to_half(m, src_h, out_h, stochastic, offset);
  const float* x = static_cast<const float*>(m.x);
  uint16_t* o = static_cast<uint16_t*>(m.out);
  const int64_t n = m.n;
  py::gil_scoped_release nogil;
  if (!stochastic) {
    parallel_ranges(n, [&](int64_t lo, int64_t hi) {
      if (k == Half::bf16) lowp::to_bf16_loop(x + lo, o + lo, hi - lo);
      else lowp::to_f16_loop(x + lo, o + lo, hi - lo);
    });
    return;
  }
  philox::parallel_words(n, offset, seed, stream, 1, [&](int64_t a, const uint32_t* w, int64_t m) {
    if (k == Half::bf16) lowp::to_bf16_sr_loop(x + a, w, o + a, m);
    else lowp::to_f16_sr_loop(x + a, w, o + a, m);
  });
}

void from_half(py::handle src_h, py::handle out_h, const std::string& fmt) {
  const Half k = lowp::half_kind(fmt);
  lowp::Map<HostArrays> m;
  lowp::gather_map(m, src_h, "uint16", out_h, "float32");
  const uint16_t* x = static_cast<const uint16_t*>(m.x);
  float* o = static_cast<float*>(m.out);
  const int64_t n = m.n;
  py::gil_scoped_release nogil;
  parallel_ranges(n, [&](int64_t lo, int64_t hi) {
    if (k == Half::bf16) lowp::from_bf16_loop(x + lo, o + lo, hi - lo);
    else lowp::from_f16_loop(x + lo, o + lo, hi - lo);
  });
}

using lowp::block_count;

// Blockwise dynamic 8-bit quantization: scales[b] = +-absmax of block b. `reference`: the scalar
// functions of rules/lowp.hpp element by element (the definition the tests pin the fast loops to);
// otherwise the 8-bit step's own block loops (lowp_q8.hpp: the same codes, vectorized).
void quantize_blocks(py::handle src_h, py::handle codes_h, py::handle scales_h, int64_t block, bool reference) {
  lowp::Blocks<HostArrays> a;
  lowp::gather_quantize(a, src_h, codes_h, scales_h, block);
  const int64_t n = a.n;
  const float* x = a.x;
  uint8_t* c = a.codes;
  float* s = a.scales;
  py::gil_scoped_release nogil;
  parallel_blocks(n, block, [&](int64_t b) {
    const int64_t lo = b * block, hi = lo + block < n ? lo + block : n;
    if (!reference) {
      s[b] = lowp::q8_block_scale(x + lo, hi - lo);
      lowp::q8_encode_block(x + lo, c + lo, hi - lo, s[b]);
      return;
    }
    uint32_t amax = 0u;  // lowp::abs_bits: the largest |x| that is not NaN, as the step's blocks take it
    uint32_t flags = 0u;
    for (int64_t i = lo; i < hi; ++i) {
      const uint32_t m = lowp::abs_bits(x[i]);
      amax = m > amax ? m : amax;
      flags |= lowp::block_flags(x[i]);
    }
    s[b] = lowp::scale_of(amax, flags);
    for (int64_t i = lo; i < hi; ++i) c[i] = lowp::quantize(x[i], s[b]);
  });
}

void quantize_blockwise(py::handle src_h, py::handle codes_h, py::handle scales_h, int64_t block) {
  quantize_blocks(src_h, codes_h, scales_h, block, false);
}

// (decode: lowp_q8.hpp's loops give dequantize's values for all 256 codes of both maps)
void dequantize_blockwise(py::handle codes_h, py::handle scales_h, py::handle out_h, int64_t block) {
  lowp::Blocks<HostArrays> a;
  lowp::gather_dequantize(a, codes_h, scales_h, out_h, block);
  const int64_t n = a.n;
  const uint8_t* c = a.codes_in;
  const float* s = a.scales_in;
  float* o = a.values;
  py::gil_scoped_release nogil;
  parallel_blocks(n, block, [&](int64_t b) {
    const int64_t lo = b * block, hi = lo + block < n ? lo + block : n;
    lowp::q8_decode_block(c + lo, o + lo, hi - lo, s[b]);
  });
}

// ---- SWALP's quantizers (rules/lowp.hpp: quantize_grid; checks: lowp_convert_args.hpp) ------

struct GridArgs {
  const float* x;
  float* o;
  int64_t n;
  bool stochastic;
  uint64_t seed, stream, offset;
};

// Element i of x on grid g (random word of global index offset + i in `stream` of `seed`).
inline void grid_range(const GridArgs& a, const lowp::Grid& g, int64_t lo, int64_t hi) {
  if (a.stochastic)
    philox::words_in_batches(lo, hi, a.offset, a.seed, a.stream, 1, [&](int64_t b, const uint32_t* w, int64_t m) {
      lowp::grid_loop(g, a.x + b, w, a.o + b, m);
    });
  else
    lowp::grid_loop(g, a.x + lo, nullptr, a.o + lo, hi - lo);
}

// The largest finite |x[i]| for i in [lo, hi) (0 for none): the bits of |x| order like the values.
uint32_t finite_absmax_bits(const float* x, int64_t lo, int64_t hi) {
  uint32_t m = 0;
  for (int64_t i = lo; i < hi; ++i) {
    const uint32_t a = lowp::bits_of(x[i]) & 0x7fffffffu;
    m = a < 0x7f800000u && a > m ? a : m;
  }
  return m;
}

void quantize_fixed_point(py::handle src_h, py::handle out_h, int64_t bits, int64_t frac, checks::Flag stochastic_arg,
                          uint64_t seed, uint64_t stream, uint64_t offset) {
  const bool stochastic = checks::flag(stochastic_arg, "stochastic");
  lowp::GridCall<HostArrays> call;
  lowp::gather_grid(call, src_h, out_h, bits, stochastic, offset);
  lowp::check_frac(frac);
  const GridArgs a{call.x, call.out, call.n, stochastic, seed, stream, offset};
  const lowp::Grid g = lowp::fixed_point_grid(int(bits), int(frac));
  py::gil_scoped_release nogil;
  const auto chunks = make_chunks({a.n});
  for_each_chunk(chunks, 2 * a.n, [&](const Chunk& c) { grid_range(a, g, c.start, c.start + c.len); });
}

// One shared exponent per `block` elements (block 0: the whole array, its absmax reduced first).
void quantize_block_fp(py::handle src_h, py::handle out_h, int64_t bits, int64_t block, checks::Flag stochastic_arg,
                       uint64_t seed, uint64_t stream, uint64_t offset) {
  const bool stochastic = checks::flag(stochastic_arg, "stochastic");
  lowp::GridCall<HostArrays> call;
  lowp::gather_grid(call, src_h, out_h, bits, stochastic, offset);
  lowp::check_fp_block(block);
  const GridArgs a{call.x, call.out, call.n, stochastic, seed, stream, offset};
  py::gil_scoped_release nogil;
  if (block == 0) {
    const auto chunks = make_chunks({a.n});
    std::vector<uint32_t> part(chunks.size(), 0u);
    for_each_chunk(chunks, a.n, [&](const Chunk& c) {
      part[size_t(&c - chunks.data())] = finite_absmax_bits(a.x, c.start, c.start + c.len);
    });
    uint32_t m = 0;
    for (uint32_t p : part) m = p > m ? p : m;
    const lowp::Grid g = lowp::block_fp_grid(lowp::float_of(m), int(bits));
    for_each_chunk(chunks, 2 * a.n, [&](const Chunk& c) { grid_range(a, g, c.start, c.start + c.len); });
    return;
  }
  parallel_blocks(a.n, block, [&](int64_t b) {
    const int64_t lo = b * block, hi = lo + block < a.n ? lo + block : a.n;
    grid_range(a, lowp::block_fp_grid(lowp::float_of(finite_absmax_bits(a.x, lo, hi)), int(bits)), lo, hi);
  });
}

}  // namespace

void register_lowp(py::module_& m) {
  sig::lowp_convert(m, &to_half, &from_half, &quantize_blockwise, &dequantize_blockwise);
  sig::lowp_grid(m, &quantize_fixed_point, &quantize_block_fp);
  def_named(m, "lowp_quantize_blockwise_reference",
        [](py::handle x, py::handle codes, py::handle scales, int64_t block) {
          quantize_blocks(x, codes, scales, block, true);
        }, py::arg("x"), py::arg("codes"), py::arg("scales"), py::arg("block"),
        "lowp_quantize_blockwise by the scalar rules element by element (CPU only: the tests' definition).");
  m.def("lowp_decode_map", [](checks::Flag is_signed_arg) {
          const bool is_signed = checks::flag(is_signed_arg, "signed");
          py::array_t<float> out(256);
          auto* o = out.mutable_data();
          for (int c = 0; c < 256; ++c) o[c] = lowp::dyn_decode(uint8_t(c), is_signed);
          return out;
        }, py::arg("signed"), "The 256 values of the dynamic 8-bit map (code -> value / scale).");
}

}  // namespace optkern
