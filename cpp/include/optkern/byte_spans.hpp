// The aliasing check of bindings that take a handful of named arrays (the
// list bindings use check_no_overlap's sweep, py_arrays.hpp): each array as a
// byte range, on the host or on a device alike.
#pragma once
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

namespace optkern {

struct ByteSpan {
  const char* name;
  uintptr_t lo, hi;
  bool written;
};

// Raise if a written array shares memory with any other array of the call
// (pairwise: a call has a few arrays). Empty arrays overlap nothing.
inline void check_disjoint(const std::vector<ByteSpan>& s) {
  for (size_t i = 0; i < s.size(); ++i)
    for (size_t j = 0; j < s.size(); ++j) {
      const ByteSpan &a = s[i], &b = s[j];
      if (i == j || !a.written || a.lo == a.hi || b.lo == b.hi) continue;
      if (a.lo < b.hi && b.lo < a.hi)
        throw pybind11::value_error(std::string(a.name) + " shares memory with " + b.name +
                                    " (outputs must not alias inputs)");
    }
}

}  // namespace optkern
