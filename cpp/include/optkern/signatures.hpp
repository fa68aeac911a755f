// The Python-visible signatures of the native functions that optkern._cpu and
// optkern._cuda both export: names, argument names, defaults and docstrings
// written once. Each module passes its own implementations, so the two
// cannot drift apart. The optimizers' are in signatures_optim.hpp.
#pragma once
#include <pybind11/pybind11.h>

#include <cmath>
#include <string>

#include "optkern/rules/activation_kind.hpp"
#include "optkern/named_reals.hpp"

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
    throw py::value_error("label_smoothing: must be in [0, 1], got " + checks::repr(smoothing));
  checks::check_real("confidence_penalty", penalty, checks::kFinite);
  checks::check_real("scale", scale, checks::kFinite);
}

template <class Act, class Fwd, class Rop>
void nn(py::module_& m, Act activation_fwd, Fwd softmax_xent_fwd, Rop softmax_xent_rop) {
  m.def("activation_fwd", activation_fwd, arg("kind"), arg("z"), arg("a"), arg("d1") = py::none(),
        arg("d2") = py::none(), "a = f(z), d1 = f'(z), d2 = f''(z) in one pass (d1, d2 optional).");
  def_named(m, "softmax_xent_fwd", softmax_xent_fwd, arg("logits"), arg("labels"), arg("loss"), arg("logp") = py::none(),
        arg("dlogits") = py::none(), arg("label_smoothing") = 0.0, arg("confidence_penalty") = 0.0,
        arg("scale") = 1.0, "Per-row softmax cross-entropy loss; optionally log-probs and scale * dloss/dlogits.");
  def_named(m, "softmax_xent_rop", softmax_xent_rop, arg("logp"), arg("r"), arg("out"), arg("confidence_penalty") = 0.0,
        arg("scale") = 1.0, "out = scale * (Hessian of the row loss w.r.t. logits) @ r, given saved log-probs.");
}

template <class Fwd, class Bwd> void norm_rows(py::module_& m, Fwd row_norm_forward, Bwd row_norm_backward) {
  def_named(m, "row_norm_forward", row_norm_forward, arg("x"), arg("weight"), arg("bias"), arg("out"), arg("mean"),
        arg("rstd"), arg("rows"), arg("groups"), arg("group_channels"), arg("spatial"), arg("eps"), arg("rms"),
        "Layer / group / instance / RMS norm forward over rows of x (see cpp/norm_rows.cpp for the layout).");
  def_named(m, "row_norm_backward", row_norm_backward, arg("dy"), arg("x"), arg("weight"), arg("mean"), arg("rstd"),
        arg("dx"), arg("dweight"), arg("dbias"), arg("rows"), arg("groups"), arg("group_channels"), arg("spatial"),
        arg("rms"), "Backward of row_norm_forward: dx, and dweight / dbias when given.");
}

// channel_norm_forward's running buffers: both or neither, with the batch's unbiased variance,
// momentum in [0, 1] (checked before any work).
inline void check_running(py::handle var, py::handle running_mean, py::handle running_var, double momentum) {
  if (running_mean.is_none() != running_var.is_none())
    throw py::value_error(std::string(running_mean.is_none() ? "running_mean" : "running_var") +
                          ": expected an array (running_mean and running_var go together), got None");
  if (!running_mean.is_none() && var.is_none())
    throw py::value_error("var: expected the batch's unbiased variance with running buffers, got None");
  if (!(momentum >= 0.0 && momentum <= 1.0))
    throw py::value_error("momentum: must be in [0, 1], got " + checks::repr(momentum));
}

// The channel count of running_stats_: running_mean's size unless it is the odd one out (differing
// from both running_var's and mean's: then running_var's), so that the size check of each argument
// against it names the one whose size differs (from mean's alone, a short mean was blamed on var).
// A size of -1: not an array (its type check names it).
inline int64_t running_channels(int64_t running_mean, int64_t running_var, int64_t mean) {
  return running_mean != running_var && running_mean != mean ? running_var : running_mean;
}

