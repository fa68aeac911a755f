// The device-flag GradScaler functions (amp_unscale_, amp_update_scale_), written once for
// optkern._cpu (cpp/amp.cpp, NumPy arrays) and optkern._cuda (cuda/amp.cu, CuPy arrays): their
// Python signatures and their checks through the shared collector (optkern/call_args.hpp), all
// before anything is written. The scale, the growth tracker and the found_inf flag are
// 1-element arrays (float32, int64, float32) where the grads live, so a CUDA step never needs a
// host synchronization; the math is rules/amp.hpp's.
#pragma once
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "optkern/call_args.hpp"
#include "optkern/lowp_step_args.hpp"
#include "optkern/named_reals.hpp"

namespace optkern {
namespace amp {
namespace py = pybind11;

template <class Arrays> struct UnscaleCall {
  Args<Arrays> args{Arrays::dtype_named("float32")};
  typename Arrays::List grads;
  const float* scale = nullptr;
  float* found_inf = nullptr;
};

template <class Arrays> void gather_unscale(UnscaleCall<Arrays>& c, py::handle grads, py::handle scale,
                                            py::handle found_inf) {
  c.grads = c.args.list(grads, "grads", true);
  c.scale = c.args.template get<const float>(scale, "scale", 1, false);
  c.found_inf = c.args.template get<float>(found_inf, "found_inf", 1, true);
  c.args.check_overlap();
}

// amp_check_: grads of one format (float32, or a half's uint16 bits), read only.
template <class Arrays> struct CheckCall {
  Args<Arrays> args{Arrays::dtype_named("float32")};
  typename Arrays::List grads;
  lowp::Fmt fmt = lowp::Fmt::f32;
  float* found_inf = nullptr;
};

template <class Arrays>
void gather_check(CheckCall<Arrays>& c, py::handle grads, const std::string& grad_dtype, py::handle found_inf) {
  c.fmt = lowp::parse_fmt(grad_dtype, "grad_dtype", false);
  c.grads = c.args.list(grads, "grads", lowp::storage_dtype<Arrays>(c.fmt), false);
  c.found_inf = c.args.template get<float>(found_inf, "found_inf", 1, true);
  c.args.check_overlap();
}

template <class Arrays> struct UpdateCall {
  Args<Arrays> args{Arrays::dtype_named("float32")};
  float* scale = nullptr;
  int64_t* tracker = nullptr;
  const float* found_inf = nullptr;
};

template <class Arrays>
void gather_update(UpdateCall<Arrays>& c, py::handle scale, py::handle tracker, py::handle found_inf, double growth,
                   double backoff, int64_t interval) {
  // (an infinite growth_factor: every growth overflows, so the scale never grows -- refused as
  // GradScaler refuses it, rather than taken silently)
  if (!(growth > 1.0 && std::isfinite(growth)))
    throw py::value_error("growth_factor: must be finite and > 1, got " + checks::repr(growth));
  if (!(backoff > 0.0 && backoff < 1.0))
    throw py::value_error("backoff_factor: must be in (0, 1), got " + checks::repr(backoff));
  if (interval < 1) throw py::value_error("growth_interval: must be >= 1, got " + std::to_string(interval));
  c.scale = c.args.template get<float>(scale, "scale", 1, true);
  c.tracker = c.args.template get<int64_t>(tracker, "growth_tracker", Arrays::dtype_named("int64"), 1, true);
  c.found_inf = c.args.template get<const float>(found_inf, "found_inf", 1, false);
  c.args.check_overlap();
}

}  // namespace amp

namespace sig {

template <class Unscale, class Check, class Update>
void amp(pybind11::module_& m, Unscale unscale, Check check, Update update) {
  using pybind11::arg;
  m.def("amp_unscale_", unscale, arg("grads"), arg("scale"), arg("found_inf"),
        "g *= float(1 / double(scale[0])) over a list of float32 arrays, and found_inf[0] = 1 when an "
        "element was inf or NaN (else left as it was); scale, found_inf: 1-element float32 arrays beside the "
        "grads (no host synchronization on the GPU).");
  m.def("amp_check_", check, arg("grads"), arg("grad_dtype"), arg("found_inf"),
        "found_inf[0] = 1 when an element of the grads is inf or NaN (else left as it was); the grads are not "
        "written. grad_dtype: 'float32' (float32 arrays), 'bfloat16' or 'float16' (their bits as uint16 arrays, "
        "as lowp_step takes them): the check before a low-precision step that unscales its half grads itself "
        "(lowp_step's grad_scale). found_inf: a 1-element float32 array beside the grads.");
  def_named(m, "amp_update_scale_", update, arg("scale"), arg("growth_tracker"), arg("found_inf"), arg("growth_factor"),
        arg("backoff_factor"), arg("growth_interval"),
        "torch's _amp_update_scale_ in place: after a non-finite step scale *= backoff_factor and the tracker "
        "restarts; after growth_interval clean steps scale *= growth_factor (unless that overflows). scale, "
        "found_inf: 1-element float32 arrays, growth_tracker: 1-element int64.");
}

}  // namespace sig
}  // namespace optkern
