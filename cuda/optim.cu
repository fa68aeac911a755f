// Optimizer steps on CuPy arrays: each binding checks its lists, builds the
// rule of rules/optim.hpp (the same struct the OpenMP loop uses) and runs it
// through the multi-tensor kernel (multi_tensor.cuh). Same names and
// signatures as optkern._cpu (see OPTIM_CONTRACT.md); nothing synchronizes.
//
// Capturable mode: `<name>_capturable(<same arguments>, hp)` takes a float64
// device array `hp` and reads the rule's step-dependent scalars from it when
// the kernel runs (the host values of those arguments are ignored), so the
// launch can be captured in a CUDA graph and replayed after `hp` is updated
// on the device. Layouts (hp[i], float64):
//     sgd_capturable       [lr, first (0.0 or 1.0)]
//     adagrad_capturable   [clr]
//     rmsprop_capturable   [lr]
//     adadelta_capturable  [lr]
//     adam_capturable      [step_size, bc2_sqrt, decay]
//     nadam_capturable     [c_grad, c_avg, bc2, decay]
// Values are rounded to the arrays' dtype exactly as the host arguments are,
// so a capturable step gives the same bits as the plain one.
#include <pybind11/pybind11.h>

#include <string>

#include "optim_args.cuh"
#include "optkern/rules/optim.hpp"

