// swa_lerp_'s arguments, written once for optkern._cpu (cpp/swa.cpp, NumPy arrays) and
// optkern._cuda (cuda/swa.cu, CuPy arrays): the Python signature, and the lists checked by the
// shared collector of optkern/call_args.hpp (float32, C-contiguous, params of the averages'
// sizes, one device, no average sharing memory with anything) before anything is written.
#pragma once
#include <pybind11/pybind11.h>

#include "optkern/call_args.hpp"

namespace optkern {
namespace swa {
namespace py = pybind11;

template <class Arrays> struct LerpCall {
  Args<Arrays> args{Arrays::dtype_named("float32")};
  typename Arrays::List avgs, params;
};

template <class Arrays> void gather_lerp(LerpCall<Arrays>& c, py::handle averages, py::handle params) {
  c.avgs = c.args.list(averages, "averages", true);
  c.params = c.args.list(params, "params", false, &c.avgs.size);
  c.args.check_overlap();
}

}  // namespace swa

namespace sig {

template <class F> void swa(pybind11::module_& m, F swa_lerp) {
  using pybind11::arg;
  m.def("swa_lerp_", swa_lerp, arg("averages"), arg("params"), arg("weight"),
        "averages[i] <- lerp(averages[i], params[i], weight), float32, one pass.");
}

}  // namespace sig
}  // namespace optkern
