// Python signatures of the L-BFGS, SAM and CG kernels that optkern._cpu and optkern._cuda both
// export (cpp/lbfgs.cpp, cpp/sam.cpp, cpp/cg.cpp and their cuda/*.cu twins): written once, so the two
// modules cannot drift apart. Vectors are 1-D; the history is two lists S, Y of
// 1-D rows (pairs), oldest first.
#pragma once
#include <pybind11/pybind11.h>

#include <utility>

#include "optkern/scalar_checks.hpp"
#include "optkern/named_reals.hpp"

namespace optkern {
namespace sig {
namespace py = pybind11;
using py::arg;

template <class Push, class Dir, class Move, class Stats>
void lbfgs(py::module_& m, Push push, Dir direction, Move move, Stats stats) {
  // (t: a finite real, converted and checked here for both functions, before the arrays)
  const auto step_length = [](const checks::Real& t) { return checks::real_in("t", t, checks::kFinite); };
  m.def("lbfgs_push_",
        [push, step_length](py::object S, py::object Y, py::object s_new, py::object y_new, py::object g,
                            py::object prev_g, py::object d, const checks::Real& t, py::object out) {
          push(S, Y, s_new, y_new, g, prev_g, d, step_length(t), out);
        },
        arg("S"), arg("Y"), arg("s_new"), arg("y_new"), arg("g"), arg("prev_g"), arg("d"),
        arg("t"), arg("out"),
        "One pass over the history (lists S, Y of k rows, oldest first): y_new = g - prev_g, s_new = t d, "
        "prev_g = g, and into out (float64, 5 k + 4): for each row j s_new.y_j, y_new.s_j, y_new.y_j, g.s_j, "
        "g.y_j; then "
        "y_new.s_new, y_new.y_new, g.s_new, g.y_new. Deterministic (fixed blocking, float64 sums).");
  def_named(m, "lbfgs_direction_", direction, arg("S"), arg("Y"), arg("coef_s"), arg("coef_y"), arg("g"),
        arg("g_scale"), arg("d"), arg("out"),
        "One pass: d = g_scale g + sum_j coef_y[j] Y[j] + coef_s[j] S[j] (accumulated in the "
        "array type); out[0] = g.d, out[1] = max |d| (float64).");
  m.def("lbfgs_move_",
        [move, step_length](py::object params, py::object x, py::object d, const checks::Real& t,
                            checks::Flag save) { move(params, x, d, step_length(t), save); },
        arg("params"), arg("x"), arg("d"), arg("t"), arg("save"),
        "Over the params (a list, read as one flat vector): save=True: x = p, p = p + t d; "
        "save=False: p = x + t d; x None (save=True only): p = p + t d, no copy kept.");
  m.def("lbfgs_stats", stats, arg("g"), arg("out"), "out[0] = max |g|, out[1] = sum |g| (float64).");
}

// sam_perturb_'s rho and eps as real numbers in [0, inf) (the shared checks, with optim/sam.py's
// messages), before anything is read.
inline std::pair<double, double> sam_scalars(const checks::Real& rho_arg, const checks::Real& eps_arg) {
  const double rho = checks::real_in("rho", rho_arg, checks::kNonnegative);
  return {rho, checks::real_in("eps", eps_arg, checks::kNonnegative)};
}

template <class Perturb, class Restore>
void sam(py::module_& m, Perturb perturb, Restore restore) {
  m.def("sam_perturb_", perturb, arg("params"), arg("grads"), arg("backups"), arg("rho"), arg("eps"),
        arg("out"), arg("adaptive") = false,
        "SAM's ascent step: out[0] = ||grads|| (float64, deterministic), scale = rho / (||grads|| + eps) "
        "(0 when rho = 0), backups = params, params += scale grads; two passes, one call. adaptive=True "
        "(ASAM): out[0] = ||params * grads||, params += scale params^2 grads.");
  m.def("sam_restore_", restore, arg("params"), arg("backups"), "params = backups (SAM's return to w).");
}

template <class Curv, class Update, class Dir, class Iter>
void cg(py::module_& m, Curv curvature, Update update, Dir direction, Iter iteration) {
  def_named(m, "cg_curvature", curvature, arg("p"), arg("y"), arg("damping"),
        "CG's curvature along p from y = A p: p.(y + damping p), summed in float64 (deterministic). "
        "With damping = 0 a plain dot product.");
  def_named(m, "cg_update_", update, arg("x"), arg("r"), arg("p"), arg("y"), arg("alpha"), arg("damping"),
        "One pass: x += alpha p, r -= alpha (y + damping p); returns r.r (float64, deterministic).");
  def_named(m, "cg_direction_", direction, arg("p"), arg("z"), arg("beta"), "p = z + beta p, in place.");
  def_named(m, "cg_iteration_", iteration, arg("x"), arg("r"), arg("p"), arg("y"), arg("rz"), arg("damping"), arg("tol"),
        arg("stop_on_negative_curvature"),
        "One unpreconditioned CG iteration after y = A p, as cg_curvature, cg_update_ and cg_direction_ in turn "
        "(the same bits): pAp = p.(y + damping p); when pAp is finite and positive (any sign with "
        "stop_on_negative_curvature=False) and alpha = rz / pAp finite, x += alpha p, r -= alpha (y + damping p), "
        "rr = r.r; when sqrt(rr) > tol and beta = rr / rz finite, p = r + beta p. Returns (pAp, rr), rr NaN "
        "when x and r were not written.");
}

}  // namespace sig
}  // namespace optkern
