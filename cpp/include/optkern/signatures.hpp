// The Python-visible signatures of the native functions that optkern._cpu and
// optkern._cuda both export: names, argument names, defaults and docstrings
// written once. Each module passes its own implementations, so the two
// cannot drift apart.
#pragma once
#include <pybind11/pybind11.h>

#include <cmath>
#include <string>
#include <tuple>

#include "optkern/rules/activation.hpp"
#include "optkern/rules/optim.hpp"

namespace optkern {
namespace sig {
namespace py = pybind11;
using py::arg;

// The activation named by the `kind` argument of activation_fwd.
inline rules::Act parse_activation(const std::string& k) {
  static const char* names[rules::kNumAct] = {"identity", "tanh", "relu", "gelu", "sigmoid", "softplus"};
  for (int i = 0; i < rules::kNumAct; ++i)
    if (k == names[i]) return rules::Act(i);
  throw py::value_error("kind: unknown activation '" + k +
                        "' (expected identity, tanh, relu, gelu, sigmoid or softplus)");
}

// The scalar arguments of softmax_xent_fwd / softmax_xent_rop (the R-operator has no smoothing).
inline void check_xent_args(double smoothing, double penalty, double scale) {
  if (!(smoothing >= 0.0 && smoothing <= 1.0))
    throw py::value_error("label_smoothing: must be in [0, 1], got " + std::to_string(smoothing));
  if (!std::isfinite(penalty)) throw py::value_error("confidence_penalty: must be finite");
  if (!std::isfinite(scale)) throw py::value_error("scale: must be finite");
}

template <class Act, class Fwd, class Rop>
void nn(py::module_& m, Act activation_fwd, Fwd softmax_xent_fwd, Rop softmax_xent_rop) {
  m.def("activation_fwd", activation_fwd, arg("kind"), arg("z"), arg("a"), arg("d1") = py::none(),
        arg("d2") = py::none(), "a = f(z), d1 = f'(z), d2 = f''(z) in one pass (d1, d2 optional).");
  m.def("softmax_xent_fwd", softmax_xent_fwd, arg("logits"), arg("labels"), arg("loss"), arg("logp") = py::none(),
        arg("dlogits") = py::none(), arg("label_smoothing") = 0.0, arg("confidence_penalty") = 0.0,
        arg("scale") = 1.0, "Per-row softmax cross-entropy loss; optionally log-probs and scale * dloss/dlogits.");
  m.def("softmax_xent_rop", softmax_xent_rop, arg("logp"), arg("r"), arg("out"), arg("confidence_penalty") = 0.0,
        arg("scale") = 1.0, "out = scale * (Hessian of the row loss w.r.t. logits) @ r, given saved log-probs.");
}

template <class Fwd, class Bwd> void norm_rows(py::module_& m, Fwd row_norm_forward, Bwd row_norm_backward) {
  m.def("row_norm_forward", row_norm_forward, arg("x"), arg("weight"), arg("bias"), arg("out"), arg("mean"),
        arg("rstd"), arg("rows"), arg("groups"), arg("group_channels"), arg("spatial"), arg("eps"), arg("rms"),
        "Layer / group / instance / RMS norm forward over rows of x (see cpp/norm_rows.cpp for the layout).");
  m.def("row_norm_backward", row_norm_backward, arg("dy"), arg("x"), arg("weight"), arg("mean"), arg("rstd"),
        arg("dx"), arg("dweight"), arg("dbias"), arg("rows"), arg("groups"), arg("group_channels"), arg("spatial"),
        arg("rms"), "Backward of row_norm_forward: dx, and dweight / dbias when given.");
}

template <class Stats, class Fwd, class Bwd>
void norm_channels(py::module_& m, Stats channel_stats, Fwd channel_norm_forward, Bwd channel_norm_backward) {
  m.def("channel_stats", channel_stats, arg("x"), arg("mean"), arg("rstd"), arg("var"), arg("N"), arg("C"),
        arg("S"), arg("eps"),
        "Per-channel mean, rstd = 1 / sqrt(biased variance + eps) and unbiased variance (for running "
        "statistics) of x viewed as (N, C, S), all from the same merged moments.");
  m.def("channel_norm_forward", channel_norm_forward, arg("x"), arg("mean"), arg("rstd"), arg("weight"),
        arg("bias"), arg("out"), arg("N"), arg("C"), arg("S"),
        "out = weight[c] (x - mean[c]) rstd[c] + bias[c] for x viewed as (N, C, S).");
  m.def("channel_norm_backward", channel_norm_backward, arg("dy"), arg("x"), arg("mean"), arg("rstd"),
        arg("weight"), arg("dx"), arg("dweight"), arg("dbias"), arg("N"), arg("C"), arg("S"), arg("training"),
        "Batch-norm backward: dx (batch statistics when training, fixed ones otherwise), dweight, dbias.");
}

template <class Fwd, class Bwd> void norm_weight(py::module_& m, Fwd weight_norm_forward, Bwd weight_norm_backward) {
  m.def("weight_norm_forward", weight_norm_forward, arg("v"), arg("g"), arg("out"), arg("norm"), arg("rows"),
        arg("M"), "out[r] = g[r] v[r] / ||v[r]|| for v viewed as (rows, M); norm[r] = ||v[r]||.");
  m.def("weight_norm_backward", weight_norm_backward, arg("dw"), arg("v"), arg("g"), arg("norm"), arg("dv"),
        arg("dg"), arg("rows"), arg("M"), "Gradients of weight_norm_forward with respect to v and g.");
}

template <class Fwd, class Bwd> void norm_rop(py::module_& m, Fwd norm_rop_fwd, Bwd norm_rop_bwd) {
  m.def("norm_rop_fwd", norm_rop_fwd, arg("h"), arg("mean"), arg("rstd"), arg("rh"), arg("weight"),
        arg("vweight"), arg("vbias"), arg("ry"), arg("rxhat"), arg("m_xrh"), arg("axis"),
        "R-forward of batch norm (axis 0) / layer norm (axis 1) on (N, D): R{y}, R{xhat}, mean(xhat R{h}).");
  m.def("norm_rop_bwd", norm_rop_bwd, arg("h"), arg("mean"), arg("rstd"), arg("dy"), arg("rdy"), arg("weight"),
        arg("vweight"), arg("rxhat"), arg("m_xrh"), arg("dh"), arg("rdh"), arg("rdweight"), arg("rdbias"),
        arg("axis"), "Backward and its R-operator: dh, R{dh}, R{dweight}, R{dbias}.");
}

template <class Orth> void linalg(py::module_& m, Orth lanczos_orthogonalize) {
  m.def("lanczos_orthogonalize_", lanczos_orthogonalize, arg("Q"), arg("k"), arg("w"), arg("coeffs"),
        "Orthogonalize w against rows Q[:k] twice (CGS2), normalize it in place and return its norm "
        "before normalization (w is left unscaled when the norm is 0). coeffs[:k] (float64) receives "
        "the total projection coefficients Q[:k] w of both passes. Deterministic (any thread count; "
        "the same bits run to run on a GPU).");
}

// ---- optimizers -------------------------------------------------------------------
// Each optimizer `<name>_(params, grads, <state lists>, <hyper-parameters>[, step])` and its
// `<name>_capturable(<the same>, counters, lr_buffer)`. A module implements
//     Impl::<name>(params, grads, <state lists>, const rules::<Name>Hyper&, const Step&)
// and the functions below turn the Python arguments into those structs.

// How a call counts steps: plain calls take the step from the host; capturable
// ones (counters not None) read it from a float64 array on the arrays' device,
// [steps taken] (NAdam: [steps taken, mu_product]), and advance it there after
// the update; lr_buffer (None or one float64 element there) replaces the host lr.
struct Step {
  rules::Counters host;
  py::object counters, lr_buffer;  // None in plain calls
  bool capturable() const { return !counters.is_none() || !lr_buffer.is_none(); }
};

// `plain(body)` / `capturable(body)`: the Python-facing callable of the plain and the
// capturable variant, both calling body(Step-less arguments..., dev) with the device
// buffers (None in a plain call).
template <class... A> struct Args {
  template <class F> static auto plain(F f) {
    return [f](A... a) { return f(py::none(), py::none(), a...); };
  }
  template <class F> static auto capturable(F f) {
    return [f](A... a, py::object counters, py::object lr_buffer) { return f(counters, lr_buffer, a...); };
  }
};

inline const char* const kCapturableDoc =
    " Capturable variant: the same arguments plus `counters`, a float64 array on the arrays' device holding "
    "[steps taken] (NAdam: [steps taken, mu_product]), read by the kernel (this step is steps taken + 1; the host "
    "`step`/`mu_product` are ignored) and advanced on the device after the update, and `lr_buffer` (None, or one "
    "float64 element there replacing `lr`). Nothing is synchronized: the launches can be captured in a CUDA graph.";

// m.def(name, f, <names>..., <extra>..., doc) for a tuple of argument names.
template <class F, class Names, class... Extra>
void def_with(py::module_& m, const char* name, F f, const std::string& doc, const Names& names, Extra... extra) {
  std::apply([&](const auto&... a) { m.def(name, f, a..., extra..., doc.c_str()); }, names);
}

// The plain and the capturable variant of one optimizer.
template <class A, class F, class Names>
void optimizer(py::module_& m, const std::string& name, const std::string& doc, F body, const Names& names) {
  def_with(m, (name + "_").c_str(), A::plain(body), doc, names);
  def_with(m, (name + "_capturable").c_str(), A::capturable(body), doc + kCapturableDoc, names,
           arg("counters").none(true), arg("lr_buffer").none(true));
}

inline auto lists2() { return std::make_tuple(arg("params"), arg("grads")); }

template <class Impl> void optim(py::module_& m) {
  using O = py::object;
  using std::tuple_cat;
  optimizer<Args<O, O, O, double, double, double, double, bool, bool, bool, double>>(
      m, "sgd",
      "SGD step in place (torch.optim.SGD semantics; textbook=True: v <- mu v - lr g, p <- p + v). "
      "momentum_buffers=None runs plain SGD; step counts the buffers' steps: step=1 initialises them from this "
      "step's gradient.",
      [](O c, O lr_buf, O p, O g, O b, double lr, double momentum, double dampening, double wd, bool nesterov,
         bool maximize, bool textbook, double step) {
        Impl::sgd(p, g, b, rules::SgdHyper{lr, momentum, dampening, wd, nesterov, maximize, textbook},
                  Step{{step}, c, lr_buf});
      },
      tuple_cat(lists2(), std::make_tuple(arg("momentum_buffers").none(true), arg("lr"), arg("momentum"),
                                     arg("dampening"), arg("weight_decay"), arg("nesterov"), arg("maximize"),
                                     arg("textbook"), arg("step"))));
  optimizer<Args<O, O, O, double, double, double, double, bool, double>>(
      m, "adagrad",
      "Adagrad step in place: s <- s + g^2, p <- p - clr g / (sqrt(s) + eps), clr = lr / (1 + (step - 1) lr_decay).",
      [](O c, O lr_buf, O p, O g, O s, double lr, double lr_decay, double wd, double eps, bool maximize,
         double step) {
        Impl::adagrad(p, g, s, rules::AdagradHyper{lr, lr_decay, wd, eps, maximize}, Step{{step}, c, lr_buf});
      },
      tuple_cat(lists2(), std::make_tuple(arg("sums"), arg("lr"), arg("lr_decay"), arg("weight_decay"), arg("eps"),
                                     arg("maximize"), arg("step"))));
  optimizer<Args<O, O, O, O, O, double, double, double, double, double, bool, bool>>(
      m, "rmsprop",
      "RMSprop step in place; grad_avgs given = centered (v - a^2 clamped at 0), momentum_buffers given = "
      "momentum (nesterov: Goodfellow Alg. 8.6 in look-ahead form).",
      [](O c, O lr_buf, O p, O g, O v, O a, O b, double lr, double alpha, double eps, double wd, double momentum,
         bool nesterov, bool maximize) {
        Impl::rmsprop(p, g, v, a, b, rules::RMSpropHyper{lr, alpha, eps, wd, momentum, nesterov, maximize},
                      Step{{1.0}, c, lr_buf});
      },
      tuple_cat(lists2(), std::make_tuple(arg("square_avgs"), arg("grad_avgs").none(true),
                                     arg("momentum_buffers").none(true), arg("lr"), arg("alpha"), arg("eps"),
                                     arg("weight_decay"), arg("momentum"), arg("nesterov"), arg("maximize"))));
  optimizer<Args<O, O, O, O, double, double, double, double, bool>>(
      m, "adadelta",
      "Adadelta step in place: v <- rho v + (1 - rho) g^2, d = sqrt(u + eps) / sqrt(v + eps) g, "
      "u <- rho u + (1 - rho) d^2, p <- p - lr d.",
      [](O c, O lr_buf, O p, O g, O v, O u, double lr, double rho, double eps, double wd, bool maximize) {
        Impl::adadelta(p, g, v, u, rules::AdadeltaHyper{lr, rho, eps, wd, maximize}, Step{{1.0}, c, lr_buf});
      },
      tuple_cat(lists2(), std::make_tuple(arg("square_avgs"), arg("acc_deltas"), arg("lr"), arg("rho"), arg("eps"),
                                     arg("weight_decay"), arg("maximize"))));
  optimizer<Args<O, O, O, O, O, double, double, double, double, double, bool, bool, double>>(
      m, "adam",
      "Adam/AdamW/AMSGrad step in place (torch.optim.Adam): bias corrections 1 - beta^step; "
      "decoupled_weight_decay scales p by 1 - lr weight_decay first (AdamW), else L2; max_exp_avg_sqs given = "
      "AMSGrad.",
      [](O c, O lr_buf, O p, O g, O m1, O v, O vmax, double lr, double beta1, double beta2, double eps, double wd,
         bool decoupled, bool maximize, double step) {
        Impl::adam(p, g, m1, v, vmax, rules::AdamHyper{lr, beta1, beta2, eps, wd, decoupled, maximize},
                   Step{{step}, c, lr_buf});
      },
      tuple_cat(lists2(), std::make_tuple(arg("exp_avgs"), arg("exp_avg_sqs"), arg("max_exp_avg_sqs").none(true),
                                     arg("lr"), arg("beta1"), arg("beta2"), arg("eps"), arg("weight_decay"),
                                     arg("decoupled_weight_decay"), arg("maximize"), arg("step"))));
  optimizer<Args<O, O, O, O, double, double, double, double, double, double, bool, bool, double, double>>(
      m, "nadam",
      "NAdam step in place (torch.optim.NAdam); mu_product is the product of the momentum schedule up to "
      "step - 1 (1.0 before the first step). Returns the new mu_product (None with device counters).",
      [](O c, O lr_buf, O p, O g, O m1, O v, double lr, double beta1, double beta2, double eps, double wd,
         double momentum_decay, bool decoupled, bool maximize, double step, double mu_product) {
        const double next = Impl::nadam(
            p, g, m1, v, rules::NAdamHyper{lr, beta1, beta2, eps, wd, momentum_decay, decoupled, maximize},
            Step{{step, mu_product}, c, lr_buf});
        return c.is_none() ? py::object(py::float_(next)) : py::object(py::none());
      },
      tuple_cat(lists2(), std::make_tuple(arg("exp_avgs"), arg("exp_avg_sqs"), arg("lr"), arg("beta1"), arg("beta2"),
                                     arg("eps"), arg("weight_decay"), arg("momentum_decay"),
                                     arg("decoupled_weight_decay"), arg("maximize"), arg("step"),
                                     arg("mu_product"))));
}

// AdaGrad-Norm: its step size depends on b^2, which lives with the arrays.
template <class F> void adagrad_norm(py::module_& m, F run) {
  m.def("adagrad_norm_",
        [run](py::object p, py::object g, py::object b_sq, double lr, double weight_decay, bool maximize) {
          run(p, g, b_sq, rules::AdagradNormHyper{lr, weight_decay, maximize});
        },
        arg("params"), arg("grads"), arg("b_sq"), arg("lr"), arg("weight_decay"), arg("maximize"),
        "AdaGrad-Norm step in place: b_sq[0] += ||g_eff||^2 over all arrays (deterministic float64 sum), then "
        "p -= lr / sqrt(b_sq[0]) g_eff with g_eff = (-g if maximize else g) + weight_decay p; b_sq is a "
        "1-element float64 array on the arrays' device, read and written there.");
}

}  // namespace sig
}  // namespace optkern
