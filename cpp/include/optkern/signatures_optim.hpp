// The optimizers of optkern._cpu and optkern._cuda, each described once: its Python
// signatures (names, argument names, docstrings) and what its generic step needs (state
// lists, the rule they select, hyper-parameters, step counters). Each module passes its
// own Impl::step<D>, so the two cannot drift apart.
#pragma once
#include <pybind11/pybind11.h>

#include <algorithm>
#include <array>
#include <iterator>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

#include "optkern/rules/optim.hpp"
#include "optkern/rules/optim_given.hpp"
#include "optkern/dtype_checks.hpp"
#include "optkern/scalar_checks.hpp"
#include "optkern/signatures_optim_checks.hpp"

namespace optkern {
namespace sig {
namespace py = pybind11;
using py::arg;

// Each optimizer is ONE description in `opt` below, from which both native modules make
// `<name>_(params, grads, <state lists>, <hyper-parameters>[, step[, mu_product]])` and
// `<name>_capturable(<the same>, counters, lr_buffer)`, and run them through their one
// generic step, `Impl::step<Desc>` (cpp/optim.cpp, cuda/optim.cu). A description says
//   name, doc        the Python names (`<name>_`, `<name>_capturable`) and docstring;
//   states           the state lists after params and grads: argument name, and whether
//                    it may be None (the rule variant without it);
//   Rule<T, Present...>  the rule of rules/optim.hpp, whose bool template flags are the
//                    presence of the optional state lists, in argument order;
//   Hyper, scalars, scalar_names  the hyper-parameter arguments after the lists: the
//                    fields of Hyper (rules/optim.hpp), in order, with their types (F: a bool);
//   ranges           each hyper-parameter's range (kFlag for a bool), checked by both modules
//                    before anything is read or written -- the Python layer's ranges
//                    (optim/<name>.py; tests/test_hunt49c_native_hyper.py pins that they agree);
//   in_dtype         how each one meets the arrays' dtype (checks::InDtype, dtype_checks.hpp),
//                    checked once the dtype is known, before anything is written -- the Python
//                    layer's _check_dtype (tests/test_hunt50a_native_checks.py pins that they agree);
//   kCounters        host step counters after them: 0 (the rule needs none), 1 (`step`,
//                    from 1, this step included) or 2 (`step`, `mu_product`; the
//                    function returns the new mu_product, None with device counters).

struct StateList {
  const char* name;
  bool optional;
};
template <class... X> struct Types {};
template <class R> struct Tag {
  using type = R;
};

namespace opt {
using D = checks::Real;  // a real number, converted by name (checks::real)
using F = checks::Flag;  // a bool, converted strictly and by name (checks::flag)
using namespace checks;  // the ranges
// in_dtype entries (checks::InDtype): a bool's is kInDouble, as is a double-only real's
constexpr unsigned kB = kInDouble, kR = kRounded, kDiv = kDivisor, kS = kScale;

struct Sgd {
  static constexpr const char* name = "sgd";
  static constexpr const char* doc =
      "SGD step in place (torch.optim.SGD semantics; textbook=True: v <- mu v - lr g, p <- p + v). "
      "momentum_buffers=None runs plain SGD; step counts the buffers' steps: step=1 initialises them from this "
      "step's gradient.";
  static constexpr StateList states[] = {{"momentum_buffers", true}};
  template <class T, bool... Present> using Rule = rules::Sgd<T, Present...>;
  using Hyper = rules::SgdHyper;
  using scalars = Types<D, D, D, D, F, F, F>;
  static constexpr const char* scalar_names[] = {"lr",       "momentum", "dampening", "weight_decay",
                                                 "nesterov", "maximize", "textbook"};
  static constexpr Range ranges[] = {kNonnegative, kNonnegative, kUnit, kNonnegative, kFlag, kFlag, kFlag};
  static constexpr unsigned in_dtype[] = {kS, kS, kR, kS, kB, kB, kB};
  static constexpr int kCounters = 1;
};

struct Adagrad {
  static constexpr const char* name = "adagrad";
  static constexpr const char* doc =
      "Adagrad step in place: s <- s + g^2, p <- p - clr g / (sqrt(s) + eps), clr = lr / (1 + (step - 1) lr_decay); "
      "float32_lr: clr in a float32 op, as torch computes it from a float32 tensor lr.";
  static constexpr StateList states[] = {{"sums", false}};
  template <class T, bool...> using Rule = rules::Adagrad<T>;
  using Hyper = rules::AdagradHyper;
  using scalars = Types<D, D, D, D, F, F>;
  static constexpr const char* scalar_names[] = {"lr", "lr_decay", "weight_decay", "eps", "maximize", "float32_lr"};
  static constexpr Range ranges[] = {kNonnegative, kNonnegative, kNonnegative, kPositive, kFlag, kFlag};
  static constexpr unsigned in_dtype[] = {kS, kInDouble, kS, kDiv, kB, kB};
  static constexpr int kCounters = 1;
};

struct RMSprop {
  static constexpr const char* name = "rmsprop";
  static constexpr const char* doc =
      "RMSprop step in place; grad_avgs given = centered (v - a^2 clamped at 0), momentum_buffers given = "
      "momentum (nesterov: Goodfellow Alg. 8.6 in look-ahead form).";
  static constexpr StateList states[] = {{"square_avgs", false}, {"grad_avgs", true}, {"momentum_buffers", true}};
  template <class T, bool... Present> using Rule = rules::RMSprop<T, Present...>;  // <centered, momentum>
  using Hyper = rules::RMSpropHyper;
  using scalars = Types<D, D, D, D, D, F, F>;
  static constexpr const char* scalar_names[] = {"lr",       "alpha",    "eps",     "weight_decay",
                                                 "momentum", "nesterov", "maximize"};
  static constexpr Range ranges[] = {kNonnegative, kUnit, kPositive, kNonnegative, kNonnegative, kFlag, kFlag};
  static constexpr unsigned in_dtype[] = {kS, kR, kDiv, kS, kS, kB, kB};
  static constexpr int kCounters = 0;
};

struct Adadelta {
  static constexpr const char* name = "adadelta";
  static constexpr const char* doc =
      "Adadelta step in place: v <- rho v + (1 - rho) g^2, d = sqrt(u + eps) / sqrt(v + eps) g, "
      "u <- rho u + (1 - rho) d^2, p <- p - lr d.";
  static constexpr StateList states[] = {{"square_avgs", false}, {"acc_deltas", false}};
  template <class T, bool...> using Rule = rules::Adadelta<T>;
  using Hyper = rules::AdadeltaHyper;
  using scalars = Types<D, D, D, D, F>;
  static constexpr const char* scalar_names[] = {"lr", "rho", "eps", "weight_decay", "maximize"};
  static constexpr Range ranges[] = {kNonnegative, kUnit, kPositive, kNonnegative, kFlag};
  static constexpr unsigned in_dtype[] = {kS, kR, kDiv, kS, kB};
  static constexpr int kCounters = 0;
};

struct Adam {
  static constexpr const char* name = "adam";
  static constexpr const char* doc =
      "Adam/AdamW/AMSGrad step in place (torch.optim.Adam): bias corrections 1 - beta^step; "
      "decoupled_weight_decay scales p by 1 - lr weight_decay first (AdamW), else L2; max_exp_avg_sqs given = "
      "AMSGrad. float32_lr: lr / bc1 and 1 - lr weight_decay in float32 ops, as torch computes them from a "
      "float32 tensor lr.";
  static constexpr StateList states[] = {{"exp_avgs", false}, {"exp_avg_sqs", false}, {"max_exp_avg_sqs", true}};
  template <class T, bool... Present> using Rule = rules::Adam<T, Present...>;  // <amsgrad>
  using Hyper = rules::AdamHyper;
  using scalars = Types<D, D, D, D, D, F, F, F>;
  static constexpr const char* scalar_names[] = {"lr",           "beta1",
                                                 "beta2",        "eps",
                                                 "weight_decay", "decoupled_weight_decay",
                                                 "maximize",     "float32_lr"};
  static constexpr Range ranges[] = {kNonnegative, kBelowOne, kBelowOne, kPositive, kNonnegative, kFlag, kFlag, kFlag};
  static constexpr unsigned in_dtype[] = {kS, kR, kR, kDiv, kS, kB, kB, kB};
  static constexpr int kCounters = 1;
};

struct AdamGiven {
  static constexpr const char* name = "adam_given";
  static constexpr const char* doc =
      "Adam/AdamW/AMSGrad step in place with its step scalars given (rules::AdamGiven): "
      "p <- p decay - step_size m / (sqrt(v or vmax) / bc2_sqrt + eps), m <- lerp(m, g, one_minus_beta1), "
      "v <- beta2 v + one_minus_beta2 g^2, g = (-g if maximize else g) + weight_decay p; each scalar rounded "
      "once to the arrays' dtype (torch.optim's for-loop with tensor hyper-parameters, computed by the caller).";
  static constexpr StateList states[] = {{"exp_avgs", false}, {"exp_avg_sqs", false}, {"max_exp_avg_sqs", true}};
  template <class T, bool... Present> using Rule = rules::AdamGiven<T, Present...>;  // <amsgrad>
  using Hyper = rules::AdamGivenHyper;
  using scalars = Types<D, D, D, D, D, D, D, D, F>;
  static constexpr const char* scalar_names[] = {"step_size",       "one_minus_beta1", "beta2",
                                                 "one_minus_beta2", "eps",             "weight_decay",
                                                 "decay",           "bc2_sqrt",        "maximize"};
  static constexpr Range ranges[] = {kNonnegative, kAboveZeroToOne, kBelowOne, kAboveZeroToOne, kPositive, kNonnegative, kFinite, kAboveZeroToOne, kFlag};
  static constexpr unsigned in_dtype[] = {kR, kR, kR, kR, kDiv, kR, kR, kDiv, kB};
  static constexpr int kCounters = 0;
};

struct NAdamGiven {
  static constexpr const char* name = "nadam_given";
  static constexpr const char* doc =
      "NAdam step in place with its step scalars given (rules::NAdamGiven): p <- p decay + c_grad g / d + "
      "c_avg m / d, d = sqrt(v / bc2) + eps, m <- lerp(m, g, one_minus_beta1), v <- beta2 v + one_minus_beta2 "
      "g^2, g = (-g if maximize else g) + weight_decay p; each scalar rounded once to the arrays' dtype "
      "(torch.optim's for-loop with tensor betas, computed by the caller, who keeps mu_product).";
  static constexpr StateList states[] = {{"exp_avgs", false}, {"exp_avg_sqs", false}};
  template <class T, bool...> using Rule = rules::NAdamGiven<T>;
  using Hyper = rules::NAdamGivenHyper;
  using scalars = Types<D, D, D, D, D, D, D, D, D, F>;
  static constexpr const char* scalar_names[] = {"c_grad", "c_avg",        "one_minus_beta1", "beta2", "one_minus_beta2",
                                                 "eps",    "weight_decay", "decay",           "bc2",   "maximize"};
  static constexpr Range ranges[] = {kFinite, kFinite, kAboveZeroToOne, kBelowOne, kAboveZeroToOne, kPositive, kNonnegative, kFinite, kAboveZeroToOne, kFlag};
  static constexpr unsigned in_dtype[] = {kR, kR, kR, kR, kR, kDiv, kR, kR, kDiv, kB};
  static constexpr int kCounters = 0;
};

struct NAdam {
  static constexpr const char* name = "nadam";
  static constexpr const char* doc =
      "NAdam step in place (torch.optim.NAdam); mu_product is the product of the momentum schedule up to "
      "step - 1 (1.0 before the first step). Returns the new mu_product (None with device counters), rounded "
      "to the arrays' dtype, or kept in float64 with float64_product. float32_lr: the lr coefficients and "
      "1 - lr weight_decay in float32 ops, as torch computes them from a float32 tensor lr.";
  static constexpr StateList states[] = {{"exp_avgs", false}, {"exp_avg_sqs", false}};
  template <class T, bool...> using Rule = rules::NAdam<T>;
  using Hyper = rules::NAdamHyper;
  using scalars = Types<D, D, D, D, D, D, F, F, F, F>;
  static constexpr const char* scalar_names[] = {"lr",
                                                 "beta1",
                                                 "beta2",
                                                 "eps",
                                                 "weight_decay",
                                                 "momentum_decay",
                                                 "decoupled_weight_decay",
                                                 "maximize",
                                                 "float64_product",
                                                 "float32_lr"};
  static constexpr Range ranges[] = {kNonnegative, kBelowOne, kBelowOne, kPositive, kNonnegative, kNonnegative, kFlag, kFlag, kFlag, kFlag};
  static constexpr unsigned in_dtype[] = {kS, kMomentumBeta, kR, kDiv, kS, kInDouble, kB, kB, kB, kB};
  static constexpr int kCounters = 2;
};
}  // namespace opt

// f(Tag<Rule>{}) with Rule = D::Rule<T, flags...> for the optional state lists present
// (present[k]: whether state list k was given).
template <class D, class T, size_t K = 0, bool... B, class F> void with_rule(const bool* present, F&& f) {
  constexpr size_t N = std::size(D::states);
  if constexpr (K == N) f(Tag<typename D::template Rule<T, B...>>{});
  else if constexpr (!D::states[K].optional) with_rule<D, T, K + 1, B...>(present, f);
  else if (present[K]) with_rule<D, T, K + 1, B..., true>(present, f);
  else with_rule<D, T, K + 1, B..., false>(present, f);
}

// The elements of a capturable call's device counters.
template <class D> constexpr int n_device_counters() { return D::kCounters > 1 ? D::kCounters : 1; }

inline const char* const kCapturableDoc =
    " Capturable variant: the same arguments plus `counters`, a float64 array on the arrays' device holding "
    "[steps taken] (NAdam: [steps taken, mu_product]), read by the kernel (this step is steps taken + 1; the host "
    "`step`/`mu_product` are ignored) and advanced on the device after the update, and `lr_buffer` (None, or one "
    "float64 element there replacing `lr`), and `found_inf` (None, or one float32 element there: when nonzero the "
    "step writes nothing and the counters stay, GradScaler's skipped step). Nothing is synchronized: the launches "
    "can be captured in a CUDA graph. The CPU reads `counters` and `lr_buffer` and refuses a bad value (ValueError, "
    "nothing written); on CuPy the kernels apply the same checks and a value the CPU refuses makes the step write "
    "nothing, counters included, unreported (no host reads the device's values).";

// m.def(name, f, <names>..., <extra>..., doc) for a tuple of argument names.
template <class F, class Names, class... Extra>
void def_with(py::module_& m, const char* name, F f, const std::string& doc, const Names& names, Extra... extra) {
  std::apply([&](const auto&... a) { m.def(name, f, a..., extra..., doc.c_str()); }, names);
}

// The Python-facing functions of description D over Impl::step<D>.
template <class D, class Impl> struct OptimFunctions {
  using O = py::object;
  static constexpr size_t N = std::size(D::states);
  static constexpr const char* counter_names[] = {"step", "mu_product"};
  template <size_t> struct Obj {  // one py::object per state list
    using type = py::object;
  };

  static rules::Counters host_counters() { return {1.0}; }

  static rules::Counters host_counters(const checks::Real& step) { return {checks::real(step, counter_names[0])}; }
  static rules::Counters host_counters(const checks::Real& step, const checks::Real& mu_product) {
    return {checks::real(step, counter_names[0]), checks::real(mu_product, counter_names[1])};
  }

  // Hyper-parameter i converted and checked against its range (D::ranges), or a bool converted
  // strictly; both named as the signature names them. The real's value is kept in `real` for the
  // checks against the arrays' dtype (check_in_dtype, once the step knows it).
  static double checked(size_t i, const checks::Real& r, double& real) {
    return real = checks::real_in(D::scalar_names[i], r, D::ranges[i]);
  }
  static bool checked(size_t i, const checks::Flag& f, double& real) {
    const bool b = checks::flag(f, D::scalar_names[i]);
    real = b ? 1.0 : 0.0;  // (float32_operand reads float32_lr and its operands' flags)
    return b;
  }
  template <size_t... J, class... H>
  static typename D::Hyper hyper(std::index_sequence<J...>, double* reals, const H&... h) {
    return typename D::Hyper{checked(J, h, reals[J])...};  // (in argument order: the first bad one is named)
  }

  // One step; returns what the Python function returns: NAdam the new mu_product (None
  // with device counters), the others None.
  template <class C, class... H>
  static auto call(O counters, O lr_buffer, O found_inf, O p, O g, const std::array<O, N>& s, const C& given,
                   const H&... h) {
    [[maybe_unused]] const bool host = counters.is_none();
    double reals[sizeof...(H)];
    const typename D::Hyper hp = hyper(std::index_sequence_for<H...>(), reals, h...);
    const rules::Counters c = given();  // (after the hyper-parameters, as the arguments come)
    if (host && D::kCounters >= 1) checks::check_step(counter_names[0], c.t);  // (device counters: not read here)
    if constexpr (D::kCounters == 2)
      if (host) check_mu_product(counter_names[1], c.mu_product, hp, c.t);
    [[maybe_unused]] const rules::Counters next = Impl::template step<D>(
        p, g, s, hp, Step{c, std::move(counters), std::move(lr_buffer), std::move(found_inf), reals});
    if constexpr (D::kCounters == 2) return host ? py::object(py::float_(next.mu_product)) : py::object(py::none());
  }

  template <size_t... I, class... H, class... C>
  static auto plain(std::index_sequence<I...>, Types<H...>, Types<C...>) {
    return [](O p, O g, typename Obj<I>::type... s, H... h, C... c) {
      return call(py::none(), py::none(), py::none(), p, g, {s...}, [&] { return host_counters(c...); }, h...);
    };
  }
  template <size_t... I, class... H, class... C>
  static auto capturable(std::index_sequence<I...>, Types<H...>, Types<C...>) {
    return [](O p, O g, typename Obj<I>::type... s, H... h, C... c, O counters, O lr_buffer, O found_inf) {
      return call(counters, lr_buffer, found_inf, p, g, {s...}, [&] { return host_counters(c...); }, h...);
    };
  }

  template <size_t... I, size_t... J, size_t... K>
  static auto names(std::index_sequence<I...>, std::index_sequence<J...>, std::index_sequence<K...>) {
    return std::make_tuple(arg("params"), arg("grads"), arg(D::states[I].name)..., arg(D::scalar_names[J])...,
                           arg(counter_names[K])...);
  }

  template <class... H> static constexpr size_t count(Types<H...>) { return sizeof...(H); }

  static void def(py::module_& m) {
    static_assert(count(typename D::scalars{}) == std::size(D::scalar_names), "one name per hyper-parameter");
    static_assert(std::size(D::ranges) == std::size(D::scalar_names), "one range per hyper-parameter");
    static_assert(std::size(D::in_dtype) == std::size(D::scalar_names), "one in_dtype per hyper-parameter");
    using Counters = std::conditional_t<D::kCounters == 0, Types<>,
                                        std::conditional_t<D::kCounters == 1, Types<checks::Real>, Types<checks::Real, checks::Real>>>;
    const auto states = std::make_index_sequence<N>();
    const auto nm = names(states, std::make_index_sequence<std::size(D::scalar_names)>(),
                          std::make_index_sequence<size_t(D::kCounters)>());
    const std::string name = D::name, doc = D::doc;
    def_with(m, (name + "_").c_str(), plain(states, typename D::scalars{}, Counters{}), doc, nm);
    def_with(m, (name + "_capturable").c_str(), capturable(states, typename D::scalars{}, Counters{}),
             doc + kCapturableDoc, nm, arg("counters").none(true), arg("lr_buffer").none(true),
             arg("found_inf").none(true) = py::none());
  }
};

template <class Impl> void optim(py::module_& m) {
  def_float32_lr(m);
  OptimFunctions<opt::Sgd, Impl>::def(m);
  OptimFunctions<opt::Adagrad, Impl>::def(m);
  OptimFunctions<opt::RMSprop, Impl>::def(m);
  OptimFunctions<opt::Adadelta, Impl>::def(m);
  OptimFunctions<opt::Adam, Impl>::def(m);
  OptimFunctions<opt::AdamGiven, Impl>::def(m);
  OptimFunctions<opt::NAdam, Impl>::def(m);
  OptimFunctions<opt::NAdamGiven, Impl>::def(m);
}

// AdaGrad-Norm's lr and weight_decay against the arrays' dtype (AdaGrad's in_dtype entries): its
// `run` calls it once it knows the dtype, before anything is written.
inline void check_adagrad_norm_in(const rules::AdagradNormHyper& h, size_t itemsize) {
  checks::check_in_dtype("lr", h.lr, opt::Adagrad::in_dtype[0], itemsize);
  checks::check_in_dtype("weight_decay", h.weight_decay, opt::Adagrad::in_dtype[2], itemsize);
}

// AdaGrad-Norm: its step size depends on b^2, which lives with the arrays.
template <class F> void adagrad_norm(py::module_& m, F run) {
  m.def("adagrad_norm_",
        [run](py::object p, py::object g, py::object b_sq, const checks::Real& lr_arg, const checks::Real& wd_arg,
              checks::Flag maximize) {
          // (AdaGrad's ranges for its lr and weight_decay, as optim/adagrad.py checks both)
          const double lr = checks::real_in("lr", lr_arg, opt::Adagrad::ranges[0]);
          const double weight_decay = checks::real_in("weight_decay", wd_arg, opt::Adagrad::ranges[2]);
          run(p, g, b_sq, rules::AdagradNormHyper{lr, weight_decay, checks::flag(maximize, "maximize")});
        },
        arg("params"), arg("grads"), arg("b_sq"), arg("lr"), arg("weight_decay"), arg("maximize"),
        "AdaGrad-Norm step in place: b_sq[0] += ||g_eff||^2 over all arrays (deterministic float64 sum), then "
        "p -= lr / sqrt(b_sq[0]) g_eff with g_eff = (-g if maximize else g) + weight_decay p; b_sq is a "
        "1-element float64 array on the arrays' device, read and written there.");
}

}  // namespace sig
}  // namespace optkern
