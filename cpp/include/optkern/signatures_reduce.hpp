// The Python signatures of the reductions and gradient transforms that optkern._cpu (cpp/reduce.cpp,
// cpp/regularize.cpp, cpp/step_checks.cpp) and optkern._cuda (cuda/reduce.cu, cuda/regularize.cu,
// cuda/step_checks.cu) both export: names, argument names and types, defaults, docstrings and the
// scalar checks both need, written once. Each module passes its implementations, whose return types
// are its own: the CPU's hand the value back as well, the GPU's return None (the value stays on the
// device: no host synchronization). They were bound twice, with docstrings that had drifted apart
// and a penalty_value whose `out` was optional on one module only.
#pragma once
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <utility>

#include "optkern/reduce_args.hpp"
#include "optkern/regularize_args.hpp"
#include "optkern/scalar_checks.hpp"
#include "optkern/named_reals.hpp"

namespace optkern {
namespace sig {
namespace py = pybind11;
using py::arg;

// grad_norm and the parts of a distributed norm; `chunk`: the elements of one partial sum.
template <class Norm, class Parts, class Finish, class Sq>
void norms(py::module_& m, Norm grad_norm, Parts grad_norm_parts, int64_t chunk, Finish grad_norm_finish,
           Sq grad_sq_norm) {
  def_named(m, "grad_norm", [grad_norm](py::object arrays, double norm_type, py::object out) {
          return grad_norm(arrays, norm_type, out);
        },
        arg("arrays"), arg("norm_type"), arg("out"),
        "Total norm (sum_i sum_j |x_ij|^p)^(1/p) of a list of float32/float64 arrays (norm_type p in [1, 960]), or "
        "max |x| for norm_type=inf, accumulated in float64 in a fixed blocking (the same bits for any thread "
        "count, every run), written to out[0] (a 1-element float64 array of the arrays' kind and device). "
        "optkern._cpu returns it too; optkern._cuda returns None (no host synchronization).");
  def_named(m, "grad_norm_parts", [grad_norm_parts](py::object arrays, double norm_type, py::object out) {
          return grad_norm_parts(arrays, norm_type, out);
        },
        arg("arrays"), arg("norm_type"), arg("out"),
        "grad_norm's partial sums for a finite norm_type (in [1, 960]), one a chunk of grad_norm_chunk() elements, in the "
        "order grad_norm combines them, in a new float64 array of the arrays' kind; the terms of p other than "
        "1 and 2 scaled by the power of two of out[0] (the max |x| of every array the norm takes; out is "
        "checked as grad_norm's, not written): a distributed norm gathers every rank's and finishes them with "
        "grad_norm_finish. No host synchronization on the GPU.");
  m.def("grad_norm_chunk", [chunk] { return chunk; },
        "The elements of one of grad_norm_parts' partial sums: each array cut into chunks of this many from its "
        "first element (the last one shorter).");
  def_named(m, "grad_norm_finish", [grad_norm_finish](py::object parts, double norm_type, py::object out) {
          return grad_norm_finish(parts, norm_type, out);
        },
        arg("parts"), arg("norm_type"), arg("out"),
        "The norm from grad_norm_parts' partial sums (every rank's, concatenated in rank order; zeros between "
        "them add nothing), combined and rooted as grad_norm combines and roots its own, out[0] holding the max "
        "|x| on entry (p other than 1 and 2); the norm written to out[0]. optkern._cpu returns it too; "
        "optkern._cuda returns None (no host synchronization).");
  m.def("grad_sq_norm", [grad_sq_norm](py::object arrays, py::object out) { return grad_sq_norm(arrays, out); },
        arg("arrays"), arg("out"),
        "Sum of the squares of every element of a list of arrays (grad_norm's 2-norm before its square root), "
        "accumulated as grad_norm's, written to out[0] (a 1-element float64 array of the arrays' kind and "
        "device). optkern._cpu returns it too; optkern._cuda returns None (no host synchronization).");
}

// clip_scale_, clamp_ and all_finite: in-place transforms and the finiteness flag.
template <class Scale, class Clamp, class Finite>
void clipping(py::module_& m, Scale clip_scale, Clamp clamp, Finite all_finite) {
  def_named(m, "clip_scale_", [clip_scale](py::object arrays, double max_norm, py::object total_norm_buf,
                                    const std::string& norm_dtype) {
          reduce_args::check_max_norm(max_norm);
          return clip_scale(arrays, max_norm, total_norm_buf, norm_dtype);
        },
        arg("arrays"), arg("max_norm"), arg("total_norm_buf"), arg("norm_dtype") = "",
        "arrays *= min(1, max_norm / (total_norm_buf[0] + 1e-6)) in place (max_norm >= 0 or inf; a NaN norm "
        "makes NaN arrays, as in torch), total_norm_buf a 1-element float64 array read where the arrays are "
        "(on the GPU by the kernel: no host synchronization); the factor computed in norm_dtype ('' the "
        "arrays' dtype) as torch computes it in its norm's dtype.");
  def_named(m, "clamp_", [clamp](py::object arrays, double clip_value) { return clamp(arrays, clip_value); },
        arg("arrays"), arg("clip_value"),
        "arrays = clip(arrays, -clip_value, clip_value) in place, for every array (clip_value >= 0).");
  m.def("all_finite", [all_finite](py::object arrays, py::object out) { return all_finite(arrays, out); },
        arg("arrays"), arg("out"),
        "out[0] = 1.0 if every element of every array is finite, else 0.0 (out: a 1-element float64 array of "
        "the arrays' kind and device).");
}

// The L1 / L2 penalty's gradient and value (rules/regularize.hpp).
template <class Grad, class Value> void penalties(py::module_& m, Grad penalty_grad, Value penalty_value) {
  m.def("penalty_grad_",
        [penalty_grad](py::object params, py::object grads, const checks::Real& l1, const checks::Real& l2,
                       py::object out) {
          const std::pair<double, double> c = regularize_args::coeffs(l1, l2);
          return penalty_grad(params, grads, c.first, c.second, out);
        },
        arg("params"), arg("grads"), arg("l1"), arg("l2"), arg("out") = py::none(),
        "grads[i] += l2*params[i] + l1*sign(params[i]) in place; with out (a 1-element float64 array) also "
        "writes l1*sum|p| + l2/2*sum p^2 to out[0] (the same pass over p). optkern._cpu returns that value "
        "(None without out); optkern._cuda returns None (no host synchronization).");
  m.def("penalty_value",
        [penalty_value](py::object params, const checks::Real& l1, const checks::Real& l2, py::object out) {
          const std::pair<double, double> c = regularize_args::coeffs(l1, l2);
          return penalty_value(params, c.first, c.second, out);
        },
        arg("params"), arg("l1"), arg("l2"), arg("out") = py::none(),
        "l1*sum|p| + l2/2*sum p^2 over all arrays (a deterministic float64 sum), written to out[0] (a 1-element "
        "float64 array). optkern._cpu returns it, out optional; optkern._cuda requires out and returns None "
        "(no host synchronization).");
}

template <class Precheck> void step_prechecks(py::module_& m, Precheck precheck_step) {
  m.def("precheck_step_", [precheck_step](py::list runs) { precheck_step(runs); }, arg("runs"),
        "Check a multi-call optimizer step before it writes: runs of (dtype, written arrays, their names, grads, "
        "their params, grad names).");
}

}  // namespace sig
}  // namespace optkern
