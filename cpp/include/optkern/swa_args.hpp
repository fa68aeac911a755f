// swa_lerp_'s arguments, written once for optkern._cpu (cpp/swa.cpp, NumPy arrays) and
// optkern._cuda (cuda/swa.cu, CuPy arrays): the Python signature, and the lists checked by the
// shared collector of optkern/call_args.hpp (all of averages[0]'s dtype, float32 or float64,
// C-contiguous, params of the averages' sizes, one device, no average sharing memory with anything)
// and the weight before anything is written.
#pragma once
#include <pybind11/pybind11.h>

#include <string>

#include "optkern/call_args.hpp"
#include "optkern/named_reals.hpp"

namespace optkern {
namespace swa {
namespace py = pybind11;

// `dt`: the call's dtype, averages[0]'s (float32 for none), which each module reads from its list
// (list_dtype / float_dtype_of): torch's AveragedModel averages float64 params too.
template <class Arrays> struct LerpCall {
  explicit LerpCall(typename Arrays::DType dt) : args(std::move(dt)) {}
  Args<Arrays> args;
  typename Arrays::List avgs, params;
};

// weight in [0, 1] (NaN refused): outside it the lerp extrapolates (a decay of 2 averaged 1 and 3
// to -1), and a NaN weight made every average NaN; AveragedParams' weights are 1 / (n + 1) and
// 1 - decay, both inside it.
template <class Arrays>
void gather_lerp(LerpCall<Arrays>& c, py::handle averages, py::handle params, double weight) {
  if (!(weight >= 0.0 && weight <= 1.0))
    throw py::value_error("weight: must be in [0, 1], got " + checks::repr(weight));
  c.avgs = c.args.list(averages, "averages", true);
  c.params = c.args.list(params, "params", false, &c.avgs.size);
  c.args.check_overlap();
}

}  // namespace swa

namespace sig {

template <class F> void swa(pybind11::module_& m, F swa_lerp) {
  using pybind11::arg;
  def_named(m, "swa_lerp_", swa_lerp, arg("averages"), arg("params"), arg("weight"),
        "averages[i] <- lerp(averages[i], params[i], weight), float32 or float64 (all of averages[0]'s "
        "dtype), one pass.");
}

}  // namespace sig
}  // namespace optkern
