// Optimizer steps on CuPy arrays: each binding checks its lists, picks the rule
// variant of rules/optim.hpp (the same structs the OpenMP loop uses) and runs
// it through the multi-tensor kernel (multi_tensor.cuh). The Python signatures
// are in optkern/signatures.hpp, shared with optkern._cpu; nothing synchronizes.
//
// Plain calls build the rule on the host with Rule::at. Capturable calls
// (`counters` and/or `lr_buffer` given) build it on the device with the same
// Rule::at from the step counters in device memory and advance them after the
// update (mt::DeviceRuleOp, mt::finish_counters), so the launches can be
// captured in a CUDA graph and replayed.
#include <pybind11/pybind11.h>

#include <type_traits>

#include "optim_args.cuh"
#include "optkern/rules/optim.hpp"
#include "optkern/signatures.hpp"

namespace optkern {
namespace {

using sig::Step;
using F = std::false_type;
using Tr = std::true_type;

// A call's step: its device buffers checked (after its lists), then one step
// of a rule per call.
class StepArgs {
 public:
  StepArgs(CallArgs& a, const Step& st, int n_counters) : a_(a), host_(st.host), n_(n_counters) {
    if (!st.counters.is_none()) counters_ = a.add_buffer(st.counters, "counters", n_counters, true);
    if (!st.lr_buffer.is_none()) lr_ = a.add_buffer(st.lr_buffer, "lr_buffer", 1, false);
    a.ready(/*always_launch=*/counters_ != nullptr);  // the counters advance even for empty lists
  }

  template <class T, class Rule> rules::Counters run(const typename Rule::Hyper& h) const {
    return a_.apply_rule<T>(mt::DeviceStep<Rule>{h, host_, counters_, n_, lr_});
  }

 private:
  const CallArgs& a_;
  rules::Counters host_;
  int n_;
  double* counters_ = nullptr;
  const double* lr_ = nullptr;
};

struct CudaOptim {
  static void sgd(py::object params, py::object grads, py::object bufs, const rules::SgdHyper& h, const Step& st) {
    CallArgs a(params, "params", true);
    a.add(grads, "grads", false);
    const bool mom = a.add(bufs, "momentum_buffers", true);
    const StepArgs s(a, st, 1);
    dispatch_float(a.dtype(), [&](auto z) {
      using T = decltype(z);
      if (mom) s.run<T, rules::Sgd<T, true>>(h);
      else s.run<T, rules::Sgd<T, false>>(h);
    });
  }

  static void adagrad(py::object params, py::object grads, py::object sums, const rules::AdagradHyper& h,
                      const Step& st) {
    CallArgs a(params, "params", true);
    a.add(grads, "grads", false);
    a.require(sums, "sums", true);
    const StepArgs s(a, st, 1);
    dispatch_float(a.dtype(), [&](auto z) {
      using T = decltype(z);
      s.run<T, rules::Adagrad<T>>(h);
    });
  }

  static void rmsprop(py::object params, py::object grads, py::object square_avgs, py::object grad_avgs,
                      py::object bufs, const rules::RMSpropHyper& h, const Step& st) {
    CallArgs a(params, "params", true);
    a.add(grads, "grads", false);
    a.require(square_avgs, "square_avgs", true);
    const bool centered = a.add(grad_avgs, "grad_avgs", true);
    const bool mom = a.add(bufs, "momentum_buffers", true);
    const StepArgs s(a, st, 1);
    dispatch_float(a.dtype(), [&](auto z) {
      using T = decltype(z);
      const auto go = [&](auto c, auto m) { s.run<T, rules::RMSprop<T, decltype(c)::value, decltype(m)::value>>(h); };
      if (centered && mom) go(Tr{}, Tr{});
      else if (centered) go(Tr{}, F{});
      else if (mom) go(F{}, Tr{});
      else go(F{}, F{});
    });
  }

  static void adadelta(py::object params, py::object grads, py::object square_avgs, py::object acc_deltas,
                       const rules::AdadeltaHyper& h, const Step& st) {
    CallArgs a(params, "params", true);
    a.add(grads, "grads", false);
    a.require(square_avgs, "square_avgs", true);
    a.require(acc_deltas, "acc_deltas", true);
    const StepArgs s(a, st, 1);
    dispatch_float(a.dtype(), [&](auto z) {
      using T = decltype(z);
      s.run<T, rules::Adadelta<T>>(h);
    });
  }

  static void adam(py::object params, py::object grads, py::object exp_avgs, py::object exp_avg_sqs,
                   py::object max_sqs, const rules::AdamHyper& h, const Step& st) {
    CallArgs a(params, "params", true);
    a.add(grads, "grads", false);
    a.require(exp_avgs, "exp_avgs", true);
    a.require(exp_avg_sqs, "exp_avg_sqs", true);
    const bool amsgrad = a.add(max_sqs, "max_exp_avg_sqs", true);
    const StepArgs s(a, st, 1);
    dispatch_float(a.dtype(), [&](auto z) {
      using T = decltype(z);
      if (amsgrad) s.run<T, rules::Adam<T, true>>(h);
      else s.run<T, rules::Adam<T, false>>(h);
    });
  }

  static double nadam(py::object params, py::object grads, py::object exp_avgs, py::object exp_avg_sqs,
                      const rules::NAdamHyper& h, const Step& st) {
    CallArgs a(params, "params", true);
    a.add(grads, "grads", false);
    a.require(exp_avgs, "exp_avgs", true);
    a.require(exp_avg_sqs, "exp_avg_sqs", true);
    const StepArgs s(a, st, 2);
    double mu_product = 0.0;
    dispatch_float(a.dtype(), [&](auto z) {
      using T = decltype(z);
      mu_product = s.run<T, rules::NAdam<T>>(h).mu_product;
    });
    return mu_product;
  }
};

}  // namespace

void register_optim(py::module_& m) { sig::optim<CudaOptim>(m); }

}  // namespace optkern
