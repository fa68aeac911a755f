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

#include "nn_checks.hpp"
#include "parallel.hpp"
#include "optkern/rules/activation.hpp"
#include "optkern/rules/loss.hpp"
#include "optkern/signatures.hpp"

namespace optkern {
namespace {
using nncheck::Arg;

// One activation over [0, n): the kind is a template argument so the rule
// inlines without a switch and the loop vectorizes.
template <class T, rules::Act K>
OK_CLONES void activation_range(const T* OK_RESTRICT z, T* OK_RESTRICT a, T* OK_RESTRICT d1, T* OK_RESTRICT d2,
                                int64_t n) {
  if (d2) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) rules::activation(K, z[i], a[i], d1[i], d2[i]);
  } else if (d1) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      T g2;
      rules::activation(K, z[i], a[i], d1[i], g2);
    }
  } else {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      T g1, g2;
      rules::activation(K, z[i], a[i], g1, g2);
    }
  }
}

template <class T, rules::Act K> void activation_loop_k(const T* z, T* a, T* d1, T* d2, int64_t n) {
  const auto chunks = make_chunks({n});
  for_each_chunk(chunks, n, [&](const Chunk& c) {
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
  const py::dtype dt = nncheck::float_dtype(z_h, "z");
  py::array z = check_array(z_h, "z", dt, false);
  py::array a = check_array(a_h, "a", dt, true);
  const auto shape = nncheck::shape_of(z);
  nncheck::expect_shape(a, "a", shape);
  std::vector<Arg> args{{"z", z, false}, {"a", a, true}};
  py::array d1, d2;
  if (!d1_h.is_none()) {
    d1 = check_array(d1_h, "d1", dt, true);
    nncheck::expect_shape(d1, "d1", shape);
    args.push_back({"d1", d1, true});
  }
  if (!d2_h.is_none()) {
    d2 = check_array(d2_h, "d2", dt, true);
    nncheck::expect_shape(d2, "d2", shape);
    args.push_back({"d2", d2, true});
  }
  nncheck::no_overlap(args);
  const int64_t n = int64_t(z.size());
  auto run = [&](auto tag) {
    using T = decltype(tag);
    const T* zp = static_cast<const T*>(z.data());
    T* ap = static_cast<T*>(a.mutable_data());
    T* p1 = !d1_h.is_none() ? static_cast<T*>(d1.mutable_data()) : nullptr;
    T* p2 = !d2_h.is_none() ? static_cast<T*>(d2.mutable_data()) : nullptr;
    py::gil_scoped_release nogil;
    activation_loop<T>(k, zp, ap, p1, p2, n);
  };
  if (dt.equal(py::dtype::of<float>())) run(float{});
  else run(double{});
}

void softmax_xent_fwd(py::handle logits_h, py::handle labels_h, py::handle loss_h, py::handle logp_h,
                      py::handle dlogits_h, double smoothing, double penalty, double scale) {
  const py::dtype dt = nncheck::float_dtype(logits_h, "logits");
  py::array z = check_array(logits_h, "logits", dt, false);
  if (z.ndim() != 2) throw py::value_error("logits: expected a 2-D array (rows, classes)");
  const int64_t N = z.shape(0), C = z.shape(1);
  if (C < 1) throw py::value_error("logits: needs at least one class");
  py::array y = check_array(labels_h, "labels", py::dtype::of<int64_t>(), false);
  nncheck::expect_shape(y, "labels", {N});
  py::array loss = check_array(loss_h, "loss", dt, true);
  nncheck::expect_shape(loss, "loss", {N});
  std::vector<Arg> args{{"logits", z, false}, {"labels", y, false}, {"loss", loss, true}};
  py::array logp, g;
  if (!logp_h.is_none()) {
    logp = check_array(logp_h, "logp", dt, true);
    nncheck::expect_shape(logp, "logp", {N, C});
    args.push_back({"logp", logp, true});
  }
  if (!dlogits_h.is_none()) {
    g = check_array(dlogits_h, "dlogits", dt, true);
    nncheck::expect_shape(g, "dlogits", {N, C});
    args.push_back({"dlogits", g, true});
  }
  if (!(smoothing >= 0.0 && smoothing <= 1.0))
    throw py::value_error("label_smoothing: must be in [0, 1], got " + std::to_string(smoothing));
  if (!std::isfinite(penalty)) throw py::value_error("confidence_penalty: must be finite");
  if (!std::isfinite(scale)) throw py::value_error("scale: must be finite");
  nncheck::no_overlap(args);
  const int64_t* yp = static_cast<const int64_t*>(y.data());
  for (int64_t i = 0; i < N; ++i)
    if (yp[i] < 0 || yp[i] >= C)
      throw py::value_error("labels[" + std::to_string(i) + "]: " + std::to_string(yp[i]) +
                            " is outside [0, " + std::to_string(C) + ")");
  auto run = [&](auto tag) {
    using T = decltype(tag);
    const rules::XentHP<T> h{T(smoothing), T(penalty), T(scale)};
    const T* zp = static_cast<const T*>(z.data());
    T* lp = static_cast<T*>(loss.mutable_data());
    T* logpp = !logp_h.is_none() ? static_cast<T*>(logp.mutable_data()) : nullptr;
    T* gp = !dlogits_h.is_none() ? static_cast<T*>(g.mutable_data()) : nullptr;
    py::gil_scoped_release nogil;
    for_rows(N, C, [&](int64_t i) {
      lp[i] = rules::xent_row(zp + i * C, C, yp[i], h, logpp ? logpp + i * C : nullptr, gp ? gp + i * C : nullptr);
    });
  };
  if (dt.equal(py::dtype::of<float>())) run(float{});
  else run(double{});
}

void softmax_xent_rop(py::handle logp_h, py::handle r_h, py::handle out_h, double penalty, double scale) {
  const py::dtype dt = nncheck::float_dtype(logp_h, "logp");
  py::array logp = check_array(logp_h, "logp", dt, false);
  if (logp.ndim() != 2) throw py::value_error("logp: expected a 2-D array (rows, classes)");
  const int64_t N = logp.shape(0), C = logp.shape(1);
  py::array r = check_array(r_h, "r", dt, false);
  nncheck::expect_shape(r, "r", {N, C});
  py::array out = check_array(out_h, "out", dt, true);
  nncheck::expect_shape(out, "out", {N, C});
  if (!std::isfinite(penalty)) throw py::value_error("confidence_penalty: must be finite");
  if (!std::isfinite(scale)) throw py::value_error("scale: must be finite");
  nncheck::no_overlap({{"logp", logp, false}, {"r", r, false}, {"out", out, true}});
  auto run = [&](auto tag) {
    using T = decltype(tag);
    const rules::XentHP<T> h{T(0), T(penalty), T(scale)};
    const T* lp = static_cast<const T*>(logp.data());
    const T* rp = static_cast<const T*>(r.data());
    T* op = static_cast<T*>(out.mutable_data());
    py::gil_scoped_release nogil;
    for_rows(N, C, [&](int64_t i) { rules::xent_rop_row(lp + i * C, rp + i * C, C, h, op + i * C); });
  };
  if (dt.equal(py::dtype::of<float>())) run(float{});
  else run(double{});
}

}  // namespace

void register_nn(py::module_& m) {
  sig::nn(m, &activation_fwd, &softmax_xent_fwd, &softmax_xent_rop);
}

}  // namespace optkern
