// optkern._cpu.lowp_step: one optimizer step with low-precision storage
// (bf16/fp16 params + fp32 master, bf16 or 8-bit states) through the generic
// loop of lowp_loop.hpp. The rule and its math are rules/optim.hpp's; the
// argument checks and the rule's construction are optkern/lowp_step_args.hpp's,
// shared with the CUDA step (cuda/lowp_step.cu): this file only picks the
// storage instantiation of the OpenMP loop.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "lowp_loop.hpp"
#include "py_arrays.hpp"
#include "optkern/lowp_step_args.hpp"
#include "optkern/scalar_checks.hpp"

namespace optkern {
namespace py = pybind11;

namespace {

py::object lowp_step(const std::string& rule, const std::vector<checks::Real>& x, const std::vector<checks::Flag>& flags,
               py::handle params, py::handle grads, py::handle masters, py::handle states, py::handle scales,
               const std::string& param_fmt, const std::string& state_fmt, checks::Flag stochastic_arg, uint64_t seed,
               uint64_t step, int64_t block, py::handle grad_scale, py::handle bases) {
  const bool stochastic = checks::flag(stochastic_arg, "stochastic");
  lowp::StepCall<HostArrays> c;
  lowp::gather_step(c, params, grads, masters, states, scales, param_fmt, state_fmt, stochastic, seed, step, block,
                    grad_scale, bases);
  if (c.cfg.grad_scale) c.cfg.grad_mul = rules::inv_scale(*c.cfg.grad_scale);  // (host memory here)
  const double mu = lowp::with_rule(rule, x, flags, step, c.n_states, [&](const auto& r) {
    py::gil_scoped_release nogil;
    lowp::with_formats(c.pf, c.sf, [&](auto pf, auto sf) {
      lowp::apply_lowp<decltype(pf)::value, decltype(sf)::value>(r, c.ts, c.cfg);
    });
  });
  return lowp::step_result(mu);
}

}  // namespace

void register_lowp_step(py::module_& m) {
  sig::lowp_step(m, &lowp_step, sig::kLowpStepDoc);
}

}  // namespace optkern
