// Optimizer steps on CuPy arrays: one generic step for every optimizer described in
// optkern/signatures_optim.hpp (which also makes the Python signatures, shared with
// optkern._cpu) checks its lists, picks the rule variant of rules/optim.hpp (the same
// structs the OpenMP loop uses) and runs it through the multi-tensor kernel
// (multi_tensor.cuh); nothing synchronizes.
//
// Plain calls build the rule on the host with Rule::at. Capturable calls
// (`counters` and/or `lr_buffer` given) build it on the device with the same
// Rule::at from the step counters in device memory and advance them after the
// update (mt::DeviceRuleOp, mt::finish_counters), so the launches can be
// captured in a CUDA graph and replayed. Their counters and lr_buffer, which the
// CPU checks as read, are checked by the kernels (mt::DeviceStep::refused): a
// value the CPU refuses skips the step, unreported (nothing synchronizes).
#include <pybind11/pybind11.h>

#include <array>

#include "list_call.cuh"
#include "optkern/rules/optim.hpp"
#include "optkern/signatures_optim.hpp"

namespace optkern {
namespace {

using sig::Step;

// A call's step: its device buffers checked (after its lists), then one step
// of a rule per call.
class StepArgs {
 public:
  StepArgs(ListCall& a, const Step& st, int n_counters) : a_(a), host_(st.host), n_(n_counters) {
    if (!st.counters.is_none()) counters_ = a.add_buffer(st.counters, "counters", n_counters, true);
    if (!st.lr_buffer.is_none()) lr_ = a.add_buffer(st.lr_buffer, "lr_buffer", 1, false);
    if (!st.found_inf.is_none()) found_inf_ = a.add_flag(st.found_inf, "found_inf");
    a.ready(/*always_launch=*/counters_ != nullptr);  // the counters advance even for empty lists
  }

  template <class T, class Rule>
  rules::Counters run(const typename Rule::Hyper& h, const rules::BufferChecks& checks) const {
    return a_.apply_rule<T>(mt::DeviceStep<Rule>{h, host_, counters_, n_, lr_, found_inf_, checks});
  }

 private:
  const ListCall& a_;
  rules::Counters host_;
  int n_;
  double* counters_ = nullptr;
  const double* lr_ = nullptr;
  const float* found_inf_ = nullptr;
};

struct CudaOptim {
  // The step of every optimizer (its description D: signatures_optim.hpp), as cpp/optim.cpp's:
  // checks the lists (and a capturable call's buffers), picks the rule variant for the
  // state lists present and launches it; returns the host counters after the step.
  template <class D, size_t N>
  static rules::Counters step(py::object params, py::object grads, const std::array<py::object, N>& lists,
                              const typename D::Hyper& h, const Step& st) {
    ListCall a(params, "params", true);
    a.require(grads, "grads", false);
    bool present[N];
    for (size_t k = 0; k < N; ++k) {
      present[k] = true;
      if (D::states[k].optional) present[k] = a.add(lists[k], D::states[k].name, true);
      else a.require(lists[k], D::states[k].name, true);
    }
    const StepArgs s(a, st, sig::n_device_counters<D>());
    rules::Counters next = st.host;
    dispatch_float(a.dtype(), [&](auto z) {
      using T = decltype(z);
      sig::check_in_dtype<D>(st, sizeof(T), a.count());  // (the lists checked, nothing launched yet)
      const rules::BufferChecks checks = sig::buffer_checks<D>(st, sizeof(T), a.count());
      sig::with_rule<D, T>(present, [&](auto rule) { next = s.run<T, typename decltype(rule)::type>(h, checks); });
    });
    return next;
  }
};

}  // namespace

void register_optim(py::module_& m) { sig::optim<CudaOptim>(m); }

}  // namespace optkern