// The low parts `lo` (channel_stats') go with batch statistics: a training call's. Eval normalizes
// around the running mean as given, so an eval call given them was handed another call's state.
inline void check_lo(py::handle lo, bool training) {
  if (!lo.is_none() && !training)
    throw py::value_error("lo: the batch statistics' mean low parts go with training=True, got training=False");
}

template <class Stats, class Fwd, class Bwd, class Run>
void norm_channels(py::module_& m, Stats channel_stats, Fwd channel_norm_forward, Bwd channel_norm_backward,
                   Run running_stats) {
  def_named(m, "running_stats_", running_stats, arg("running_mean"), arg("running_var"), arg("mean"), arg("var"),
        arg("momentum"),
        "running_mean, running_var <- (1 - momentum) running + momentum (mean, var), in place (the update "
        "channel_norm_forward makes; instance norm's batch averages).");
  def_named(m, "channel_stats", channel_stats, arg("x"), arg("mean"), arg("rstd"), arg("var"), arg("N"), arg("C"),
        arg("S"), arg("eps"), arg("lo") = py::none(),
        "Per-channel mean, rstd = 1 / sqrt(biased variance + eps) and unbiased variance (for running "
        "statistics) of x viewed as (N, C, S), all from the same merged moments; into lo (optional) the "
        "means' low parts (rules::mean_lo, 0 where not needed) that channel_norm_forward / _backward "
        "take in training, so that they do not compute them from x again.");
  def_named(m, "channel_norm_forward", channel_norm_forward, arg("x"), arg("mean"), arg("rstd"), arg("weight"),
        arg("bias"), arg("out"), arg("N"), arg("C"), arg("S"), arg("var") = py::none(),
        arg("running_mean") = py::none(), arg("running_var") = py::none(), arg("momentum") = 0.0,
        arg("training") = false, arg("lo") = py::none(),
        "out = weight[c] (x - mean[c]) rstd[c] + bias[c] for x viewed as (N, C, S); with running buffers "
        "(both, and the batch's unbiased variance var), each becomes (1 - momentum) running + momentum "
        "batch, after every argument is checked. training: mean and rstd are x's batch statistics "
        "(channel_stats), so channels far from 0 subtract the mean's low part too (rules::mean_lo): lo, "
        "channel_stats' (training only), or computed from x again where None. training=False (the default: "
        "fixed statistics, eval mode): a channel with |mean| rstd <= 8 and a finite fold computes "
        "out = x alpha + beta, alpha = rstd weight, beta = bias - mean alpha, as torch's CPU eval batch norm "
        "(rules::eval_fold); batch statistics must pass training=True.");
  def_named(m, "channel_norm_backward", channel_norm_backward, arg("dy"), arg("x"), arg("mean"), arg("rstd"),
        arg("weight"), arg("dx"), arg("dweight"), arg("dbias"), arg("N"), arg("C"), arg("S"), arg("training"),
        arg("lo") = py::none(),
        "Batch-norm backward: dx (batch statistics when training, fixed ones otherwise), dweight, dbias. "
        "lo: channel_stats' mean low parts of the batch statistics (training only), or None: from x again.");
}

template <class Fwd, class Bwd> void norm_weight(py::module_& m, Fwd weight_norm_forward, Bwd weight_norm_backward) {
  def_named(m, "weight_norm_forward", weight_norm_forward, arg("v"), arg("g"), arg("out"), arg("norm"), arg("rows"),
        arg("M"), "out[r] = g[r] v[r] / ||v[r]|| for v viewed as (rows, M); norm[r] = ||v[r]||.");
  def_named(m, "weight_norm_backward", weight_norm_backward, arg("dw"), arg("v"), arg("g"), arg("norm"), arg("dv"),
        arg("dg"), arg("rows"), arg("M"), "Gradients of weight_norm_forward with respect to v and g.");
}

