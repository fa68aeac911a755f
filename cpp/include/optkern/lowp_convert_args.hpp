// The arguments of the low-precision conversions (lowp_to_half, lowp_from_half,
// lowp_quantize_blockwise, lowp_dequantize_blockwise) and of SWALP's quantizers
// (lowp_quantize_fixed_point, lowp_quantize_block_fp), written once for optkern._cpu
// (cpp/lowp.cpp, NumPy arrays) and optkern._cuda (cuda/lowp.cu, CuPy arrays): their Python
// signatures and their checks, through the shared collector of optkern/call_args.hpp (dtype,
// layout, sizes, one device, no output sharing memory with an input), all before anything
// is written. Half arrays travel as uint16 views of their bits. The math is rules/lowp.hpp's.
#pragma once
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "optkern/call_args.hpp"
#include "optkern/named_reals.hpp"

namespace optkern {
namespace lowp {
namespace py = pybind11;

enum class Half { bf16, f16 };

inline Half half_kind(const std::string& fmt) {
  if (fmt == "bfloat16") return Half::bf16;
  if (fmt == "float16") return Half::f16;
  throw py::value_error("dtype: expected 'bfloat16' or 'float16', got '" + fmt + "'");
}

inline void check_block(int64_t block) {
  if (block < 64 || block > 4096 || (block & (block - 1)) != 0)
    throw py::value_error("block: expected a power of two in [64, 4096], got " + std::to_string(block));
}

inline int64_t block_count(int64_t n, int64_t block) { return (n + block - 1) / block; }

template <class Arrays> int64_t element_count(py::handle h) {
  int64_t n = 1;
  for (int64_t d : Arrays::shape(h)) n *= d;
  return n;
}

// x (read) -> out (written), n elements each, of the dtypes named.
template <class Arrays> struct Map {
  Args<Arrays> args;
  const void* x = nullptr;
  void* out = nullptr;
  int64_t n = 0;
};
template <class Arrays>
void gather_map(Map<Arrays>& m, py::handle x, const char* x_dtype, py::handle out, const char* out_dtype) {
  m.x = m.args.get(x, "x", Arrays::dtype_named(x_dtype), -1, false);
  m.n = element_count<Arrays>(x);
  m.out = m.args.get(out, "out", Arrays::dtype_named(out_dtype), m.n, true);
  m.args.check_overlap();
}

// Stochastic rounding of element i takes Philox word offset + i (philox::word): offset + n must not
// pass 2^64 (check_philox_counter, as for dropout and the random fills). Past it the CPU's batched
// words ran on into the counter's upper half while the GPU's per-element index wrapped to 0: the two
// modules rounded with different words. Nearest rounding draws nothing: any offset.
inline void check_draws(int64_t n, bool stochastic, uint64_t offset) {
  if (stochastic) check_philox_counter(n, offset);
}

// lowp_to_half: float32 x -> uint16 half bits out, and its words.
template <class Arrays>
void gather_to_half(Map<Arrays>& m, py::handle x, py::handle out, bool stochastic, uint64_t offset) {
  gather_map(m, x, "float32", out, "uint16");
  check_draws(m.n, stochastic, offset);
}

// 8-bit blocks: float32 values (n), uint8 codes (n) and one float32 scale per block.
template <class Arrays> struct Blocks {
  Args<Arrays> args;
  const float* x = nullptr;     // quantize: values in
  float* values = nullptr;      // dequantize: values out
  const uint8_t* codes_in = nullptr;
  uint8_t* codes = nullptr;
  const float* scales_in = nullptr;
  float* scales = nullptr;
  int64_t n = 0, block = 0;
};

template <class Arrays>
void gather_quantize(Blocks<Arrays>& b, py::handle x, py::handle codes, py::handle scales, int64_t block) {
  check_block(block);
  const auto f32 = Arrays::dtype_named("float32");
  b.block = block;
  b.x = b.args.template get<const float>(x, "x", f32, -1, false);
  b.n = element_count<Arrays>(x);
  b.codes = b.args.template get<uint8_t>(codes, "codes", Arrays::dtype_named("uint8"), b.n, true);
  b.scales = b.args.template get<float>(scales, "scales", f32, block_count(b.n, block), true);
  b.args.check_overlap();
}

template <class Arrays>
void gather_dequantize(Blocks<Arrays>& b, py::handle codes, py::handle scales, py::handle out, int64_t block) {
  check_block(block);
  const auto f32 = Arrays::dtype_named("float32");
  b.block = block;
  b.codes_in = b.args.template get<const uint8_t>(codes, "codes", Arrays::dtype_named("uint8"), -1, false);
  b.n = element_count<Arrays>(codes);
  b.scales_in = b.args.template get<const float>(scales, "scales", f32, block_count(b.n, block), false);
  b.values = b.args.template get<float>(out, "out", f32, b.n, true);
  b.args.check_overlap();
}

// ---- SWALP's quantizers (rules/lowp.hpp: quantize_grid) ----------------------------------------

inline void check_bits(int64_t bits) {
  if (bits < 2 || bits > 24) throw py::value_error("bits: expected 2..24, got " + std::to_string(bits));
}

inline void check_frac(int64_t frac) {
  if (frac < -100 || frac > 100) throw py::value_error("frac: expected -100..100, got " + std::to_string(frac));
}

inline void check_fp_block(int64_t block) {
  if (block < 0) throw py::value_error("block: expected >= 0 (0: one block), got " + std::to_string(block));
}

// float32 x (read) -> float32 out (written), n elements each; out is x itself (in place) or shares
// no memory with it. Two collectors: the shared one refuses any overlap, in place included.
template <class Arrays> struct GridCall {
  Args<Arrays> in, out_args;
  const float* x = nullptr;
  float* out = nullptr;
  int64_t n = 0;
};
template <class Arrays>
void gather_grid(GridCall<Arrays>& g, py::handle x, py::handle out, int64_t bits, bool stochastic, uint64_t offset) {
  check_bits(bits);
  const auto f32 = Arrays::dtype_named("float32");
  g.x = g.in.template get<const float>(x, "x", f32, -1, false);
  g.n = element_count<Arrays>(x);
  g.out_args.device = g.in.device;  // (one device for both)
  g.out = g.out_args.template get<float>(out, "out", f32, g.n, true);
  const auto xl = reinterpret_cast<uintptr_t>(g.x), ol = reinterpret_cast<uintptr_t>(g.out);
  const auto bytes = uintptr_t(g.n) * 4u;
  if (xl != ol && xl < ol + bytes && ol < xl + bytes)
    throw py::value_error("out: overlaps x without being x (quantize in place with out=x, or into a new array)");
  check_draws(g.n, stochastic, offset);
}

}  // namespace lowp

namespace sig {

// SWALP's two quantizers' Python signatures, the same in both modules.
template <class Fixed, class BlockFp> void lowp_grid(pybind11::module_& m, Fixed fixed, BlockFp block_fp) {
  using pybind11::arg;
  def_named(m, "lowp_quantize_fixed_point", fixed, arg("x"), arg("out"), arg("bits"), arg("frac"), arg("stochastic"),
        arg("seed"), arg("stream"), arg("offset"),
        "SWALP's fixed point <bits, frac>: x -> out (may be x), stochastic or nearest-even rounding.");
  def_named(m, "lowp_quantize_block_fp", block_fp, arg("x"), arg("out"), arg("bits"), arg("block"), arg("stochastic"),
        arg("seed"), arg("stream"), arg("offset"),
        "SWALP's block floating point (one exponent per block, 0: whole array): x -> out (may be x).");
}


// The four conversions' Python signatures, the same in both modules.
template <class ToHalf, class FromHalf, class Quantize, class Dequantize>
void lowp_convert(pybind11::module_& m, ToHalf to_half, FromHalf from_half, Quantize quantize,
                  Dequantize dequantize) {
  using pybind11::arg;
  def_named(m, "lowp_to_half", to_half, arg("x"), arg("out"), arg("dtype"), arg("stochastic"), arg("seed"), arg("stream"),
        arg("offset"), "float32 x -> bfloat16/float16 bits in uint16 out (nearest even, or stochastic rounding).");
  m.def("lowp_from_half", from_half, arg("x"), arg("out"), arg("dtype"),
        "bfloat16/float16 bits (uint16 x) -> float32 out, exact.");
  def_named(m, "lowp_quantize_blockwise", quantize, arg("x"), arg("codes"), arg("scales"), arg("block"),
        "Blockwise dynamic 8-bit quantization of float32 x (rules/lowp.hpp).");
  def_named(m, "lowp_dequantize_blockwise", dequantize, arg("codes"), arg("scales"), arg("out"), arg("block"),
        "Inverse of lowp_quantize_blockwise.");
}

}  // namespace sig
}  // namespace optkern
