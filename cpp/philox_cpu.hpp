// The CPU driver of the Philox streams (optkern/philox.hpp): blocks of the
// counter-based generator split into fixed chunks over OpenMP threads.
#pragma once
#include <cstdint>

#include "optkern/philox.hpp"
#include "parallel.hpp"

namespace optkern {
namespace philox {

// CPU driver: f(i, r, k) for every element i in [0, n) with r the Philox
// block holding it and k its lane, `per` elements per block (4 for 32-bit
// streams, 2 for the 53-bit one). Each block is computed once; blocks are
// split into fixed chunks, so the numbers do not depend on the thread count.
template <class F> void for_each_element(int64_t n, uint64_t seed, uint64_t offset, unsigned per, F&& f) {
  if (n <= 0) return;
  const uint64_t b0 = offset / per, b1 = (offset + uint64_t(n) - 1) / per;
  const auto chunks = make_chunks({int64_t(b1 - b0 + 1)}, kChunk / per);
  for_each_chunk(chunks, n * 8, [&](const Chunk& c) {
    for (int64_t j = c.start; j < c.start + c.len; ++j) {
      const uint64_t b = b0 + uint64_t(j);
      const U4 r = block(b, seed);
      for (unsigned k = 0; k < 4; k += 4 / per) {
        const int64_t i = int64_t(b * per + k / (4 / per) - offset);  // wraps below 0 at the head
        if (i >= 0 && i < n) f(i, r, k);
      }
    }
  });
}

}  // namespace philox
}  // namespace optkern
