// optkern._cuda normalization functions; kernels in cuda/norm_*.cu, formulas
// in rules/norm.hpp (shared with the CPU loops).
#include <pybind11/pybind11.h>

namespace optkern {
void register_norm_rows(pybind11::module_& m);      // norm_rows.cu
void register_norm_channels(pybind11::module_& m);  // norm_channels.cu
void register_norm_weight(pybind11::module_& m);    // norm_weight.cu
void register_norm_rop(pybind11::module_& m);       // norm_rop.cu

void register_norm(pybind11::module_& m) {
  register_norm_rows(m);
  register_norm_channels(m);
  register_norm_weight(m);
  register_norm_rop(m);
}
}  // namespace optkern
