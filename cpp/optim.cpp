// Optimizer steps on lists of NumPy arrays: each binding gathers and checks its
// lists, picks the rule variant for the state lists present, builds the rule
// from its hyper-parameters and step count (Rule::at, rules/optim.hpp) and runs
// the one multi-tensor loop (multi_tensor.hpp). The Python signatures are in
// signatures.hpp, shared with optkern._cuda.
//
// The capturable variants run here too, on NumPy "device" buffers: they read
// the step counters and lr from float64 arrays, compute the scalars with the
// same Rule::at the CUDA kernel calls and advance the counters after the
// update, so the CPU tests exercise capturable mode's semantics.
#include <pybind11/pybind11.h>

#include <cmath>

#include "multi_tensor.hpp"
#include "optkern/rules/optim.hpp"
#include "optkern/signatures.hpp"

namespace optkern {
namespace py = pybind11;

namespace {

using sig::Step;
using F = std::false_type;
using Tr = std::true_type;

// A capturable call's buffers: counters (n elements: steps taken [, mu_product]) and lr.
struct HostBuffers {
  double* counters = nullptr;
  const double* lr = nullptr;
  int64_t n = 0;
  std::vector<ArrayList> lists;  // for the aliasing check, in units of the arrays' itemsize
  std::vector<NamedList> named;

  HostBuffers(const HostBuffers&) = delete;  // `named` points into `lists`
  HostBuffers(const Step& st, int64_t n_counters, const py::dtype& dt) : n(n_counters) {
    lists.reserve(2);
    if (!st.counters.is_none()) {
      counters = scalar_buffer(st.counters, "counters", true, n);
      lists.push_back(scalar_as_list(counters, size_t(dt.itemsize()), n));
      named.push_back({"counters", &lists.back(), true});
    }
    if (!st.lr_buffer.is_none()) {
      lr = scalar_buffer(st.lr_buffer, "lr_buffer", false);
      lists.push_back(scalar_as_list(lr, size_t(dt.itemsize())));
      named.push_back({"lr_buffer", &lists.back(), false});
    }
  }

  // The counters this step runs with.
  rules::Counters counters_at(const rules::Counters& host) const {
    if (!counters) return host;
    return {counters[0] + 1.0, n > 1 ? counters[1] : 1.0};
  }
};

// Gathers the lists (and a capturable call's buffers), then calls
// body(T{}, lists, buffers) for T = float or double.
template <class Body>
void step(py::handle params, py::handle grads, std::initializer_list<StateArg> states, const Step& st,
          int64_t n_counters, Body&& body) {
  const py::dtype dt = list_dtype(params, "params");
  const HostBuffers B(st, n_counters, dt);
  const Lists L = gather_lists(params, grads, states, dt, B.named);
  dispatch_float(dt, [&](auto t) { body(t, L, B); });
}

// One step of Rule on the lists; returns the counters after it.
template <class T, class Rule>
rules::Counters run(const Lists& L, const HostBuffers& B, typename Rule::Hyper h, const rules::Counters& host) {
  if (B.lr) h.lr = B.lr[0];
  const rules::Counters c = B.counters_at(host);
  const Rule rule = Rule::at(h, c);
  apply_rule<T>(rule, L);
  const rules::Counters next = rules::advance(rule, c);
  if (B.counters) {
    B.counters[0] = next.t;
    if (B.n > 1) B.counters[1] = next.mu_product;
  }
  return next;
}

bool present(py::handle h) { return !h.is_none(); }

struct CpuOptim {
  static void sgd(py::handle params, py::handle grads, py::handle bufs, const rules::SgdHyper& h, const Step& st) {
    step(params, grads, {{"momentum_buffers", bufs, true}}, st, 1, [&](auto t, const Lists& L, const HostBuffers& B) {
      using T = decltype(t);
      if (present(bufs)) run<T, rules::Sgd<T, true>>(L, B, h, st.host);
      else run<T, rules::Sgd<T, false>>(L, B, h, st.host);
    });
  }

  static void adagrad(py::handle params, py::handle grads, py::handle sums, const rules::AdagradHyper& h,
                      const Step& st) {
    step(params, grads, {{"sums", sums, false}}, st, 1, [&](auto t, const Lists& L, const HostBuffers& B) {
      using T = decltype(t);
      run<T, rules::Adagrad<T>>(L, B, h, st.host);
    });
  }