template <class Fwd, class Bwd> void norm_rop(py::module_& m, Fwd norm_rop_fwd, Bwd norm_rop_bwd) {
  def_named(m, "norm_rop_fwd", norm_rop_fwd, arg("h"), arg("mean"), arg("rstd"), arg("rh"), arg("weight"),
        arg("vweight"), arg("vbias"), arg("ry"), arg("rxhat"), arg("m_xrh"), arg("axis"),
        "R-forward of batch norm (axis 0) / layer norm (axis 1) on (N, D): R{y}, R{xhat}, mean(xhat R{h}).");
  def_named(m, "norm_rop_bwd", norm_rop_bwd, arg("h"), arg("mean"), arg("rstd"), arg("dy"), arg("rdy"), arg("weight"),
        arg("vweight"), arg("rxhat"), arg("m_xrh"), arg("dh"), arg("rdh"), arg("rdweight"), arg("rdbias"),
        arg("axis"), "Backward and its R-operator: dh, R{dh}, R{dweight}, R{dbias}.");
}

template <class Orth> void linalg(py::module_& m, Orth lanczos_orthogonalize) {
  def_named(m, "lanczos_orthogonalize_", lanczos_orthogonalize, arg("Q"), arg("k"), arg("w"), arg("coeffs"),
        arg("passes") = 2,
        "Orthogonalize w against rows Q[:k] twice (CGS2; once with passes=1, enough for a w already "
        "orthogonal to Q[:k] to about sqrt(eps)), normalize it in place and return its norm before "
        "normalization (w is left unscaled when the norm is 0). coeffs[:k] (float64) receives the total "
        "projection coefficients Q[:k] w of the passes. Deterministic (any thread count; the same bits "
        "run to run on a GPU).");
}

// (The CPU module's: the GPU takes the vectors one by one through lanczos_orthogonalize_, the same bits.)
template <class Rows> void linalg_rows(py::module_& m, Rows lanczos_orthogonalize_rows) {
  def_named(m, "lanczos_orthogonalize_rows_", lanczos_orthogonalize_rows, arg("Q"), arg("k"), arg("W"), arg("coeffs"),
        arg("betas"), arg("passes") = 2,
        "lanczos_orthogonalize_ for each row W[v] of a (b, n) block, reading Q[:k] once for the block: "
        "each row is orthogonalized against Q[:k] (not against the other rows) and normalized in place, "
        "coeffs[v, :k] (float64, shape (b, >= k)) receives its coefficients and betas[v] (float64, b) its "
        "norm before normalization. Each row gets the bits lanczos_orthogonalize_ gives it alone (any "
        "thread count).");
}

// (The CPU module's: the GPU orthonormalizes row by row through lanczos_orthogonalize_, the same bits.)
template <class Orth> void orthonormal(py::module_& m, Orth orthonormalize_rows) {
  def_named(m, "orthonormalize_rows_", orthonormalize_rows, arg("Q"), arg("sines"), arg("max_passes") = 3,
        "The rows of Q (r, n) made orthonormal in place, in order: row i normalized, then CGS2 passes of "
        "lanczos_orthogonalize_ against Q[:i] (at most max_passes) while a pass leaves less than half of "
        "it; a row left zero, or still cancelling after them, is zeroed (in the span of the rows before). "
        "sines[i] (float64, r) receives the fraction of row i left by its first pass (0 for a zero row, NaN "
        "for a row not finite, kept as it is). Returns the number of rows kept. Each row gets the bits of "
        "the lanczos_orthogonalize_ calls (any thread count).");
}

template <class Comb> void combine(py::module_& m, Comb combine_rows) {
  m.def("combine_rows_", combine_rows, arg("C"), arg("V"), arg("out"), arg("transpose") = false,
        "out[i] = sum_j C[i, j] V[j] for C (k, m) and V (m, n) rows (out (k, n); (n, k), its transpose, "
        "with transpose=True), each entry summed in the order j = 0, 1, ..., m - 1, a product and an add "
        "rounded in the arrays' dtype at a time (no fused multiply-add: the bits of NumPy's and CuPy's "
        "elementwise multiply and add, for any thread count). out may be V's first k rows in place "
        "(the same array data), else must not overlap C or V.");
}

}  // namespace sig
}  // namespace optkern
