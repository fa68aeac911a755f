// optkern._cpu normalization functions; the loops live in cpp/norm_*.cpp and
// the formulas in rules/norm.hpp.
#include <pybind11/pybind11.h>

#include <string>

#include "norm_cpu.hpp"
#include "optkern/named_reals.hpp"

namespace optkern {
void register_norm_rows(pybind11::module_& m);      // norm_rows.cpp
void register_norm_channels(pybind11::module_& m);  // norm_channels.cpp
void register_norm_weight(pybind11::module_& m);    // norm_weight.cpp
void register_norm_rop(pybind11::module_& m);       // norm_rop.cpp

void register_norm(pybind11::module_& m) {
  register_norm_rows(m);
  register_norm_channels(m);
  register_norm_weight(m);
  register_norm_rop(m);
  def_named(
      m, "_set_stream_bytes",
      [](int64_t bytes) {
        // (a negative threshold streamed every output, 0 included, and read back as a size it is not)
        if (bytes < 0) throw pybind11::value_error("bytes: must be >= 0, got " + std::to_string(bytes));
        const int64_t old = streaming::stream_bytes();
        streaming::stream_bytes() = bytes;
        return old;
      },
      pybind11::arg("bytes"), "Testing hook: outputs of at least `bytes` use non-temporal stores; returns the old value.");
}
}  // namespace optkern
