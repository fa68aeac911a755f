// Fused elementwise kernels of the built-in MLP (optkern.nn): activations
// with f, f', f'' in one pass, and softmax cross-entropy forward / backward /
// R-forward over rows. The math is in rules/activation.hpp and rules/loss.hpp;
// this file holds the OpenMP loops and the bindings. Every element and every
// row is computed by one thread in a fixed order, so results do not depend on
// the thread count.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <string>

#include "activation_loop.hpp"
#include "parallel.hpp"
#include "py_arrays.hpp"
#include "optkern/rules/activation.hpp"
#include "optkern/rules/loss.hpp"
#include "optkern/signatures.hpp"

namespace optkern {
namespace {

template <class T, rules::Act K> void activation_loop_k(const T* z, T* a, T* d1, T* d2, int64_t n) {
  const auto chunks = make_chunks({n});
  // (work: z and the outputs, and about four array passes' time for the exp or tanh, parallel.hpp)
  for_each_chunk(chunks, n * (6 + (d1 ? 1 : 0) + (d2 ? 1 : 0)), [&](const Chunk& c) {
    activation_range<T, K>(z + c.start, a + c.start, d1 ? d1 + c.start : nullptr, d2 ? d2 + c.start : nullptr,
                           c.len);
  });
}

template <class T> void activation_loop(rules::Act k, const T* z, T* a, T* d1, T* d2, int64_t n) {
  using rules::Act;
  switch (k) {
    case Act::tanh: return activation_loop_k<T, Act::tanh>(z, a, d1, d2, n);
    case Act::relu: return activation_loop_k<T, Act::relu>(z, a, d1, d2, n);
    case Act::gelu: return activation_loop_k<T, Act::gelu>(z, a, d1, d2, n);
    case Act::sigmoid: return activation_loop_k<T, Act::sigmoid>(z, a, d1, d2, n);
    case Act::softplus: return activation_loop_k<T, Act::softplus>(z, a, d1, d2, n);
    default: return activation_loop_k<T, Act::identity>(z, a, d1, d2, n);
  }
}

// Rows in blocks of kRows: enough work per task for small C.
constexpr int64_t kRows = 64;

template <class F> void for_rows(int64_t rows, int64_t cols, F&& f) {
  const auto chunks = make_chunks({rows}, kRows);
  for_each_chunk(chunks, rows * (cols > 0 ? cols : 1) * 8, [&](const Chunk& c) {
    for (int64_t i = c.start; i < c.start + c.len; ++i) f(i);
  });
}

void activation_fwd(const std::string& kind, py::handle z_h, py::handle a_h, py::handle d1_h, py::handle d2_h) {
  const rules::Act k = sig::parse_activation(kind);
  const py::dtype dt = float_dtype<HostArrays>(z_h, "z");
  HostArgs args(dt);
  const char* z = args.get(z_h, "z", -1, false);
  const auto shape = HostArrays::shape(z_h);
  char* a = args.shaped(a_h, "a", shape, true);
  char* d1 = d1_h.is_none() ? nullptr : args.shaped(d1_h, "d1", shape, true);
  char* d2 = d2_h.is_none() ? nullptr : args.shaped(d2_h, "d2", shape, true);
  args.check_overlap();
  const int64_t n = int64_t(py::reinterpret_borrow<py::array>(z_h).size());
  dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    py::gil_scoped_release nogil;
    activation_loop<T>(k, reinterpret_cast<const T*>(z), reinterpret_cast<T*>(a), reinterpret_cast<T*>(d1),
                       reinterpret_cast<T*>(d2), n);
  });
}

// The (N, C) shape of a 2-D array `what` (logits, log-probabilities).
std::vector<int64_t> rows_classes(py::handle h, const char* what) {
  const auto s = HostArrays::shape(h);
  if (s.size() != 2) throw py::value_error(std::string(what) + ": expected a 2-D array (rows, classes)");
  return s;
}

// One row of the loss and of its R-operator, per ISA clone like every element loop: the rules' fmas
// (and exp's polynomial) are then instructions, not calls.
template <class T>
OK_CLONES T xent_one_row(const T* z, int64_t C, int64_t y, const rules::XentHP<T>& h, T* logp, T* g) {
  return rules::xent_row(z, C, y, h, logp, g);
}
template <class T>
OK_CLONES void xent_rop_one_row(const T* logp, const T* r, int64_t C, const rules::XentHP<T>& h, T* out) {
  rules::xent_rop_row(logp, r, C, h, out);
}

void softmax_xent_fwd(py::handle logits_h, py::handle labels_h, py::handle loss_h, py::handle logp_h,
                      py::handle dlogits_h, double smoothing, double penalty, double scale) {
  const py::dtype dt = float_dtype<HostArrays>(logits_h, "logits");
  HostArgs args(dt);
  const char* z = args.get(logits_h, "logits", -1, false);
  const auto NC = rows_classes(logits_h, "logits");
  const int64_t N = NC[0], C = NC[1];
  if (C < 1) throw py::value_error("logits: needs at least one class");
  const auto* yp = args.shaped<const int64_t>(labels_h, "labels", py::dtype::of<int64_t>(), {N}, false);
  char* loss = args.shaped(loss_h, "loss", {N}, true);
  char* logp = logp_h.is_none() ? nullptr : args.shaped(logp_h, "logp", NC, true);
  char* g = dlogits_h.is_none() ? nullptr : args.shaped(dlogits_h, "dlogits", NC, true);
  sig::check_xent_args(smoothing, penalty, scale);
  args.check_overlap();
  for (int64_t i = 0; i < N; ++i)
    if (yp[i] < 0 || yp[i] >= C)
      throw py::value_error("labels[" + std::to_string(i) + "]: " + std::to_string(yp[i]) +
                            " is outside [0, " + std::to_string(C) + ")");
  dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    const rules::XentHP<T> h{T(smoothing), T(penalty), T(scale)};
    const T* zp = reinterpret_cast<const T*>(z);
    T* lp = reinterpret_cast<T*>(loss);
    T* logpp = reinterpret_cast<T*>(logp);
    T* gp = reinterpret_cast<T*>(g);
    py::gil_scoped_release nogil;
    for_rows(N, C, [&](int64_t i) {
      lp[i] = xent_one_row(zp + i * C, C, yp[i], h, logpp ? logpp + i * C : nullptr, gp ? gp + i * C : nullptr);
    });
  });
}

void softmax_xent_rop(py::handle logp_h, py::handle r_h, py::handle out_h, double penalty, double scale) {
  const py::dtype dt = float_dtype<HostArrays>(logp_h, "logp");
  HostArgs args(dt);
  const char* logp = args.get(logp_h, "logp", -1, false);
  const auto NC = rows_classes(logp_h, "logp");
  const int64_t N = NC[0], C = NC[1];
  const char* r = args.shaped(r_h, "r", NC, false);
  char* out = args.shaped(out_h, "out", NC, true);
  sig::check_xent_args(0.0, penalty, scale);
  args.check_overlap();
  dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    const rules::XentHP<T> h{T(0), T(penalty), T(scale)};
    const T* lp = reinterpret_cast<const T*>(logp);
    const T* rp = reinterpret_cast<const T*>(r);
    T* op = reinterpret_cast<T*>(out);
    py::gil_scoped_release nogil;
    for_rows(N, C, [&](int64_t i) { xent_rop_one_row(lp + i * C, rp + i * C, C, h, op + i * C); });
  });
}

}  // namespace

void register_nn(py::module_& m) {
  sig::nn(m, &activation_fwd, &softmax_xent_fwd, &softmax_xent_rop);
}

}  // namespace optkern