namespace optkern {
namespace {

using py::arg;

template <class R> struct Type { using type = R; };

// ---- step-dependent scalars read from hp (capturable mode) -------------------
struct NoFill {
  template <class R> __device__ void operator()(R&, const double*) const {}
};
struct SgdFill {
  template <class R> __device__ void operator()(R& r, const double* hp) const {
    r.lr = decltype(r.lr)(hp[0]);
    r.first = hp[1] != 0.0;
  }
};
struct AdagradFill {
  template <class R> __device__ void operator()(R& r, const double* hp) const { r.clr = decltype(r.clr)(hp[0]); }
};
struct LrFill {  // RMSprop, Adadelta
  template <class R> __device__ void operator()(R& r, const double* hp) const { r.lr = decltype(r.lr)(hp[0]); }
};
struct AdamFill {
  template <class R> __device__ void operator()(R& r, const double* hp) const {
    using T = decltype(r.eps);
    r.step_size = T(hp[0]);
    r.bc2_sqrt = T(hp[1]);
    r.decay = T(hp[2]);
  }
};
struct NAdamFill {
  template <class R> __device__ void operator()(R& r, const double* hp) const {
    using T = decltype(r.eps);
    r.c_grad = T(hp[0]);
    r.c_avg = T(hp[1]);
    r.bc2 = T(hp[2]);
    r.decay = T(hp[3]);
  }
};

// The hp buffer of a capturable call; the plain bindings pass a null handle
// (a None from Python is an error: "hp: expected a cupy.ndarray").
const double* hp_of(CallArgs& a, py::handle hp, int64_t n) {
  return hp ? a.add_buffer(hp, "hp", n, false) : nullptr;
}

// ---- bindings (hp is a null handle for the plain functions) -------------------

void sgd(py::object params, py::object grads, py::object bufs, double lr, double momentum, double dampening,
         double weight_decay, bool nesterov, bool maximize, bool first, bool textbook, py::object hp) {
  CallArgs a(params, "params", true);
  a.add(grads, "grads", false);
  const bool mom = a.add(bufs, "momentum_buffers", true);
  const double* h = hp_of(a, hp, 2);
  if (!a.ready()) return;
  dispatch_float(a.dtype(), [&](auto z) {
    using T = decltype(z);
    if (mom)
      a.apply_rule<T, SgdFill>(rules::Sgd<T, true>{T(lr), T(momentum), T(dampening), T(weight_decay), nesterov,
                                                   maximize, first, textbook}, h);
    else
      a.apply_rule<T, SgdFill>(rules::Sgd<T, false>{T(lr), T(momentum), T(dampening), T(weight_decay), nesterov,
                                                    maximize, first, textbook}, h);
  });
}

void adagrad(py::object params, py::object grads, py::object sums, double clr, double eps, double weight_decay,
             bool maximize, py::object hp) {
  CallArgs a(params, "params", true);
  a.add(grads, "grads", false);
  a.require(sums, "sums", true);
  const double* h = hp_of(a, hp, 1);
  if (!a.ready()) return;
  dispatch_float(a.dtype(), [&](auto z) {
    using T = decltype(z);
    a.apply_rule<T, AdagradFill>(rules::Adagrad<T>{T(clr), T(eps), T(weight_decay), maximize}, h);
  });
}

void rmsprop(py::object params, py::object grads, py::object square_avgs, py::object grad_avgs, py::object bufs,
             double lr, double alpha, double eps, double weight_decay, double momentum, bool nesterov,
             bool maximize, py::object hp) {
  CallArgs a(params, "params", true);
  a.add(grads, "grads", false);
  a.require(square_avgs, "square_avgs", true);
  const bool centered = a.add(grad_avgs, "grad_avgs", true);
  const bool mom = a.add(bufs, "momentum_buffers", true);
  const double* h = hp_of(a, hp, 1);
  if (!a.ready()) return;
  dispatch_float(a.dtype(), [&](auto z) {
    using T = decltype(z);
    const auto go = [&](auto tag) {
      using R = typename decltype(tag)::type;
      a.apply_rule<T, LrFill>(R{T(lr), T(alpha), T(eps), T(weight_decay), T(momentum), nesterov, maximize}, h);
    };
    if (centered && mom) go(Type<rules::RMSprop<T, true, true>>{});
    else if (centered) go(Type<rules::RMSprop<T, true, false>>{});
    else if (mom) go(Type<rules::RMSprop<T, false, true>>{});
    else go(Type<rules::RMSprop<T, false, false>>{});
  });
}

void adadelta(py::object params, py::object grads, py::object square_avgs, py::object acc_deltas, double lr,
              double rho, double eps, double weight_decay, bool maximize, py::object hp) {
  CallArgs a(params, "params", true);
  a.add(grads, "grads", false);
  a.require(square_avgs, "square_avgs", true);
  a.require(acc_deltas, "acc_deltas", true);
  const double* h = hp_of(a, hp, 1);
  if (!a.ready()) return;
  dispatch_float(a.dtype(), [&](auto z) {
    using T = decltype(z);
    a.apply_rule<T, LrFill>(rules::Adadelta<T>{T(lr), T(rho), T(eps), T(weight_decay), maximize}, h);
  });
}

void adam(py::object params, py::object grads, py::object exp_avgs, py::object exp_avg_sqs, py::object max_sqs,
          double step_size, double beta1, double beta2, double eps, double l2, double decay, double bc2_sqrt,
          bool maximize, py::object hp) {
  CallArgs a(params, "params", true);
  a.add(grads, "grads", false);
  a.require(exp_avgs, "exp_avgs", true);
  a.require(exp_avg_sqs, "exp_avg_sqs", true);
  const bool amsgrad = a.add(max_sqs, "max_exp_avg_sqs", true);
  const double* h = hp_of(a, hp, 3);
  if (!a.ready()) return;
  dispatch_float(a.dtype(), [&](auto z) {
    using T = decltype(z);
    if (amsgrad)
      a.apply_rule<T, AdamFill>(rules::Adam<T, true>{T(step_size), T(beta1), T(beta2), T(eps), T(l2), T(decay),
                                                     T(bc2_sqrt), maximize}, h);
    else
      a.apply_rule<T, AdamFill>(rules::Adam<T, false>{T(step_size), T(beta1), T(beta2), T(eps), T(l2), T(decay),
                                                      T(bc2_sqrt), maximize}, h);
  });
}

void nadam(py::object params, py::object grads, py::object exp_avgs, py::object exp_avg_sqs, double c_grad,
           double c_avg, double beta1, double beta2, double eps, double l2, double decay, double bc2, bool maximize,
           py::object hp) {
  CallArgs a(params, "params", true);
  a.add(grads, "grads", false);
  a.require(exp_avgs, "exp_avgs", true);
  a.require(exp_avg_sqs, "exp_avg_sqs", true);
  const double* h = hp_of(a, hp, 4);
  if (!a.ready()) return;
  dispatch_float(a.dtype(), [&](auto z) {
    using T = decltype(z);
    a.apply_rule<T, NAdamFill>(rules::NAdam<T>{T(c_grad), T(c_avg), T(beta1), T(beta2), T(eps), T(l2), T(decay),
                                               T(bc2), maximize}, h);
  });
}

}  // namespace

void register_optim(py::module_& m) {
  const char* cap = " Capturable variant: the same arguments plus `hp`, a float64 device array from which the kernel "
                    "reads the step-dependent scalars (layout in cuda/optim.cu); the host values of those arguments "
                    "are ignored.";

  const std::string sgd_doc =
      "In-place SGD step over lists of CuPy arrays (rules::Sgd): d = g (+ wd p, negated to maximize); with "
      "momentum_buffers b <- mu b + (1 - dampening) d (b <- d when first), d = d + mu b (nesterov) or b; "
      "p <- p - lr d. textbook=True uses v <- mu v - lr d, p <- p + v. Enqueued on CuPy's current stream.";
  m.def("sgd_", [](py::object p, py::object g, py::object b, double lr, double momentum, double dampening,
                   double weight_decay, bool nesterov, bool maximize, bool first, bool textbook) {
    sgd(p, g, b, lr, momentum, dampening, weight_decay, nesterov, maximize, first, textbook, py::object());
  }, sgd_doc.c_str(), arg("params"), arg("grads"), arg("momentum_buffers").none(true), arg("lr"), arg("momentum"),
        arg("dampening"), arg("weight_decay"), arg("nesterov"), arg("maximize"), arg("first"), arg("textbook"));
  m.def("sgd_capturable", &sgd, (sgd_doc + " hp = [lr, first (0.0/1.0)]." + cap).c_str(), arg("params"),
        arg("grads"), arg("momentum_buffers").none(true), arg("lr"), arg("momentum"), arg("dampening"),
        arg("weight_decay"), arg("nesterov"), arg("maximize"), arg("first"), arg("textbook"), arg("hp"));

  const std::string adagrad_doc =
      "In-place Adagrad step (rules::Adagrad): s <- s + g^2, p <- p - clr g / (sqrt(s) + eps), g including "
      "weight_decay p and the maximize sign; clr = lr / (1 + (t - 1) lr_decay) from the caller.";
  m.def("adagrad_", [](py::object p, py::object g, py::object s, double clr, double eps, double wd, bool maximize) {
    adagrad(p, g, s, clr, eps, wd, maximize, py::object());
  }, adagrad_doc.c_str(), arg("params"), arg("grads"), arg("sums"), arg("clr"), arg("eps"), arg("weight_decay"),
        arg("maximize"));
  m.def("adagrad_capturable", &adagrad, (adagrad_doc + " hp = [clr]." + cap).c_str(), arg("params"), arg("grads"),
        arg("sums"), arg("clr"), arg("eps"), arg("weight_decay"), arg("maximize"), arg("hp"));

  const std::string rmsprop_doc =
      "In-place RMSprop step (rules::RMSprop): v <- alpha v + (1 - alpha) g^2; with grad_avgs (centered) the "
      "denominator is sqrt(v - mean(g)^2) + eps; with momentum_buffers b <- mu b + g / avg, p <- p - lr b "
      "(nesterov: p <- p - lr (g / avg + mu b)); else p <- p - lr g / avg.";
  m.def("rmsprop_", [](py::object p, py::object g, py::object v, py::object ga, py::object b, double lr,
                       double alpha, double eps, double wd, double momentum, bool nesterov, bool maximize) {
    rmsprop(p, g, v, ga, b, lr, alpha, eps, wd, momentum, nesterov, maximize, py::object());
  }, rmsprop_doc.c_str(), arg("params"), arg("grads"), arg("square_avgs"), arg("grad_avgs").none(true),
        arg("momentum_buffers").none(true), arg("lr"), arg("alpha"), arg("eps"), arg("weight_decay"),
        arg("momentum"), arg("nesterov"), arg("maximize"));
  m.def("rmsprop_capturable", &rmsprop, (rmsprop_doc + " hp = [lr]." + cap).c_str(), arg("params"), arg("grads"),
        arg("square_avgs"), arg("grad_avgs").none(true), arg("momentum_buffers").none(true), arg("lr"),
        arg("alpha"), arg("eps"), arg("weight_decay"), arg("momentum"), arg("nesterov"), arg("maximize"),
        arg("hp"));

  const std::string adadelta_doc =
      "In-place Adadelta step (rules::Adadelta): v <- rho v + (1 - rho) g^2, d = sqrt(u + eps) / sqrt(v + eps) g, "
      "u <- rho u + (1 - rho) d^2, p <- p - lr d.";
  m.def("adadelta_", [](py::object p, py::object g, py::object v, py::object u, double lr, double rho, double eps,
                        double wd, bool maximize) { adadelta(p, g, v, u, lr, rho, eps, wd, maximize, py::object()); },
        adadelta_doc.c_str(), arg("params"), arg("grads"), arg("square_avgs"), arg("acc_deltas"), arg("lr"),
        arg("rho"), arg("eps"), arg("weight_decay"), arg("maximize"));
  m.def("adadelta_capturable", &adadelta, (adadelta_doc + " hp = [lr]." + cap).c_str(), arg("params"),
        arg("grads"), arg("square_avgs"), arg("acc_deltas"), arg("lr"), arg("rho"), arg("eps"),
        arg("weight_decay"), arg("maximize"), arg("hp"));

  const std::string adam_doc =
      "In-place Adam/AdamW/AMSGrad step (rules::Adam): p <- decay p; g <- g + l2 p; m <- lerp(m, g, 1 - beta1); "
      "v <- beta2 v + (1 - beta2) g^2 (vmax <- max(vmax, v) with max_exp_avg_sqs); "
      "p <- p - step_size m / (sqrt(v or vmax) / bc2_sqrt + eps).";
  m.def("adam_", [](py::object p, py::object g, py::object m1, py::object v, py::object vmax, double step_size,
                    double beta1, double beta2, double eps, double l2, double decay, double bc2_sqrt, bool maximize) {
    adam(p, g, m1, v, vmax, step_size, beta1, beta2, eps, l2, decay, bc2_sqrt, maximize, py::object());
  }, adam_doc.c_str(), arg("params"), arg("grads"), arg("exp_avgs"), arg("exp_avg_sqs"),
        arg("max_exp_avg_sqs").none(true), arg("step_size"), arg("beta1"), arg("beta2"), arg("eps"), arg("l2"),
        arg("decay"), arg("bc2_sqrt"), arg("maximize"));
  m.def("adam_capturable", &adam, (adam_doc + " hp = [step_size, bc2_sqrt, decay]." + cap).c_str(), arg("params"),
        arg("grads"), arg("exp_avgs"), arg("exp_avg_sqs"), arg("max_exp_avg_sqs").none(true), arg("step_size"),
        arg("beta1"), arg("beta2"), arg("eps"), arg("l2"), arg("decay"), arg("bc2_sqrt"), arg("maximize"),
        arg("hp"));

  const std::string nadam_doc =
      "In-place NAdam step (rules::NAdam): p <- decay p; g <- g + l2 p; m, v as Adam; "
      "denom = sqrt(v / bc2) + eps; p <- p + c_grad g / denom + c_avg m / denom.";
  m.def("nadam_", [](py::object p, py::object g, py::object m1, py::object v, double c_grad, double c_avg,
                     double beta1, double beta2, double eps, double l2, double decay, double bc2, bool maximize) {
    nadam(p, g, m1, v, c_grad, c_avg, beta1, beta2, eps, l2, decay, bc2, maximize, py::object());
  }, nadam_doc.c_str(), arg("params"), arg("grads"), arg("exp_avgs"), arg("exp_avg_sqs"), arg("c_grad"),
        arg("c_avg"), arg("beta1"), arg("beta2"), arg("eps"), arg("l2"), arg("decay"), arg("bc2"), arg("maximize"));
  m.def("nadam_capturable", &nadam, (nadam_doc + " hp = [c_grad, c_avg, bc2, decay]." + cap).c_str(),
        arg("params"), arg("grads"), arg("exp_avgs"), arg("exp_avg_sqs"), arg("c_grad"), arg("c_avg"),
        arg("beta1"), arg("beta2"), arg("eps"), arg("l2"), arg("decay"), arg("bc2"), arg("maximize"), arg("hp"));
}

}  // namespace optkern
