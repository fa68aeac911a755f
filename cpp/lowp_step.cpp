// optkern._cpu.lowp_step: one optimizer step with low-precision storage
// (bf16/fp16 params + fp32 master, bf16 or 8-bit states) through the generic
// loop of lowp_loop.hpp. The rule and its math are rules/optim.hpp's; this file
// only checks the lists, builds the rule and picks the storage instantiation.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "lowp_loop.hpp"
#include "py_arrays.hpp"
#include "optkern/rules/optim.hpp"

namespace optkern {
namespace py = pybind11;

namespace {

using lowp::Fmt;

Fmt parse_fmt(const std::string& s, const char* what, bool state) {
  if (s == "float32") return Fmt::f32;
  if (s == "bfloat16") return Fmt::bf16;
  if (s == "float16" && !state) return Fmt::f16;
  if (s == "int8" && state) return Fmt::q8;
  throw py::value_error(std::string(what) + ": unsupported format '" + s + "'");
}

py::dtype storage_dtype(Fmt f) {
  switch (f) {
    case Fmt::f32: return py::dtype::of<float>();
    case Fmt::q8: return py::dtype::of<uint8_t>();
    default: return py::dtype::of<uint16_t>();
  }
}

struct Call {
  Fmt pf, sf;
  lowp::Config cfg;
  std::vector<lowp::Tensor> ts;
  std::vector<ArrayList> keep;  // the gathered lists (own references while the GIL is released)
  int n_states = 0;
};

Call gather_call(py::handle params, py::handle grads, py::handle masters, py::handle states, py::handle scales,
                 const std::string& param_fmt, const std::string& state_fmt, int64_t block) {
  Call c;
  c.pf = parse_fmt(param_fmt, "param_dtype", false);
  c.sf = parse_fmt(state_fmt, "state_dtype", true);
  if (block < 64 || block > lowp::kMaxBlock || (block & (block - 1)))
    throw py::value_error("block: expected a power of two in [64, 4096], got " + std::to_string(block));
  c.cfg.block = block;
  c.keep.reserve(2 + 1 + 2 * 3);  // no reallocation: `named` points into it
  c.keep.push_back(gather(params, "params", storage_dtype(c.pf), true));
  const std::vector<int64_t>& sizes = c.keep[0].size;
  c.keep.push_back(gather(grads, "grads", storage_dtype(c.pf), false, &sizes));
  const size_t pisz = size_t(storage_dtype(c.pf).itemsize());
  std::vector<NamedList> named{{"params", &c.keep[0], true, false, pisz}, {"grads", &c.keep[1], false, false, pisz}};
  const bool has_master = c.pf != Fmt::f32;
  if (has_master == masters.is_none())
    throw py::value_error(std::string("masters: ") + (has_master ? "a float32 master copy is required for "
                          "low-precision params" : "must be None for float32 params"));
  size_t im = 0;
  if (has_master) {
    im = c.keep.size();
    c.keep.push_back(gather(masters, "masters", py::dtype::of<float>(), true, &sizes));
  }
  const auto st = py::reinterpret_borrow<py::sequence>(states);
  c.n_states = int(py::len(st));
  if (c.n_states > 3) throw py::value_error("states: at most 3 state lists");
  const size_t is0 = c.keep.size();
  static const char* kNames[3] = {"states[0]", "states[1]", "states[2]"};
  static const char* kScaleNames[3] = {"scales[0]", "scales[1]", "scales[2]"};
  for (int k = 0; k < c.n_states; ++k) c.keep.push_back(gather(st[size_t(k)], kNames[k], storage_dtype(c.sf), true, &sizes));
  const bool q8 = c.sf == Fmt::q8;
  if (q8 == scales.is_none())
    throw py::value_error(std::string("scales: ") + (q8 ? "8-bit states need their block scales" :
                          "must be None unless state_dtype is 'int8'"));
  size_t isc = c.keep.size();
  if (q8) {
    const auto sc = py::reinterpret_borrow<py::sequence>(scales);
    if (int(py::len(sc)) != c.n_states) throw py::value_error("scales: expected one list per state list");
    std::vector<int64_t> nb;
    for (int64_t n : sizes) nb.push_back((n + block - 1) / block);
    for (int k = 0; k < c.n_states; ++k) c.keep.push_back(gather(sc[size_t(k)], kScaleNames[k], py::dtype::of<float>(), true, &nb));
  }
  if (has_master) named.push_back({"masters", &c.keep[im], true, false, 4});
  for (int k = 0; k < c.n_states; ++k) {
    named.push_back({kNames[k], &c.keep[is0 + size_t(k)], true, false, size_t(storage_dtype(c.sf).itemsize())});
  }
  if (q8)
    for (int k = 0; k < c.n_states; ++k) named.push_back({kScaleNames[k], &c.keep[isc + size_t(k)], true, false, 4});
  check_no_overlap(named, 1);  // (every list gives its own item size)
  uint64_t base = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    lowp::Tensor t{};
    t.p = c.keep[0].data[i];
    t.g = c.keep[1].data[i];
    t.master = has_master ? c.keep[im].ptr<float>(i) : nullptr;
    for (int k = 0; k < c.n_states; ++k) {
      t.s[k] = c.keep[is0 + size_t(k)].data[i];
      t.scale[k] = q8 ? c.keep[isc + size_t(k)].ptr<float>(i) : nullptr;
    }
    t.n = sizes[i];
    t.base = base;
    base += uint64_t(sizes[i]);
    c.ts.push_back(t);
  }
  return c;
}

template <class Rule> void run(const Rule& rule, const Call& c) {
  if (c.n_states != Rule::kState)
    throw py::value_error("states: this rule needs " + std::to_string(Rule::kState) + " state lists, got " +
                          std::to_string(c.n_states));
  py::gil_scoped_release nogil;
  const auto go = [&](auto pf, auto sf) { lowp::apply_lowp<decltype(pf)::value, decltype(sf)::value>(rule, c.ts, c.cfg); };
  using P32 = std::integral_constant<Fmt, Fmt::f32>;
  using PB = std::integral_constant<Fmt, Fmt::bf16>;
  using PH = std::integral_constant<Fmt, Fmt::f16>;
  using SQ = std::integral_constant<Fmt, Fmt::q8>;
  const auto with_state = [&](auto pf) {
    if (c.sf == Fmt::f32) go(pf, P32{});
    else if (c.sf == Fmt::bf16) go(pf, PB{});
    else go(pf, SQ{});
  };
  if (c.pf == Fmt::f32) with_state(P32{});
  else if (c.pf == Fmt::bf16) with_state(PB{});
  else with_state(PH{});
}

double scalar(const std::vector<double>& v, size_t i) {
  if (i >= v.size()) throw py::value_error("scalars: too few values for this rule");
  return v[i];
}

// The rule from its hyper-parameters and the step count, through the rule's one
// step-scalar function (Rule::at), as the fp32 optimizers build it.
//   sgd:  x = [lr, momentum, dampening, weight_decay], flags = [nesterov, maximize, first, textbook]
//   adam: x = [lr, beta1, beta2, eps, weight_decay],   flags = [maximize, decoupled] (AMSGrad: 3 states)
//   rmsprop: x = [lr, alpha, eps, weight_decay, momentum], flags = [nesterov, maximize, centered]
//         (states: square_avg, then grad_avg when centered, then momentum_buffer when momentum > 0)
void lowp_step(const std::string& rule, const std::vector<double>& x, const std::vector<bool>& flags,
               py::handle params, py::handle grads, py::handle masters, py::handle states, py::handle scales,
               const std::string& param_fmt, const std::string& state_fmt, bool stochastic, uint64_t seed,
               uint64_t step, int64_t block) {
  Call c = gather_call(params, grads, masters, states, scales, param_fmt, state_fmt, block);
  c.cfg.seed = seed;
  c.cfg.step = step;
  c.cfg.sr_param = stochastic;
  const auto flag = [&](size_t i, bool fallback) { return i < flags.size() ? bool(flags[i]) : fallback; };
  using F = float;
  if (rule == "sgd") {
    const rules::SgdHyper h{scalar(x, 0), scalar(x, 1), scalar(x, 2), scalar(x, 3),
                            flag(0, false), flag(1, false), flag(3, false)};
    const rules::Counters k{flag(2, false) ? 1.0 : 2.0};  // Sgd::at: the first step initialises the buffers
    if (c.n_states == 1) run(rules::Sgd<F, true>::at(h, k), c);
    else run(rules::Sgd<F, false>::at(h, k), c);
  } else if (rule == "adam") {
    if (step < 1) throw py::value_error("step: must be >= 1 for adam (bias corrections), got 0");
    const rules::AdamHyper h{scalar(x, 0), scalar(x, 1), scalar(x, 2), scalar(x, 3), scalar(x, 4),
                             flag(1, false), flag(0, false)};
    const rules::Counters k{double(step)};
    if (c.n_states == 3) run(rules::Adam<F, true>::at(h, k), c);
    else run(rules::Adam<F, false>::at(h, k), c);
  } else if (rule == "rmsprop") {
    const rules::RMSpropHyper h{scalar(x, 0), scalar(x, 1), scalar(x, 2), scalar(x, 3), scalar(x, 4),
                                flag(0, false), flag(1, false)};
    const rules::Counters k{double(step)};
    const bool centered = flag(2, false), momentum = h.momentum > 0.0;
    if (centered && momentum) run(rules::RMSprop<F, true, true>::at(h, k), c);
    else if (centered) run(rules::RMSprop<F, true, false>::at(h, k), c);
    else if (momentum) run(rules::RMSprop<F, false, true>::at(h, k), c);
    else run(rules::RMSprop<F, false, false>::at(h, k), c);
  } else {
    throw py::value_error("rule: unsupported rule '" + rule + "'");
  }
}

}  // namespace

void register_lowp_step(py::module_& m) {
  m.def("lowp_step", &lowp_step, py::arg("rule"), py::arg("scalars"), py::arg("flags"), py::arg("params"),
        py::arg("grads"), py::arg("masters"), py::arg("states"), py::arg("scales"), py::arg("param_dtype"),
        py::arg("state_dtype"), py::arg("stochastic"), py::arg("seed"), py::arg("step"), py::arg("block"),
        "One optimizer step with low-precision storage (lowp_loop.hpp).");
}

}  // namespace optkern
