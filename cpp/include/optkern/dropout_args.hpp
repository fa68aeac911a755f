// dropout_'s aliasing rule, written once for optkern._cpu (cpp/dropout.cpp) and optkern._cuda
// (cuda/dropout.cu), checked before anything is written: out is x itself (dropout in place reads
// each element before writing it) or shares no byte with it, and the mask (written too) shares
// none with either. A partial overlap made the result depend on the order of the writes: the CPU's
// chunks and the GPU's threads left different values.
#pragma once
#include <pybind11/pybind11.h>

#include <cstdint>

namespace optkern {
namespace dropout_args {
namespace py = pybind11;

// Whether the byte spans [a, a + na) and [b, b + nb) share a byte (empty spans share none).
inline bool overlap(const void* a, uint64_t na, const void* b, uint64_t nb) {
  const auto lo = reinterpret_cast<uintptr_t>(a), hi = reinterpret_cast<uintptr_t>(b);
  return na > 0 && nb > 0 && lo < hi + nb && hi < lo + na;
}

// x and out of `bytes` bytes each; mask (null: none) of `mask_bytes`.
inline void check_overlap(const void* x, const void* out, uint64_t bytes, const void* mask, uint64_t mask_bytes) {
  if (x != out && overlap(x, bytes, out, bytes))
    throw py::value_error("out: overlaps x without being x (dropout in place with out=x, or into a new array)");
  if (mask && overlap(mask, mask_bytes, x, bytes))
    throw py::value_error("mask shares memory with x (aliasing arrays cannot be updated in place)");
  if (mask && overlap(mask, mask_bytes, out, bytes))
    throw py::value_error("mask shares memory with out (aliasing arrays cannot be updated in place)");
}

}  // namespace dropout_args
}  // namespace optkern
