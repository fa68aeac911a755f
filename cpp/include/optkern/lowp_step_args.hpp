// lowp_step's arguments, written once for optkern._cpu (cpp/lowp_step.cpp, NumPy arrays)
// and optkern._cuda (cuda/lowp_step.cu, CuPy arrays): the Python signature, the gathering
// and checking of the lists (templated on the array kind of optkern/call_args.hpp, so both
// modules check the same things in the same order with the same messages, all before the
// first write), the rule built from its scalars and flags by its one Rule::at, and the
// dispatch on the storage formats.
//
// Half params and grads (bfloat16, float16) travel as uint16 views of their bits; 8-bit
// states as uint8 codes with one float32 scale per block (lowp_storage.hpp).
#pragma once
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "optkern/call_args.hpp"
#include "optkern/dtype_checks.hpp"
#include "optkern/lowp_storage.hpp"
#include "optkern/named_reals.hpp"
#include "optkern/rules/optim.hpp"
#include "optkern/scalar_checks.hpp"
#include "optkern/signatures_optim.hpp"

namespace optkern {
namespace lowp {
namespace py = pybind11;

inline Fmt parse_fmt(const std::string& s, const char* what, bool state) {
  if (s == "float32") return Fmt::f32;
  if (s == "bfloat16") return Fmt::bf16;
  if (s == "float16" && !state) return Fmt::f16;
  if (s == "int8" && state) return Fmt::q8;
  throw py::value_error(std::string(what) + ": unsupported format '" + s + "'");
}

// The dtype an array of format f is passed as: float32, uint8 codes, or a half's uint16 bits.
template <class Arrays> typename Arrays::DType storage_dtype(Fmt f) {
  return Arrays::dtype_named(f == Fmt::f32 ? "float32" : f == Fmt::q8 ? "uint8" : "uint16");
}

// One call's checked lists (kept alive while the GIL is released) and the tensors they make.
template <class Arrays> struct StepCall {
  using List = typename Arrays::List;
  Fmt pf = Fmt::f32, sf = Fmt::f32;
  Config cfg{};
  int n_states = 0;
  std::vector<Tensor> ts;
  const float* found_inf = nullptr;  // (CUDA only) skip the step when *found_inf != 0
  Args<Arrays> args;                  // the shared collector: dtypes, sizes, device, aliasing
  List p, g, m;
  std::vector<List> s, sc;
  int64_t elements() const {
    int64_t n = 0;
    for (const Tensor& t : ts) n += t.n;
    return n;
  }
};

// The global index of each tensor's element 0 (the counter of its stochastic rounding,
// lowp_storage.hpp): `bases` as given (the optimizer numbers every element of all its params,
// so that two calls of one step -- param groups, formats -- never draw the same words), or the
// call's own elements in order from 0 (None).
template <class Arrays> std::vector<uint64_t> tensor_bases(const StepCall<Arrays>& c, py::handle bases) {
  std::vector<uint64_t> out(c.p.count(), 0);
  if (bases.is_none()) {
    for (size_t i = 1; i < out.size(); ++i) out[i] = out[i - 1] + uint64_t(c.p.size[i - 1]);
    return out;
  }
  if (!py::isinstance<py::sequence>(bases) || py::isinstance<py::str>(bases))
    throw py::type_error("bases: expected None or a sequence of ints, one per param");
  const auto seq = py::reinterpret_borrow<py::sequence>(bases);
  if (size_t(py::len(seq)) != out.size())
    throw py::value_error("bases: expected " + counted(int64_t(out.size()), "int") + " (one per param), got " +
                          std::to_string(py::len(seq)));
  for (size_t i = 0; i < out.size(); ++i) {
    // (an object, not a handle: an item made on lookup -- an int64 array's scalar, a custom
    // sequence's -- was freed with the accessor, then read: a crash)
    const py::object b = seq[i];
    if (!py::isinstance<py::int_>(b) || PyBool_Check(b.ptr()))  // (True: not a count, as Python's checks say)
      throw py::type_error(item_name("bases", i) + ": expected an int");
    int overflow = 0;
    const long long v = PyLong_AsLongLongAndOverflow(b.ptr(), &overflow);
    if (overflow || v < 0) throw py::value_error(item_name("bases", i) + ": expected an int in [0, 2**63)");
    out[i] = uint64_t(v);
  }
  return out;
}

// The tensors of a gathered call.
template <class Arrays> void make_tensors(StepCall<Arrays>& c, const std::vector<uint64_t>& bases) {
  for (size_t i = 0; i < c.p.count(); ++i) {
    Tensor t{};
    t.p = c.p.data[i];
    t.g = c.g.data[i];
    t.master = c.m.count() ? c.m.template ptr<float>(i) : nullptr;
    for (int k = 0; k < c.n_states; ++k) {
      t.s[k] = c.s[size_t(k)].data[i];
      t.scale[k] = c.sc.empty() ? nullptr : c.sc[size_t(k)].template ptr<float>(i);
    }
    t.n = c.p.size[i];
    t.base = bases[i];
    c.ts.push_back(t);
  }
}

// Every list checked (format, sizes, layout, device), then no written array sharing
// memory with any other; `found_inf` (None, or CUDA's one float32 flag) joins the check.
template <class Arrays>
void gather_step(StepCall<Arrays>& c, py::handle params, py::handle grads, py::handle masters, py::handle states,
                 py::handle scales, const std::string& param_fmt, const std::string& state_fmt, bool stochastic,
                 uint64_t seed, uint64_t step, int64_t block, py::handle grad_scale = py::none(),
                 py::handle bases = py::none(), py::handle found_inf = py::none()) {
  c.pf = parse_fmt(param_fmt, "param_dtype", false);
  c.sf = parse_fmt(state_fmt, "state_dtype", true);
  if (block < kSmallestBlock || block > kLargestBlock || (block & (block - 1)))
    throw py::value_error("block: expected a power of two in [64, 4096], got " + std::to_string(block));
  c.cfg = Config{seed, step, stochastic, block};
  const auto pdt = storage_dtype<Arrays>(c.pf), sdt = storage_dtype<Arrays>(c.sf);
  const auto f32 = storage_dtype<Arrays>(Fmt::f32);
  c.p = c.args.list(params, "params", pdt, true);
  const std::vector<int64_t>& sizes = c.p.size;
  c.g = c.args.list(grads, "grads", pdt, false, &sizes);
  const bool has_master = c.pf != Fmt::f32;
  if (has_master == masters.is_none())
    throw py::value_error(std::string("masters: ") + (has_master ? "a float32 master copy is required for "
                          "low-precision params" : "must be None for float32 params"));
  if (has_master) c.m = c.args.list(masters, "masters", f32, true, &sizes);
  require_list(states, "states", "a list of state lists");
  const auto st = py::reinterpret_borrow<py::sequence>(states);
  c.n_states = int(py::len(st));
  if (c.n_states > 3) throw py::value_error("states: at most 3 state lists");
  static const char* kNames[3] = {"states[0]", "states[1]", "states[2]"};
  static const char* kScaleNames[3] = {"scales[0]", "scales[1]", "scales[2]"};
  for (int k = 0; k < c.n_states; ++k) c.s.push_back(c.args.list(st[size_t(k)], kNames[k], sdt, true, &sizes));
  const bool q8 = c.sf == Fmt::q8;
  if (q8 == scales.is_none())
    throw py::value_error(std::string("scales: ") + (q8 ? "8-bit states need their block scales" :
                          "must be None unless state_dtype is 'int8'"));
  if (q8) {
    require_list(scales, "scales", "a list of scale lists");
    const auto sc = py::reinterpret_borrow<py::sequence>(scales);
    if (int(py::len(sc)) != c.n_states) throw py::value_error("scales: expected one list per state list");
    std::vector<int64_t> nb;
    for (int64_t n : sizes) nb.push_back((n + block - 1) / block);
    for (int k = 0; k < c.n_states; ++k) c.sc.push_back(c.args.list(sc[size_t(k)], kScaleNames[k], f32, true, &nb));
  }
  if (!grad_scale.is_none())
    c.cfg.grad_scale = c.args.template get<const float>(grad_scale, "grad_scale", f32, 1, false);
  if (!found_inf.is_none()) c.found_inf = c.args.template get<const float>(found_inf, "found_inf", f32, 1, false);
  const std::vector<uint64_t> base = tensor_bases(c, bases);
  c.args.check_overlap();
  make_tensors(c, base);
}

// f(std::integral_constant<Fmt, PF>, std::integral_constant<Fmt, SF>) for the call's formats.
template <class F> void with_formats(Fmt pf, Fmt sf, F&& f) {
  using P32 = std::integral_constant<Fmt, Fmt::f32>;
  using PB = std::integral_constant<Fmt, Fmt::bf16>;
  using PH = std::integral_constant<Fmt, Fmt::f16>;
  using SQ = std::integral_constant<Fmt, Fmt::q8>;
  const auto with_state = [&](auto p) {
    if (sf == Fmt::f32) f(p, P32{});
    else if (sf == Fmt::bf16) f(p, PB{});
    else f(p, SQ{});
  };
  if (pf == Fmt::f32) with_state(P32{});
  else if (pf == Fmt::bf16) with_state(PB{});
  else with_state(PH{});
}

// v[i] converted by name (checks::real: a str, None or bool in the list was pybind11's unnamed
// TypeError, a bool ran as 1.0) and checked as the fp32 step of the optimizer described by D
// (signatures_optim.hpp) checks hyper-parameter i on float32 arrays: its range, then its in_dtype
// entry in float32, the dtype these rules compute in (lr = 1e10 or eps = 1e-50 ran and wrote NaN).
template <class D> double scalar(const std::vector<checks::Real>& v, size_t i) {
  if (i >= v.size()) throw py::value_error("scalars: too few values for this rule");
  const auto name = [&] { return "scalars[" + std::to_string(i) + "] (" + D::scalar_names[i] + ")"; };
  const double x = checks::real_in(name, v[i], D::ranges[i]);
  checks::check_in_dtype(name, x, D::in_dtype[i], sizeof(float));
  return x;
}
// scalar<D> over x, as a function of the position.
template <class D> auto scalars_of(const std::vector<checks::Real>& x) {
  return [&x](size_t i) { return scalar<D>(x, i); };
}
// NAdam's x[6], the mu_product step t of hyper-parameters h starts from, checked as nadam_ checks its own.
inline double mu_product(const std::vector<checks::Real>& x, const rules::NAdamHyper& h, double t) {
  if (x.size() < 7) throw py::value_error("scalars: too few values for this rule");
  const char* name = "scalars[6] (mu_product)";
  const double v = checks::real(x[6], name);
  sig::check_mu_product(name, v, h, t);
  return v;
}

// run(rule) with the rule built from its hyper-parameters and the step count by the rule's
// one step-scalar function (Rule::at), as the fp32 optimizers build it; the state lists
// given must be the rule's.
//   sgd:  x = [lr, momentum, dampening, weight_decay], flags = [nesterov, maximize, first, textbook]
//   adam: x = [lr, beta1, beta2, eps, weight_decay],   flags = [maximize, decoupled, float32_lr] (AMSGrad: 3
//         states; float32_lr, optional: the rules' (optkern.torch's float32 tensor lr), as the fp32 step takes it)
//   rmsprop: x = [lr, alpha, eps, weight_decay, momentum], flags = [nesterov, maximize, centered]
//         (states: square_avg, then grad_avg when centered, then momentum_buffer when momentum > 0)
//   adagrad: x = [lr, lr_decay, weight_decay, eps], flags = [maximize, float32_lr] (state: sum)
//   adadelta: x = [lr, rho, eps, weight_decay], flags = [maximize] (states: square_avg, acc_delta)
//   nadam: x = [lr, beta1, beta2, eps, weight_decay, momentum_decay, mu_product], flags = [maximize,
//         decoupled, float32_lr] (states: exp_avg, exp_avg_sq)
// Returns NAdam's new mu_product (the rule's, rounded as the fp32 optimizer keeps it), else NaN.
template <class Run>
double with_rule(const std::string& rule, const std::vector<checks::Real>& x, const std::vector<checks::Flag>& flags,
                 uint64_t step, int n_states, Run&& run) {
  const auto flag = [&](size_t i, bool fallback) {
    return i < flags.size() ? checks::flag(flags[i], [i] { return "flags[" + std::to_string(i) + "]"; }) : fallback;
  };
  const auto go = [&](const auto& r) {
    constexpr int K = std::decay_t<decltype(r)>::kState;
    if (n_states != K)
      throw py::value_error("states: this rule needs " + std::to_string(K) + " state lists, got " +
                            std::to_string(n_states));
    run(r);
  };
  using F = float;
  if (rule == "sgd") {
    const auto x_ = scalars_of<sig::opt::Sgd>(x);
    const rules::SgdHyper h{x_(0), x_(1), x_(2), x_(3),
                            flag(0, false), flag(1, false), flag(3, false)};
    const rules::Counters k{flag(2, false) ? 1.0 : 2.0};  // Sgd::at: the first step initialises the buffers
    if (n_states == 1) go(rules::Sgd<F, true>::at(h, k));
    else go(rules::Sgd<F, false>::at(h, k));
  } else if (rule == "adam") {
    const auto x_ = scalars_of<sig::opt::Adam>(x);
    checks::check_step("step", double(step));
    const rules::AdamHyper h{x_(0), x_(1), x_(2), x_(3), x_(4),
                             flag(1, false), flag(0, false), flag(2, false)};
    const rules::Counters k{double(step)};
    if (n_states == 3) go(rules::Adam<F, true>::at(h, k));
    else go(rules::Adam<F, false>::at(h, k));
  } else if (rule == "rmsprop") {
    const auto x_ = scalars_of<sig::opt::RMSprop>(x);
    const rules::RMSpropHyper h{x_(0), x_(1), x_(2), x_(3), x_(4),
                                flag(0, false), flag(1, false)};
    const rules::Counters k{double(step)};
    const bool centered = flag(2, false), momentum = h.momentum > 0.0;
    if (centered && momentum) go(rules::RMSprop<F, true, true>::at(h, k));
    else if (centered) go(rules::RMSprop<F, true, false>::at(h, k));
    else if (momentum) go(rules::RMSprop<F, false, true>::at(h, k));
    else go(rules::RMSprop<F, false, false>::at(h, k));
  } else if (rule == "adagrad") {
    const auto x_ = scalars_of<sig::opt::Adagrad>(x);
    checks::check_step("step", double(step));
    const rules::AdagradHyper h{x_(0), x_(1), x_(2), x_(3), flag(0, false), flag(1, false)};
    go(rules::Adagrad<F>::at(h, rules::Counters{double(step)}));
  } else if (rule == "adadelta") {
    const auto x_ = scalars_of<sig::opt::Adadelta>(x);
    const rules::AdadeltaHyper h{x_(0), x_(1), x_(2), x_(3), flag(0, false)};
    go(rules::Adadelta<F>::at(h, rules::Counters{double(step)}));
  } else if (rule == "nadam") {
    const auto x_ = scalars_of<sig::opt::NAdam>(x);
    checks::check_step("step", double(step));
    const rules::NAdamHyper h{x_(0), x_(1), x_(2), x_(3), x_(4), x_(5),
                              flag(1, false), flag(0, false), false, flag(2, false)};  // (mu_product kept in float32)
    const auto r = rules::NAdam<F>::at(h, rules::Counters{double(step), mu_product(x, h, double(step))});
    go(r);
    return r.mu_product;
  } else {
    throw py::value_error("rule: unsupported rule '" + rule + "'");
  }
  return std::numeric_limits<double>::quiet_NaN();
}

// What lowp_step returns: NAdam's new mu_product, else None.
inline py::object step_result(double mu_product) {
  return std::isnan(mu_product) ? py::object(py::none()) : py::object(py::float_(mu_product));
}

}  // namespace lowp

namespace sig {

// lowp_step's Python signature, the same in both modules; `extra` are trailing arguments
// one module adds (CUDA: found_inf).
template <class F, class... Extra> void lowp_step(pybind11::module_& m, F f, const char* doc, Extra... extra) {
  using pybind11::arg;
  def_named(m, "lowp_step", f, arg("rule"), arg("scalars"), arg("flags"), arg("params"), arg("grads"), arg("masters"),
        arg("states"), arg("scales"), arg("param_dtype"), arg("state_dtype"), arg("stochastic"), arg("seed"),
        arg("step"), arg("block"), arg("grad_scale") = pybind11::none(), arg("bases") = pybind11::none(), extra...,
        doc);
}

// What both modules' docstrings say first.
inline constexpr const char* kLowpStepDoc =
    "One optimizer step with low-precision storage: rule 'sgd' (scalars [lr, momentum, dampening, weight_decay], "
    "flags [nesterov, maximize, first, textbook]), 'adam' ([lr, beta1, beta2, eps, weight_decay], [maximize, "
    "decoupled, float32_lr]; 3 state lists: AMSGrad), 'rmsprop' ([lr, alpha, eps, weight_decay, momentum], [nesterov, "
    "maximize, centered]), "
    "'adagrad' ([lr, lr_decay, weight_decay, eps], [maximize, float32_lr]), 'adadelta' ([lr, rho, eps, weight_decay], "
    "[maximize]) or 'nadam' ([lr, beta1, beta2, eps, weight_decay, momentum_decay, mu_product], [maximize, "
    "decoupled, float32_lr]; returns the new mu_product, the other rules None). param_dtype 'float32', 'bfloat16' or 'float16' (halves as uint16 bits, with float32 "
    "masters), state_dtype 'float32', 'bfloat16' or 'int8' (uint8 codes, one float32 scale per `block` values). "
    "stochastic: round the params stochastically (Philox stream `step` of `seed`; bf16 states always are). "
    "grad_scale: None, or GradScaler's scale (a 1-element float32 array beside the arrays): every grad is "
    "multiplied by float(1 / double(scale)) after widening to float32, before the rule. bases: None (the call's "
    "elements numbered in order from 0) or one int per param, the index of its element 0 in the Philox counters "
    "of stochastic rounding.";

}  // namespace sig
}  // namespace optkern
