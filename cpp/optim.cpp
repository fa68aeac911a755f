// Optimizer steps on lists of NumPy arrays: one generic step for every optimizer
// described in signatures_optim.hpp (which also makes the Python signatures, shared with
// optkern._cuda) gathers and checks its lists, picks the rule variant for the state
// lists present, builds the rule from its hyper-parameters and step count (Rule::at,
// rules/optim.hpp) and runs the one multi-tensor loop (multi_tensor.hpp).
//
// The capturable variants run here too, on NumPy "device" buffers: they read
// the step counters and lr from float64 arrays, compute the scalars with the
// same Rule::at the CUDA kernel calls and advance the counters after the
// update, so the CPU tests exercise capturable mode's semantics.
#include <pybind11/pybind11.h>

#include <array>
#include <cmath>

#include "multi_tensor.hpp"
#include "optkern/rules/optim.hpp"
#include "optkern/signatures_optim.hpp"

namespace optkern {
namespace py = pybind11;

namespace {

using sig::Step;

// A capturable call's buffers: counters (n elements: steps taken [, mu_product]), lr and
// GradScaler's found_inf flag (float32).
struct HostBuffers {
  double* counters = nullptr;
  const double* lr = nullptr;
  const float* found_inf = nullptr;
  int64_t n = 0;
  std::vector<ArrayList> lists;  // for the aliasing check, in units of the arrays' itemsize
  std::vector<NamedList> named;

  HostBuffers(const HostBuffers&) = delete;  // `named` points into `lists`
  HostBuffers(const Step& st, int64_t n_counters, const py::dtype& dt) : n(n_counters) {
    lists.reserve(3);
    if (!st.counters.is_none()) {
      counters = scalar_buffer(st.counters, "counters", true, n);
      lists.push_back(scalar_as_list(counters, size_t(dt.itemsize()), n));
      named.push_back({"counters", &lists.back(), true, true, size_t(dt.itemsize())});
    }
    if (!st.lr_buffer.is_none()) {
      lr = scalar_buffer(st.lr_buffer, "lr_buffer", false);
      lists.push_back(scalar_as_list(lr, size_t(dt.itemsize())));
      named.push_back({"lr_buffer", &lists.back(), false, true, size_t(dt.itemsize())});
    }
    if (!st.found_inf.is_none()) {
      const py::array a = check_array(st.found_inf, "found_inf", py::dtype::of<float>(), false);
      check_size("found_inf", 1, int64_t(a.size()));
      found_inf = static_cast<const float*>(a.data());
      ArrayList l;
      l.data.push_back(reinterpret_cast<char*>(const_cast<float*>(found_inf)));
      l.size.push_back(1);
      lists.push_back(l);
      named.push_back({"found_inf", &lists.back(), false, true, 4});
    }
  }

  // GradScaler found an inf or NaN: the step writes nothing.
  bool skipped() const { return found_inf && found_inf[0] != 0.0f; }

  // The counters this step runs with.
  rules::Counters counters_at(const rules::Counters& host) const {
    if (!counters) return host;
    return {counters[0] + 1.0, n > 1 ? counters[1] : 1.0};
  }
};

// One step of Rule on the lists; returns the counters after it.
template <class T, class Rule>
rules::Counters run(const Lists& L, const HostBuffers& B, typename Rule::Hyper h, const rules::Counters& host) {
  if (B.skipped()) return host;  // nothing written, the counters as they were
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

struct CpuOptim {
  // The step of every optimizer (its description D: signatures_optim.hpp): gathers and checks the
  // lists (and a capturable call's buffers), picks the rule variant for the state lists
  // present and runs it; returns the counters after the step.
  template <class D, size_t N>
  static rules::Counters step(py::handle params, py::handle grads, const std::array<py::object, N>& lists,
                              const typename D::Hyper& h, const Step& st) {
    std::array<StateArg, N> states;
    bool present[N];
    for (size_t k = 0; k < N; ++k) {
      states[k] = {D::states[k].name, lists[k], D::states[k].optional};
      present[k] = !lists[k].is_none();
    }
    const py::dtype dt = list_dtype(params, "params");
    const HostBuffers B(st, sig::n_device_counters<D>(), dt);
    const Lists L = gather_lists(params, grads, states.data(), states.data() + N, dt, B.named);
    rules::Counters next = st.host;
    dispatch_float(dt, [&](auto t) {
      using T = decltype(t);
      sig::check_in_dtype<D>(st, sizeof(T), L.count());  // (the lists checked, nothing written yet)
      if (B.lr) sig::check_lr_buffer<D>(*B.lr, st, sizeof(T), L.count());
      if (B.counters) sig::check_counters<D>(B.counters, h);
      sig::with_rule<D, T>(present, [&](auto rule) { next = run<T, typename decltype(rule)::type>(L, B, h, st.host); });
    });
    return next;
  }
};

// AdaGrad-Norm: b^2 += ||g_eff||^2 (deterministic float64 sum over every
// array), then a plain SGD step with lr / b.
void adagrad_norm(py::handle params, py::handle grads, py::handle b_sq, const rules::AdagradNormHyper& h) {
  const py::dtype dt = list_dtype(params, "params");
  double* b2 = scalar_buffer(b_sq, "b_sq", true);
  const ArrayList b2_list = scalar_as_list(b2, size_t(dt.itemsize()));
  const Lists L = gather_lists(params, grads, {}, dt, {{"b_sq", &b2_list, true, true, size_t(dt.itemsize())}});
  sig::check_adagrad_norm_in(h, size_t(dt.itemsize()));
  if (!(std::isfinite(*b2) && *b2 >= 0.0))  // would turn every parameter into NaN
    throw py::value_error("b_sq: must hold a finite b^2 >= 0 (start at b0^2 > 0), got " + checks::repr(*b2));
  dispatch_float(dt, [&](auto t) {
    using T = decltype(t);
    const T wd = T(h.weight_decay);
    const bool maximize = h.maximize;
    const double sq = sum_lists<T>(
        [wd, maximize](T p, T g) {
          return Square{double(rules::effective_grad(p, g, wd, maximize))};
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
