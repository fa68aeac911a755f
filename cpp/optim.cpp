// Optimizer steps on lists of NumPy arrays: one binding per optimizer, each a
// gather (checks, pointers) + a choice of rule variant + the one multi-tensor
// loop (multi_tensor.hpp). The math is in rules/optim.hpp, shared with CUDA.
// optkern._cuda exposes the same names and signatures.
#include <pybind11/pybind11.h>

#include <cmath>

#include "multi_tensor.hpp"
#include "optkern/rules/optim.hpp"

namespace optkern {
namespace py = pybind11;
using py::arg;

namespace {

// Gathers params, grads and the state lists in params' dtype, then calls
// body(T{}, lists) for T = float or double.
template <class Body>
void step(py::handle params, py::handle grads, std::initializer_list<StateArg> states, Body&& body) {
  const py::dtype dt = list_dtype(params, "params");
  const Lists L = gather_lists(params, grads, states, dt);
  dispatch_float(dt, [&](auto t) { body(t, L); });
}

bool present(py::handle h) { return !h.is_none(); }

void sgd(py::handle params, py::handle grads, py::handle bufs, double lr, double momentum, double dampening,
         double weight_decay, bool nesterov, bool maximize, bool first, bool textbook) {
  step(params, grads, {{"momentum_buffers", bufs, true}}, [&](auto t, const Lists& L) {
    using T = decltype(t);
    if (present(bufs))
      apply_rule<T>(rules::Sgd<T, true>{T(lr), T(momentum), T(dampening), T(weight_decay), nesterov, maximize,
                                        first, textbook},
                    L);
    else
      apply_rule<T>(rules::Sgd<T, false>{T(lr), T(momentum), T(dampening), T(weight_decay), nesterov, maximize,
                                         first, textbook},
                    L);
  });
}

void adagrad(py::handle params, py::handle grads, py::handle sums, double clr, double eps, double weight_decay,
             bool maximize) {
  step(params, grads, {{"sums", sums, false}}, [&](auto t, const Lists& L) {
    using T = decltype(t);
    apply_rule<T>(rules::Adagrad<T>{T(clr), T(eps), T(weight_decay), maximize}, L);
  });
}

template <class T, bool Centered, bool Momentum>
void rmsprop_variant(const Lists& L, double lr, double alpha, double eps, double wd, double momentum,
                     bool nesterov, bool maximize) {
  apply_rule<T>(rules::RMSprop<T, Centered, Momentum>{T(lr), T(alpha), T(eps), T(wd), T(momentum), nesterov,
                                                      maximize},
                L);
}

void rmsprop(py::handle params, py::handle grads, py::handle square_avgs, py::handle grad_avgs,
             py::handle momentum_buffers, double lr, double alpha, double eps, double weight_decay,
             double momentum, bool nesterov, bool maximize) {
  step(params, grads,
       {{"square_avgs", square_avgs, false}, {"grad_avgs", grad_avgs, true}, {"momentum_buffers", momentum_buffers, true}},
       [&](auto t, const Lists& L) {
         using T = decltype(t);
         const bool c = present(grad_avgs), m = present(momentum_buffers);
         const auto run = [&](auto centered, auto mom) {
           rmsprop_variant<T, decltype(centered)::value, decltype(mom)::value>(L, lr, alpha, eps, weight_decay,
                                                                             momentum, nesterov, maximize);
         };
         using F = std::false_type;
         using Tr = std::true_type;
         if (c && m) run(Tr{}, Tr{});
         else if (c) run(Tr{}, F{});
         else if (m) run(F{}, Tr{});
         else run(F{}, F{});
       });
}

void adadelta(py::handle params, py::handle grads, py::handle square_avgs, py::handle acc_deltas, double lr,
              double rho, double eps, double weight_decay, bool maximize) {
  step(params, grads, {{"square_avgs", square_avgs, false}, {"acc_deltas", acc_deltas, false}},
       [&](auto t, const Lists& L) {
         using T = decltype(t);
         apply_rule<T>(rules::Adadelta<T>{T(lr), T(rho), T(eps), T(weight_decay), maximize}, L);
       });
}

void adam(py::handle params, py::handle grads, py::handle exp_avgs, py::handle exp_avg_sqs,
          py::handle max_exp_avg_sqs, double step_size, double beta1, double beta2, double eps, double l2,
          double decay, double bc2_sqrt, bool maximize) {
  step(params, grads,
       {{"exp_avgs", exp_avgs, false}, {"exp_avg_sqs", exp_avg_sqs, false}, {"max_exp_avg_sqs", max_exp_avg_sqs, true}},
       [&](auto t, const Lists& L) {
         using T = decltype(t);
         if (present(max_exp_avg_sqs))
           apply_rule<T>(rules::Adam<T, true>{T(step_size), T(beta1), T(beta2), T(eps), T(l2), T(decay),
                                              T(bc2_sqrt), maximize},
                         L);
         else
           apply_rule<T>(rules::Adam<T, false>{T(step_size), T(beta1), T(beta2), T(eps), T(l2), T(decay),
                                               T(bc2_sqrt), maximize},
                         L);
       });
}

void nadam(py::handle params, py::handle grads, py::handle exp_avgs, py::handle exp_avg_sqs, double c_grad,
           double c_avg, double beta1, double beta2, double eps, double l2, double decay, double bc2,
           bool maximize) {
  step(params, grads, {{"exp_avgs", exp_avgs, false}, {"exp_avg_sqs", exp_avg_sqs, false}},
       [&](auto t, const Lists& L) {
         using T = decltype(t);
         apply_rule<T>(
             rules::NAdam<T>{T(c_grad), T(c_avg), T(beta1), T(beta2), T(eps), T(l2), T(decay), T(bc2), maximize}, L);
       });
}

// AdaGrad-Norm: b^2 += ||g_eff||^2 (deterministic float64 sum over every
// array), then a plain SGD step with lr / b.
void adagrad_norm(py::handle params, py::handle grads, py::handle b_sq, double lr, double weight_decay,
                  bool maximize) {
  const py::dtype dt = list_dtype(params, "params");
  Lists L = gather_lists(params, grads, {}, dt);
  double* b2 = scalar_buffer(b_sq, "b_sq", true);
  if (!(std::isfinite(*b2) && *b2 >= 0.0))  // would turn every parameter into NaN
    throw py::value_error("b_sq: must hold a finite b^2 >= 0 (start at b0^2 > 0), got " + std::to_string(*b2));
  const ArrayList b2_list = scalar_as_list(b2, size_t(dt.itemsize()));
  check_no_overlap({{"params", &L.p, true}, {"grads", &L.g, false}, {"b_sq", &b2_list, true}},
                   size_t(dt.itemsize()));
  dispatch_float(dt, [&](auto t) {
    using T = decltype(t);
    const T wd = T(weight_decay);
    const double sq = sum_lists<T>(
        [wd, maximize](T p, T g) {
          const double e = double(rules::effective_grad(p, g, wd, maximize));
          return e * e;
        },
        L.p, L.g);
    *b2 += sq;
    const double scale = rules::adagrad_norm_rate(lr, *b2);
    apply_rule<T>(rules::Sgd<T, false>{T(scale), T(0), T(0), wd, false, maximize, false, false}, L);
  });
}

}  // namespace

void register_optim_bench(py::module_& m);  // optim_bench.cpp

void register_optim(py::module_& m) {
  m.def("sgd_", &sgd,
        "SGD step in place (torch.optim.SGD semantics; textbook=True: v <- mu v - lr g, p <- p + v). "
        "momentum_buffers=None runs plain SGD; first=True initialises the buffers from this step's gradient.",
        arg("params"), arg("grads"), arg("momentum_buffers").none(true), arg("lr"), arg("momentum"),
        arg("dampening"), arg("weight_decay"), arg("nesterov"), arg("maximize"), arg("first"), arg("textbook"));
  m.def("adagrad_", &adagrad, "Adagrad step in place with the decayed rate clr = lr / (1 + (t - 1) lr_decay).",
        arg("params"), arg("grads"), arg("sums"), arg("clr"), arg("eps"), arg("weight_decay"), arg("maximize"));
  m.def("rmsprop_", &rmsprop,
        "RMSprop step in place; grad_avgs given = centered, momentum_buffers given = momentum (nesterov: "
        "Goodfellow Alg. 8.6 in look-ahead form).",
        arg("params"), arg("grads"), arg("square_avgs"), arg("grad_avgs").none(true),
        arg("momentum_buffers").none(true), arg("lr"), arg("alpha"), arg("eps"), arg("weight_decay"),
        arg("momentum"), arg("nesterov"), arg("maximize"));
  m.def("adadelta_", &adadelta, "Adadelta step in place.", arg("params"), arg("grads"), arg("square_avgs"),
        arg("acc_deltas"), arg("lr"), arg("rho"), arg("eps"), arg("weight_decay"), arg("maximize"));
  m.def("adam_", &adam,
        "Adam/AdamW step in place: step_size = lr / bc1, l2 = coupled decay, decay = 1 - lr wd (decoupled); "
        "max_exp_avg_sqs given = AMSGrad.",
        arg("params"), arg("grads"), arg("exp_avgs"), arg("exp_avg_sqs"), arg("max_exp_avg_sqs").none(true),
        arg("step_size"), arg("beta1"), arg("beta2"), arg("eps"), arg("l2"), arg("decay"), arg("bc2_sqrt"),
        arg("maximize"));
  m.def("nadam_", &nadam,
        "NAdam step in place: p += c_grad g / d + c_avg m / d with d = sqrt(v / bc2) + eps.", arg("params"),
        arg("grads"), arg("exp_avgs"), arg("exp_avg_sqs"), arg("c_grad"), arg("c_avg"), arg("beta1"),
        arg("beta2"), arg("eps"), arg("l2"), arg("decay"), arg("bc2"), arg("maximize"));
  m.def("adagrad_norm_", &adagrad_norm,
        "AdaGrad-Norm step in place: b_sq[0] += ||g_eff||^2 over all arrays, p -= lr / sqrt(b_sq[0]) g_eff.",
        arg("params"), arg("grads"), arg("b_sq"), arg("lr"), arg("weight_decay"), arg("maximize"));
  register_optim_bench(m);
}

}  // namespace optkern
