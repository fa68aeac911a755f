// What an optimizer step checks of its arguments once its call has them (signatures_optim.hpp
// describes the calls): the step counters a call brings (host or device), NAdam's mu_product, and
// each hyper-parameter against the arrays' dtype (the descriptions' in_dtype tables, float32_lr's
// float32 operands), before anything is written.
#pragma once
#include <pybind11/pybind11.h>

#include <algorithm>
#include <iterator>
#include <string>
#include <string_view>

#include "optkern/dtype_checks.hpp"
#include "optkern/rules/optim.hpp"
#include "optkern/rules/step_inputs.hpp"
#include "optkern/scalar_checks.hpp"

namespace optkern {
namespace sig {
namespace py = pybind11;

// How a call counts steps: plain calls take the step from the host; capturable
// ones (counters not None) read it from a float64 array on the arrays' device,
// [steps taken] (NAdam: [steps taken, mu_product]), and advance it there after
// the update; lr_buffer (None or one float64 element there) replaces the host lr;
// found_inf (None or one float32 element there, amp.GradScaler's flag): when nonzero the
// step writes nothing and the counters stay.
struct Step {
  rules::Counters host;
  py::object counters, lr_buffer, found_inf;  // None in plain calls
  const double* reals = nullptr;  // the hyper-parameters as checked, in argument order (a bool's: 1 or 0)
  bool capturable() const { return !counters.is_none() || !lr_buffer.is_none() || !found_inf.is_none(); }
};

// NAdam's mu_product: a product of momentum factors in [0, 1), 1 before the first step -- or up to a
// float32 ulp above 1: optkern.torch hands float64 params under torch's float32 state the pre-image
// float32(1 * mu) / mu of torch's float32 product (torch/adam.py's _rule_mu_product), 1.0000000156.
// (rules/step_inputs.hpp: one predicate for this check and a capturable CUDA step's kernels.)
inline constexpr checks::Range kMuProduct = rules::mu_product_range();

// mu_product checked against kMuProduct and, above 1, against the step it starts (hyper-parameters
// h, step t): the adapter's pre-image times mu_t gives back torch's float32 product, below 1; a
// product this step makes at 1 or above turned 1 - prod_t to 0 or below, and the step ran the
// params backwards (1.0 -> -11183 at mu_product = 1 + 2**-23, beta1 = 1 - 2**-24).
inline void check_mu_product(const char* name, double mu_product, const rules::NAdamHyper& h, double t) {
  checks::check_real(name, mu_product, kMuProduct);
  if (!rules::mu_product_starts(mu_product, h, t)) {
    const double prod = rules::mul_rn(mu_product, rules::NAdam<double>::mu_at(h, t));
    throw py::value_error(std::string(name) + ": above 1 only where the product of this step, mu_product * mu_t, " +
                          "stays below 1 in float32 (it is " + checks::repr(prod) + "), got " +
                          checks::repr(mu_product));
  }
}

// The index of hyper-parameter `name` in D's arguments, or none (their count).
template <class D> constexpr size_t index_of(std::string_view name) {
  for (size_t i = 0; i < std::size(D::scalar_names); ++i)
    if (std::string_view(D::scalar_names[i]) == name) return i;
  return std::size(D::scalar_names);
}

// The hyper-parameters float32_lr (optkern.torch's float32 tensor lr) rounds to float32 whatever the
// arrays' dtype, each with the flag that must also be set (nullptr: none): the lr, and the
// weight_decay of AdamW's decay 1 - lr wd, multiplied there with it (rules/optim.hpp: decoupled_decay,
// neg_lr_ratio). Checked as float64 values on float64 params, lr = 1e39 rounded to inf and wrote NaN.
// The Python layer reads this table (FLOAT32_LR_OPERANDS, def_float32_lr): one rule for both checks.
struct Float32Operand {
  const char* name;
  const char* when;
};
inline constexpr Float32Operand kFloat32Operands[] = {{"lr", nullptr}, {"weight_decay", "decoupled_weight_decay"}};
// Why such a value meets float32 (the errors' words, the Python layer's too: FLOAT32_LR_WHOSE).
inline constexpr const char* kFloat32Lr = "float32_lr: a float32 lr";

// Whether hyper-parameter i of D (reals: the call's, a bool's 1 or 0) is one of kFloat32Operands
// in this call.
template <class D> bool float32_operand(const double* reals, size_t i) {
  constexpr size_t n = std::size(D::scalar_names), f32 = index_of<D>("float32_lr");
  if constexpr (f32 == n) return false;
  else {
    if (reals[f32] == 0.0) return false;  // (the common call: no table lookup)
    for (const Float32Operand& o : kFloat32Operands) {
      if (index_of<D>(o.name) != i) continue;
      const size_t w = o.when ? index_of<D>(o.when) : n;
      return !o.when || (w < n && reals[w] != 0.0);
    }
    return false;
  }
}

// The table as the native modules' FLOAT32_LR_OPERANDS ({name: flag or None}) and FLOAT32_LR_WHOSE.
inline void def_float32_lr(py::module_& m) {
  py::dict operands;
  for (const Float32Operand& o : kFloat32Operands)
    operands[py::str(o.name)] = o.when ? py::object(py::str(o.when)) : py::object(py::none());
  m.attr("FLOAT32_LR_OPERANDS") = operands;
  m.attr("FLOAT32_LR_WHOSE") = py::str(kFloat32Lr);
}

// The hyper-parameters of a step of D (as its call checked them, st.reals) against the arrays'
// dtype (itemsize 4: float32, 8: float64), named as the signature names them: each module's
// Impl::step calls it once it knows the dtype, before anything is written. A call of no arrays has
// no dtype (its lists' default, float32, is not the caller's): optkern.torch checks a group's
// hyper-parameters by such a call, and a float64 model's eps=1e-50 was refused as float32's.
template <class D> void check_in_dtype(const Step& st, size_t itemsize, size_t arrays) {
  if (arrays == 0) return;
  for (size_t i = 0; i < std::size(D::scalar_names); ++i) {
    const bool f32 = float32_operand<D>(st.reals, i);
    checks::check_in_dtype(D::scalar_names[i], st.reals[i], D::in_dtype[i], f32 ? std::min<size_t>(itemsize, 4) : itemsize,
                           f32 ? kFloat32Lr : "the arrays' dtype");
  }
}

// A capturable call's lr as read from its lr_buffer (CPU: the host can read it; CUDA's stays on the
// device, checked by the kernels: buffer_checks) checked as the first hyper-parameter it replaces (the lr; the
// given-scalar steps' step_size, c_grad): its range and finite in the dtype its rule rounds it to.
// Not a user lr's scale bound: ZeRO AdaGrad-Norm hands sgd its derived rate lr / b there, finite but
// above that bound where b0 is small (optim/adagrad.py).
template <class D> void check_lr_buffer(double lr, const Step& st, size_t itemsize, size_t arrays) {
  checks::check_real("lr_buffer[0]", lr, D::ranges[0]);
  if (arrays == 0) return;  // (no dtype: check_in_dtype's reason)
  const bool f32 = float32_operand<D>(st.reals, 0);
  checks::check_in_dtype("lr_buffer[0]", lr, checks::kRounded, f32 ? std::min<size_t>(itemsize, 4) : itemsize,
                         f32 ? kFloat32Lr : "the arrays' dtype");
}

// A capturable CPU call's counters as read (CUDA's stay on the device, read by its kernels only):
// the step they make, counters[0] + 1, checked as a host step (check_step), and NAdam's counters[1]
// as a host mu_product (check_mu_product), before anything is written: counters = [NaN] wrote NaN
// into every param, and [-1] (step 0) divided by a bias correction of 0.
template <class D> void check_counters(const double* counters, const typename D::Hyper& h) {
  if constexpr (D::kCounters >= 1) checks::check_step("counters[0] + 1 (this step)", counters[0] + 1.0);
  if constexpr (D::kCounters == 2) check_mu_product("counters[1] (mu_product)", counters[1], h, counters[0] + 1.0);
}

// check_lr_buffer's and check_counters' verdicts as a capturable CUDA step's kernels give them,
// where no host reads the buffers (rules/step_inputs.hpp): D's lr range, the dtype check_lr_buffer
// rounds the lr to (none without arrays), and the counters D's rule reads.
template <class D> rules::BufferChecks buffer_checks(const Step& st, size_t itemsize, size_t arrays) {
  return {D::ranges[0], arrays > 0 && (itemsize < 8 || float32_operand<D>(st.reals, 0)), D::kCounters};
}

}  // namespace sig
}  // namespace optkern