  static void rmsprop(py::handle params, py::handle grads, py::handle square_avgs, py::handle grad_avgs,
                      py::handle momentum_buffers, const rules::RMSpropHyper& h, const Step& st) {
    step(params, grads,
         {{"square_avgs", square_avgs, false},
          {"grad_avgs", grad_avgs, true},
          {"momentum_buffers", momentum_buffers, true}},
         st, 1, [&](auto t, const Lists& L, const HostBuffers& B) {
           using T = decltype(t);
           const auto go = [&](auto centered, auto mom) {
             run<T, rules::RMSprop<T, decltype(centered)::value, decltype(mom)::value>>(L, B, h, st.host);
           };
           const bool c = present(grad_avgs), m = present(momentum_buffers);
           if (c && m) go(Tr{}, Tr{});
           else if (c) go(Tr{}, F{});
           else if (m) go(F{}, Tr{});
           else go(F{}, F{});
         });
  }

  static void adadelta(py::handle params, py::handle grads, py::handle square_avgs, py::handle acc_deltas,
                       const rules::AdadeltaHyper& h, const Step& st) {
    step(params, grads, {{"square_avgs", square_avgs, false}, {"acc_deltas", acc_deltas, false}}, st, 1,
         [&](auto t, const Lists& L, const HostBuffers& B) {
           using T = decltype(t);
           run<T, rules::Adadelta<T>>(L, B, h, st.host);
         });
  }

  static void adam(py::handle params, py::handle grads, py::handle exp_avgs, py::handle exp_avg_sqs,
                   py::handle max_exp_avg_sqs, const rules::AdamHyper& h, const Step& st) {
    step(params, grads,
         {{"exp_avgs", exp_avgs, false},
          {"exp_avg_sqs", exp_avg_sqs, false},
          {"max_exp_avg_sqs", max_exp_avg_sqs, true}},
         st, 1, [&](auto t, const Lists& L, const HostBuffers& B) {
           using T = decltype(t);
           if (present(max_exp_avg_sqs)) run<T, rules::Adam<T, true>>(L, B, h, st.host);
           else run<T, rules::Adam<T, false>>(L, B, h, st.host);
         });
  }

  static double nadam(py::handle params, py::handle grads, py::handle exp_avgs, py::handle exp_avg_sqs,
                      const rules::NAdamHyper& h, const Step& st) {
    double mu_product = 0.0;
    step(params, grads, {{"exp_avgs", exp_avgs, false}, {"exp_avg_sqs", exp_avg_sqs, false}}, st, 2,
         [&](auto t, const Lists& L, const HostBuffers& B) {
           using T = decltype(t);
           mu_product = run<T, rules::NAdam<T>>(L, B, h, st.host).mu_product;
         });
    return mu_product;
  }
};

// AdaGrad-Norm: b^2 += ||g_eff||^2 (deterministic float64 sum over every
// array), then a plain SGD step with lr / b.
void adagrad_norm(py::handle params, py::handle grads, py::handle b_sq, const rules::AdagradNormHyper& h) {
  const py::dtype dt = list_dtype(params, "params");
  double* b2 = scalar_buffer(b_sq, "b_sq", true);
  const ArrayList b2_list = scalar_as_list(b2, size_t(dt.itemsize()));
  const Lists L = gather_lists(params, grads, {}, dt, {{"b_sq", &b2_list, true}});
  if (!(std::isfinite(*b2) && *b2 >= 0.0))  // would turn every parameter into NaN
    throw py::value_error("b_sq: must hold a finite b^2 >= 0 (start at b0^2 > 0), got " + std::to_string(*b2));
  dispatch_float(dt, [&](auto t) {
    using T = decltype(t);
    const T wd = T(h.weight_decay);
    const bool maximize = h.maximize;
    const double sq = sum_lists<T>(
        [wd, maximize](T p, T g) {
          const double e = double(rules::effective_grad(p, g, wd, maximize));
          return e * e;
        },
        L.p, L.g);
    *b2 += sq;
    apply_rule<T>(rules::adagrad_norm_at<T>(h, *b2), L);
  });
}

}  // namespace

void register_optim(py::module_& m) {
  sig::optim<CpuOptim>(m);
  sig::adagrad_norm(m, &adagrad_norm);
}

}  // namespace optkern
