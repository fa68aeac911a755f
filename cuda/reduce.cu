// Global reductions and gradient transforms on CuPy arrays, without host
// synchronization: results stay in 1-element float64 device arrays and the
// ops that need them (clip_scale_, the AdaGrad-Norm update) read them on the
// device. Reductions are two-stage and deterministic (multi_tensor.cuh) and
// accumulate in float64. Their Python signatures: optkern/signatures_reduce.hpp.
#include <pybind11/pybind11.h>

#include <cmath>
#include <limits>

#include "list_call.cuh"
#include "optkern/reduce_args.hpp"
#include "optkern/rules/optim.hpp"
#include "optkern/rules/pnorm.hpp"
#include "optkern/signatures_optim.hpp"
#include "optkern/signatures_reduce.hpp"

namespace optkern {

namespace {

// ---- per-element contributions (stage 1) --------------------------------------
template <class T> struct SumSquares {
  static constexpr int kDepth = 1;
  static constexpr bool kMax = false;
  __device__ double operator()(const T* v) const { const double x = v[0]; return x * x; }
};
template <class T> struct SumAbs {
  static constexpr int kDepth = 1;
  static constexpr bool kMax = false;
  __device__ double operator()(const T* v) const { return fabs(double(v[0])); }
};
// |x 2^-e|^p, e from max |x| (the first pass's, read on the device: rules/pnorm.hpp)
template <class T> struct SumPowScaled {
  static constexpr int kDepth = 1;
  static constexpr bool kMax = false;
  double p;
  const double* amax;
  __device__ double operator()(const T* v) const {
    return rules::pnorm_term(double(v[0]), rules::pnorm_scale(rules::pnorm_exp(amax[0])), p);
  }
};
template <class T> struct MaxAbs {
  static constexpr int kDepth = 1;
  static constexpr bool kMax = true;
  __device__ double operator()(const T* v) const { return fabs(double(v[0])); }
};
template <class T> struct NonFinite {
  static constexpr int kDepth = 1;
  static constexpr bool kMax = true;
  __device__ double operator()(const T* v) const { return isfinite(v[0]) ? 0.0 : 1.0; }
};
// ||g_eff||^2 over lists (p, g), g_eff as the AdaGrad-Norm update sees it.
template <class T> struct EffectiveGradSquares {
  static constexpr int kDepth = 2;
  static constexpr bool kMax = false;
  T weight_decay;
  bool maximize;
  __device__ double operator()(const T* v) const {
    const double x = rules::effective_grad(v[0], v[1], weight_decay, maximize);
    return x * x;
  }
};

// ---- what the total becomes (stage 2) -----------------------------------------
enum class Root { none, sqrt };
template <bool Max> struct NormOut {
  static constexpr bool kMax = Max;
  double* out;
  Root root;
  __device__ void operator()(double s) const {
    out[0] = root == Root::sqrt ? sqrt(s) : s;
  }
};
struct PowScaledOut {  // out[0] holds max |x| until the root replaces it
  static constexpr bool kMax = false;
  double* out;
  double p;
  __device__ void operator()(double s) const { out[0] = rules::pnorm_root(s, rules::pnorm_exp(out[0]), p); }
};
struct AllFiniteOut {
  static constexpr bool kMax = true;
  double* out;
  __device__ void operator()(double flag) const { out[0] = flag > 0.0 ? 0.0 : 1.0; }
};
struct AddTo {  // b^2 += ||g_eff||^2
  static constexpr bool kMax = false;
  double* acc;
  __device__ void operator()(double s) const { acc[0] += s; }
};

// A finite p's terms (stage 1: op(Terms)) and what their total becomes (stage 2: fin(End)), chosen
// here once for grad_norm and for the distributed norm's grad_norm_parts / grad_norm_finish, so
// the ranks' gathered partials end as one process's (the same kernels, the same tree over them).
template <class T, class F> void finite_norm_terms(double p, const double* amax, F&& op) {
  if (p == 2.0) op(SumSquares<T>{});
  else if (p == 1.0) op(SumAbs<T>{});
  else op(SumPowScaled<T>{p, amax});
}
template <class F> void finite_norm_end(double p, double* out, F&& fin) {
  if (p == 2.0) fin(NormOut<false>{out, Root::sqrt});
  else if (p == 1.0) fin(NormOut<false>{out, Root::none});
  else fin(PowScaledOut{out, p});  // out holds max |x| until the root replaces it
}

// ---- transforms whose scalar lives on the device ------------------------------

// g *= min(1, max_norm / (total_norm + 1e-6)) (torch.nn.utils.clip_grad_norm_;
// a NaN norm gives NaN gradients, as there).
template <class T> struct ClipByNorm {
  static constexpr int kDepth = 1;
  static constexpr unsigned kWritten = 1u;
  double max_norm;
  const double* total_norm;
  rules::NormDtype norm_dtype;
  __device__ mt::MapOp<rules::Scale<T>, T> load() const {
    return {rules::Scale<T>{rules::clip_coef_of<T>(norm_dtype, max_norm, total_norm[0])}};
  }
};

// AdaGrad-Norm (Ward, Wu & Bottou 2019): after b^2 += ||g_eff||^2, the step
// of rules::adagrad_norm_at with b^2 read from the device (as on the CPU).
template <class T> struct AdagradNormStep {
  static constexpr int kDepth = 2;
  static constexpr unsigned kWritten = 1u;
  rules::AdagradNormHyper hyper;
  const double* b_sq;
  __device__ mt::RuleOp<rules::Sgd<T, false>, T> load() const { return {rules::adagrad_norm_at<T>(hyper, b_sq[0])}; }
};

// ---- bindings --------------------------------------------------------------------

void grad_norm(py::object arrays, double norm_type, py::object out) {
  const bool inf = reduce_args::check_norm_type(norm_type);
  ListCall a(arrays, "arrays", false);
  double* o = a.add_buffer(out, "out", 1, true);
  a.ready(/*always_launch=*/true);
  dispatch_float(a.dtype(), [&](auto z) {
    using T = decltype(z);
    // (p other than 1 and 2: max |x| into out first, which the scaled terms and the root read)
    if (inf || (norm_type != 1.0 && norm_type != 2.0)) a.reduce<T>(MaxAbs<T>{}, NormOut<true>{o, Root::none});
    if (inf) return;
    finite_norm_terms<T>(norm_type, o, [&](auto op) {
      finite_norm_end(norm_type, o, [&](auto fin) { a.reduce<T>(op, fin); });
    });
  });
}

// grad_norm's stage-1 partials (one a chunk, in the order its stage 2 combines them) in a new
// float64 CuPy array, the terms of p other than 1 and 2 scaled by out[0]'s power of two (the max
// |x| of every array the norm takes: a distributed norm's global one). A list's partials are its
// parts' (the list split between any two arrays) concatenated: every rank's, gathered in rank order
// and finished by grad_norm_finish, are the one process's norm to the bit, with no host sync.
py::object grad_norm_parts(py::object arrays, double norm_type, py::object out) {
  reduce_args::check_finite_norm_type(norm_type);
  ListCall a(arrays, "arrays", false);
  const double* o = a.add_buffer(out, "out", 1, true);  // (checked as grad_norm's: refused before any collective)
  a.ready(/*always_launch=*/true);
  const int64_t n = a.partial_count();
  py::object parts = py::module_::import("cupy").attr("empty")(n, "float64");
  auto* d = reinterpret_cast<double*>(py::cast<uintptr_t>(parts.attr("data").attr("ptr")));
  if (n > 0)
    dispatch_float(a.dtype(), [&](auto z) {
      using T = decltype(z);
      finite_norm_terms<T>(norm_type, o, [&](auto op) { a.partials<T>(op, d); });
    });
  return parts;
}

// The norm from grad_norm_parts' partials (every rank's, in rank order): combined and rooted as
// grad_norm's stage 2 (rules::pnorm_root by out[0]'s power of two for p other than 1 and 2: one
// definition, on the device), into out[0].
void grad_norm_finish(py::object parts, double norm_type, py::object out) {
  reduce_args::check_finite_norm_type(norm_type);
  ListCall a(py::list(), "parts", false);
  const double* v = a.add_buffer(parts, "parts", -1, false);
  const auto dims = py::cast<int64_t>(parts.attr("ndim"));
  if (dims != 1) throw py::value_error("parts: expected a 1-D array, got " + std::to_string(dims) + " dimensions");
  const auto n = py::cast<int64_t>(parts.attr("size"));
  double* o = a.add_buffer(out, "out", 1, true);
  a.ready(/*always_launch=*/true);
  finite_norm_end(norm_type, o, [&](auto fin) { a.finish(v, n, fin); });
}

void grad_sq_norm(py::object arrays, py::object out) {
  ListCall a(arrays, "arrays", false);
  double* o = a.add_buffer(out, "out", 1, true);
  a.ready(/*always_launch=*/true);
  dispatch_float(a.dtype(), [&](auto z) {
    using T = decltype(z);
    a.reduce<T>(SumSquares<T>{}, NormOut<false>{o, Root::none});
  });
}

void clip_scale(py::object arrays, double max_norm, py::object total_norm_buf, const std::string& norm_dtype) {
  const rules::NormDtype nd = reduce_args::norm_dtype_of(norm_dtype);
  ListCall a(arrays, "arrays", true);
  const double* tn = a.add_buffer(total_norm_buf, "total_norm_buf", 1, false);
  if (!a.ready()) return;
  dispatch_float(a.dtype(), [&](auto z) {
    using T = decltype(z);
    a.apply<T>(ClipByNorm<T>{max_norm, tn, nd});
  });
}

void clamp(py::object arrays, double clip_value) {
  reduce_args::check_clip_value(clip_value);
  ListCall a(arrays, "arrays", true);
  if (!a.ready()) return;
  dispatch_float(a.dtype(), [&](auto z) {
    using T = decltype(z);
    a.apply<T>(mt::MapOp<rules::ClampValue<T>, T>{rules::ClampValue<T>{T(clip_value)}});
  });
}

void all_finite(py::object arrays, py::object out) {
  ListCall a(arrays, "arrays", false);
  double* o = a.add_buffer(out, "out", 1, true);
  a.ready(/*always_launch=*/true);
  dispatch_float(a.dtype(), [&](auto z) {
    using T = decltype(z);
    a.reduce<T>(NonFinite<T>{}, AllFiniteOut{o});
  });
}

void adagrad_norm(py::object params, py::object grads, py::object b_sq, const rules::AdagradNormHyper& h) {
  ListCall a(params, "params", true);
  a.require(grads, "grads", false);
  double* b = a.add_buffer(b_sq, "b_sq", 1, true);
  a.ready(/*always_launch=*/true);  // b^2 += 0 still runs for empty lists
  dispatch_float(a.dtype(), [&](auto z) {
    using T = decltype(z);
    sig::check_adagrad_norm_in(h, sizeof(T));  // (nothing launched yet)
    a.reduce<T>(EffectiveGradSquares<T>{T(h.weight_decay), h.maximize}, AddTo{b});
    a.apply<T>(AdagradNormStep<T>{h, b});
  });
}

}  // namespace

void register_reduce(py::module_& m) {
  sig::norms(m, &grad_norm, &grad_norm_parts, mt::kChunk, &grad_norm_finish, &grad_sq_norm);
  sig::clipping(m, &clip_scale, &clamp, &all_finite);
  sig::adagrad_norm(m, &adagrad_norm);
}

}  // namespace optkern
