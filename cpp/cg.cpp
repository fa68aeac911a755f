// The vector work of one conjugate-gradient iteration (hessian.cg), fused into three passes
// over n instead of about a dozen NumPy calls and their temporaries:
//   cg_curvature   p.(y + lambda p)                               reads p, y
//   cg_update_     x += alpha p,  r -= alpha (y + lambda p);  r.r   reads x, r, p, y; writes x, r
//   cg_direction_  p = z + beta p                                 reads z, p; writes p
//   cg_iteration_  the three in turn (z = r, no preconditioner) in one parallel region, each
//                  thread on the same chunks in each step: one crossing from Python per iteration
//   cg_iteration_known_  the update and the direction (with p.p) where the operator told p.A p
//   cg_start_      r = b / s (s a power of two), r.r; p = r and x = 0 from a cold start   reads b
// where y = A p is the operator's product (never written: an operator may hand back an array it
// keeps). The sums are in float64 over fixed chunks added in chunk order, so they are the same
// for any thread count (NumPy's float32 dot accumulates in float32).
#include <pybind11/pybind11.h>

#include <cmath>
#include <string>
#include <vector>

#include "cg_loops.hpp"
#include "cg_threads.hpp"
#include "lane_sums.hpp"
#include "optkern/cg_args.hpp"
#include "optkern/rules/second_order.hpp"
#include "optkern/signatures_second_order.hpp"
#include "parallel.hpp"
#include "py_arrays.hpp"
#include "optkern/scalar_checks.hpp"
#include "optkern/named_reals.hpp"

namespace optkern {
namespace {

template <class T, bool kScaled = false>
OK_CLONES double curvature_loop(const T* OK_RESTRICT p, const T* OK_RESTRICT y, T lambda, int64_t n) {
  return lane_sum<double>(n, [&](int64_t i) { return rules::cg_curvature_term<kScaled>(y[i], p[i], lambda); });
}

// p.(y + lambda p) where its plain sum was not finite, summed again scaled (rules::cg_curvature_term)
// on the calling thread, chunk by chunk in order as reduce_chunks adds them: the same bits for any
// thread count. (The callers test the plain sum first: the common case pays that test only.)
template <class T, class Chunks> double curvature_scaled(const Chunks& chunks, const T* p, const T* y, T lambda) {
  double t = 0.0;
  for (const auto& c : chunks) t += curvature_loop<T, true>(p + c.start, y + c.start, lambda, c.len);
  return rules::cg_curvature_unscale(t);
}

double cg_curvature(py::handle p_h, py::handle y_h, double damping) {
  Vectors v(p_h, "p");
  const char* p = v.add(p_h, "p", false);
  const char* y = v.add(y_h, "y", false);
  finite("damping", damping);
  return by_dtype(v.dt, [&](auto tag) {
    using T = decltype(tag);
    const T* pt = reinterpret_cast<const T*>(p);
    const T* yt = reinterpret_cast<const T*>(y);
    const double s =
        v.sum(2, [&](int64_t lo, int64_t len) { return curvature_loop<T>(pt + lo, yt + lo, T(damping), len); });
    return std::isfinite(s) ? s : curvature_scaled<T>(make_chunks({v.n}), pt, yt, T(damping));
  });
}

double cg_update(py::handle x_h, py::handle r_h, py::handle p_h, py::handle y_h, double alpha, double damping) {
  Vectors v(x_h, "x");
  char* x = v.add(x_h, "x", true);
  char* r = v.add(r_h, "r", true);
  const char* p = v.add(p_h, "p", false);
  const char* y = v.add(y_h, "y", false);
  finite("alpha", alpha);
  finite("damping", damping);
  return by_dtype(v.dt, [&](auto tag) {
    using T = decltype(tag);
    return v.sum(4, [&](int64_t lo, int64_t len) {
      return update_loop<T>(reinterpret_cast<T*>(x) + lo, reinterpret_cast<T*>(r) + lo,
                            reinterpret_cast<const T*>(p) + lo, reinterpret_cast<const T*>(y) + lo, T(alpha),
                            T(damping), len);
    });
  });
}

void cg_direction(py::handle p_h, py::handle z_h, double beta) {
  Vectors v(p_h, "p");
  char* p = v.add(p_h, "p", true);
  const char* z = v.add(z_h, "z", false);
  finite("beta", beta);
  by_dtype(v.dt, [&](auto tag) {
    using T = decltype(tag);
    return v.sum(2, [&](int64_t lo, int64_t len) {
      direction_loop<T>(reinterpret_cast<T*>(p) + lo, reinterpret_cast<const T*>(z) + lo, T(beta), len);
      return 0.0;
    });
  });
}

// hessian.cg's start in one pass over b instead of four NumPy passes and a native one (b / s, r.r,
// zeros for x, a copy of r for p): r = b / s (s a power of two: exact, rounded as NumPy's b / s where
// it underflows), r.r summed as cg_curvature(r, r, 0) sums it (the same terms, chunks and lanes: the
// same bits), and, where given (a cold start without a preconditioner), p = r and x = 0.
template <class T, bool kCold>
OK_CLONES double start_loop(const T* OK_RESTRICT b, T* OK_RESTRICT r, T* OK_RESTRICT p, T* OK_RESTRICT x, T s,
                            int64_t n) {
  return lane_sum<double>(n, [&](int64_t i) {
    const T ri = b[i] / s;
    r[i] = ri;
    if constexpr (kCold) {
      p[i] = ri;
      x[i] = T(0);
    }
    return double(ri) * double(ri);
  });
}

ThreadChoice& start_choice() {
  static ThreadChoice& c = site_choice("start");
  return c;
}

double cg_start(py::handle b_h, py::handle r_h, py::handle p_h, py::handle x_h, double scale) {
  Vectors v(b_h, "b");
  const char* b = v.add(b_h, "b", false);
  char* r = v.add(r_h, "r", true);
  const bool cold = !p_h.is_none();
  if (cold == x_h.is_none()) throw py::value_error("p, x: give both (a cold start) or neither");
  char* p = cold ? v.add(p_h, "p", true) : nullptr;
  char* x = cold ? v.add(x_h, "x", true) : nullptr;
  finite("scale", scale);
  if (!(scale > 0.0) || std::ldexp(1.0, std::ilogb(scale)) != scale)
    throw py::value_error("scale: expected a power of two, got " + checks::repr(scale));
  return by_dtype(v.dt, [&](auto tag) {
    using T = decltype(tag);
    if (double(T(scale)) != scale) throw py::value_error("scale: not exact in the vectors' dtype");
    const auto at = [&](char* q, int64_t lo) { return q == nullptr ? nullptr : reinterpret_cast<T*>(q) + lo; };
    // (its own timings: once per solve, right after the caller's products -- from_mlp's GEMMs, whose
    // OpenBLAS workers spin ~0.1 s after each -- where a parallel region waited for a core: 6-15 ms a
    // solve at load 12-15 against ~50 us on the calling thread, 2 vCPUs)
    const auto f = [&](int64_t lo, int64_t len) {
      const T* bt = reinterpret_cast<const T*>(b) + lo;
      return cold ? start_loop<T, true>(bt, at(r, lo), at(p, lo), at(x, lo), T(scale), len)
                  : start_loop<T, false>(bt, at(r, lo), nullptr, nullptr, T(scale), len);
    };
    return v.sum(cold ? 4 : 2, f, &start_choice());
  });
}

// The sum of a step's partials, in chunk order from 0.0, as reduce_chunks adds them (the same bits).
double chunk_sum(const std::vector<double>& part) {
  double s = 0.0;
  for (double q : part) s += q;
  return s;
}

// The process's choice of threads for the fused iteration (cg_threads.hpp).
ThreadChoice& thread_choice() {
  static ThreadChoice& c = site_choice("iteration");
  return c;
}

// What the fused iteration's steps leave for the next (each thread its own copy, the same values).
template <class T> struct IterationState {
  double pAp = 0.0, rr = NAN;
  T alpha{}, beta{};
};

// An iteration's vectors x, r, p (written) and y = A p, read into `v` (the first names the size
// and dtype), and its scalars, checked: what cg_iteration_ and cg_iteration_known_ take alike.
struct IterationArrays {
  char *x, *r, *p;
  const char* y;
};
IterationArrays iteration_arrays(Vectors& v, py::handle x_h, py::handle r_h, py::handle p_h, py::handle y_h, double rz,
                                 double damping, double tol) {
  const IterationArrays a{v.add(x_h, "x", true), v.add(r_h, "r", true), v.add(p_h, "p", true), v.add(y_h, "y", false)};
  finite("rz", rz);
  finite("damping", damping);
  if (std::isnan(tol)) throw py::value_error("tol: must not be NaN");
  v.args.check_overlap();
  return a;
}

// for_each_chunk_steps over an iteration's `steps`, on the calling thread or a parallel region as
// `choice` has timed them faster (chosen_threads, cg_loops.hpp).
template <class State, class Chunks, class Step, class After>
State chosen_steps(ThreadChoice& choice, const Chunks& chunks, int64_t n, int64_t streams, int steps, Step&& step,
                   After&& after) {
  return chosen_threads(choice, chunks.size(), n, streams,
                        [&](int64_t work) { return for_each_chunk_steps<State>(chunks, work, steps, step, after); });
}

py::tuple cg_iteration(py::handle x_h, py::handle r_h, py::handle p_h, py::handle y_h, double rz, double damping,
                       double tol, checks::Flag stop_on_negative_curvature_arg) {
  const bool stop_on_negative_curvature = checks::flag(stop_on_negative_curvature_arg, "stop_on_negative_curvature");
  Vectors v(x_h, "x");
  const IterationArrays arrays = iteration_arrays(v, x_h, r_h, p_h, y_h, rz, damping, tol);
  char *x = arrays.x, *r = arrays.r, *p = arrays.p;  // (names: C++17 lambdas cannot capture structured bindings)
  const char* y = arrays.y;
  double pAp = 0.0, rr = NAN;
  by_dtype(v.dt, [&](auto tag) {
    using T = decltype(tag);
    using State = IterationState<T>;
    T* xt = reinterpret_cast<T*>(x);
    T* rt = reinterpret_cast<T*>(r);
    T* pt = reinterpret_cast<T*>(p);
    const T* yt = reinterpret_cast<const T*>(y);
    const T lambda = T(damping);
    const auto chunks = make_chunks({v.n});
    // one array of partials per summing step: a thread may write step 1's while another still adds
    // step 0's
    std::vector<double> curv(chunks.size()), squares(chunks.size());
    const auto step = [&](int s, const Chunk& c, const State& st) {
      const size_t i = size_t(&c - chunks.data());
      const int64_t lo = c.start;
      if (s == 0) curv[i] = curvature_loop<T>(pt + lo, yt + lo, lambda, c.len);
      if (s == 1) squares[i] = update_loop<T>(xt + lo, rt + lo, pt + lo, yt + lo, st.alpha, lambda, c.len);
      if (s == 2) direction_loop<T>(pt + lo, rt + lo, st.beta, c.len);
    };
    const auto after = [&](int s, State& st) {
      double a = 0.0, b = 0.0;
      if (s == 0) {
        st.pAp = chunk_sum(curv);
        if (!std::isfinite(st.pAp)) st.pAp = curvature_scaled<T>(chunks, pt, yt, lambda);  // (each thread: the same bits)
        const bool go = cg_args::cg_step(st.pAp, rz, stop_on_negative_curvature, a);
        st.alpha = T(a);
        return go;
      }
      st.rr = chunk_sum(squares);
      const bool go = cg_args::cg_next(st.rr, rz, tol, b);
      st.beta = T(b);
      return go;
    };
    py::gil_scoped_release nogil;
    const State end = chosen_steps<State>(thread_choice(), chunks, v.n, 8, 3, step, after);  // (2 + 4 + 2 arrays)
    pAp = end.pAp;
    rr = end.rr;
  });
  return py::make_tuple(pAp, rr);
}

ThreadChoice& known_thread_choice() {  // (its own table: its calls are of the sizes cg_iteration_'s are)
  static ThreadChoice& c = site_choice("iteration_known");
  return c;
}

// cg_iteration_ for an operator that tells pAp = p.(A + lambda I) p itself (the MLP's Gauss-Newton
// product: (J p).H_L (J p) from its output-space intermediate, plus lambda p.p): its curvature pass,
// 2 of the 11 vector streams and the pass that ran at the float-to-double conversions' rate, left
// out; p.p summed as the direction is written, for the next call (where damping is not 0).
py::tuple cg_iteration_known(py::handle x_h, py::handle r_h, py::handle p_h, py::handle y_h, double pAp, double rz,
                             double damping, double tol, checks::Flag stop_on_negative_curvature_arg) {
  const bool stop_on_negative_curvature = checks::flag(stop_on_negative_curvature_arg, "stop_on_negative_curvature");
  Vectors v(x_h, "x");
  const IterationArrays arrays = iteration_arrays(v, x_h, r_h, p_h, y_h, rz, damping, tol);
  char *x = arrays.x, *r = arrays.r, *p = arrays.p;  // (names: C++17 lambdas cannot capture structured bindings)
  const char* y = arrays.y;
  double a = 0.0;
  if (!cg_args::cg_step(pAp, rz, stop_on_negative_curvature, a)) return py::make_tuple(NAN, NAN);
  double rr = NAN, pp = NAN;
  by_dtype(v.dt, [&](auto tag) {
    using T = decltype(tag);
    using State = IterationState<T>;
    T* xt = reinterpret_cast<T*>(x);
    T* rt = reinterpret_cast<T*>(r);
    T* pt = reinterpret_cast<T*>(p);
    const T* yt = reinterpret_cast<const T*>(y);
    const T lambda = T(damping), alpha = T(a);
    const bool sums_p = damping != 0.0;
    const auto chunks = make_chunks({v.n});
    std::vector<double> squares(chunks.size()), psq(chunks.size());
    const auto step = [&](int s, const Chunk& c, const State& st) {
      const size_t i = size_t(&c - chunks.data());
      const int64_t lo = c.start;
      if (s == 0) squares[i] = update_loop<T>(xt + lo, rt + lo, pt + lo, yt + lo, alpha, lambda, c.len);
      if (s == 1 && sums_p) psq[i] = direction_sum_loop<T>(pt + lo, rt + lo, st.beta, c.len);
      if (s == 1 && !sums_p) direction_loop<T>(pt + lo, rt + lo, st.beta, c.len);
    };
    const auto after = [&](int, State& st) {
      double b = 0.0;
      st.rr = chunk_sum(squares);
      const bool go = cg_args::cg_next(st.rr, rz, tol, b);
      st.beta = T(b);
      return go;
    };
    py::gil_scoped_release nogil;
    rr = chosen_steps<State>(known_thread_choice(), chunks, v.n, 9, 2, step, after).rr;  // (4 + 2 + 3 arrays)
    double b = 0.0;  // (whether the direction was written: as after() decided)
    if (cg_args::cg_next(rr, rz, tol, b)) pp = sums_p ? chunk_sum(psq) : 0.0;
  });
  return py::make_tuple(rr, pp);
}

// The times (ns) of argument `name`: a list, a tuple or a 1-D array of real numbers, each finite
// and >= 0; TypeError / ValueError naming it (and the index) otherwise, before any is replayed.
// (Cast one by one as the replay read them, a str or None raised pybind11's "Unable to cast"
// RuntimeError -- and only when read: the path not taken never was -- and NaN was a timing.)
std::vector<double> timings(py::handle seq, const char* name) {
  if (!py::isinstance<py::array>(seq)) require_list(seq, name, "a list of numbers");  // (not a str, bytes, None)
  else if (py::reinterpret_borrow<py::array>(seq).ndim() != 1)
    throw py::type_error(std::string(name) + ": expected a list of numbers, got a " +
                         std::to_string(py::reinterpret_borrow<py::array>(seq).ndim()) + "-D array");
  static PyObject* real = py::object(py::module_::import("numbers").attr("Real")).release().ptr();  // (leaked)
  const auto s = py::reinterpret_borrow<py::sequence>(seq);
  std::vector<double> out(size_t(py::len(s)));
  for (size_t i = 0; i < out.size(); ++i) {
    const py::object v = s[i];  // (an object: an array's item is made on lookup)
    const int is_real = PyObject_IsInstance(v.ptr(), real);  // (NumPy's scalars are; bool is, as an int)
    if (is_real < 0) PyErr_Clear();
    if (is_real != 1 || PyBool_Check(v.ptr()))
      throw py::type_error(item_name(name, i) + ": expected a number (ns), got " + type_name(v));
    out[i] = PyFloat_AsDouble(v.ptr());
    if (out[i] == -1.0 && PyErr_Occurred()) {
      PyErr_Clear();  // (an int past double's range: OverflowError)
      throw py::value_error(item_name(name, i) + ": expected a finite time >= 0 (ns), out of range");
    }
    if (!std::isfinite(out[i]) || out[i] < 0.0)
      throw py::value_error(item_name(name, i) + ": expected a finite time >= 0 (ns), got " +
                            py::str(v).cast<std::string>());
  }
  return out;
}

// The choices a fresh ThreadChoice makes over calls whose one-thread and all-thread times (ns) are
// given, call by call: its rules replayed on known timings (tests/test_hunt38_cg.py).
py::list cg_thread_choice_trace(py::handle serial_ns, py::handle parallel_ns) {
  const std::vector<double> serial = timings(serial_ns, "serial_ns"), parallel = timings(parallel_ns, "parallel_ns");
  if (serial.size() != parallel.size())
    throw py::value_error("serial_ns, parallel_ns: expected the same length, got " + std::to_string(serial.size()) +
                          " and " + std::to_string(parallel.size()));
  ThreadChoice c(true);
  py::list out;
  for (size_t i = 0; i < serial.size(); ++i) {
    const bool par = c.parallel(1, 2);
    c.record(1, 2, par, par ? parallel[i] : serial[i]);
    out.append(par);
  }
  return out;
}

// Each timed call site's sizes and what it runs for them (a diagnosis of issue 17's thread waits).
py::dict cg_thread_stats() {
  std::vector<std::pair<std::string, ThreadChoice*>> sites;
  {
    std::lock_guard<std::mutex> lock(choice_sites_mutex());
    sites = choice_sites();
  }
  py::dict out;
  for (const auto& [name, choice] : sites) {
    py::list rows;
    for (const auto& e : choice->entries())
      rows.append(py::make_tuple(e[0], e[1], e[2], bool(e[3]), bool(e[4])));
    out[py::str(name)] = rows;
  }
  return out;
}

}  // namespace

void register_cg(py::module_& m) {
  sig::cg(m, &cg_curvature, &cg_update, &cg_direction, &cg_iteration);
  // (host only: hessian.cg takes CuPy's b / s on the GPU)
  def_named(m, "cg_start_", &cg_start, py::arg("b"), py::arg("r"), py::arg("p"), py::arg("x"), py::arg("scale"),
        "hessian.cg's start in one pass: r = b / scale (scale a power of two), and with p, x (a cold start; "
        "else both None) p = r, x = 0. Returns r.r (float64, deterministic: cg_curvature(r, r, 0)'s bits).");
  def_named(m, "cg_iteration_known_", &cg_iteration_known, py::arg("x"), py::arg("r"), py::arg("p"), py::arg("y"),
        py::arg("pAp"), py::arg("rz"), py::arg("damping"), py::arg("tol"), py::arg("stop_on_negative_curvature"),
        "cg_iteration_ given pAp = p.(y + damping p) (an operator that tells it): when pAp is finite and positive "
        "(any sign with stop_on_negative_curvature=False) and alpha = rz / pAp finite, x += alpha p, "
        "r -= alpha (y + damping p), rr = r.r; when sqrt(rr) > tol and beta = rr / rz finite, p = r + beta p and "
        "pp = p.p (0 with damping 0). Returns (rr, pp): rr NaN when x and r were not written, pp NaN when p was not.");
  m.def("cg_thread_stats_", &cg_thread_stats,
        "hessian.cg's timed thread choices so far (cpp/cg_threads.hpp), by call site ('start', 'iteration', "
        "'iteration_known', 'update_slice', 'direction_sum'; a site appears at its first call): a list of "
        "(n, threads, calls, chosen, parallel) per vector size, parallel True where all threads were chosen.");
  m.def("cg_thread_choice_trace", &cg_thread_choice_trace, py::arg("serial_ns"), py::arg("parallel_ns"),
        "The thread choices (True: all threads) a fresh cg_iteration_ timer makes over calls that take "
        "serial_ns[i] on one thread and parallel_ns[i] on all (a test of its rules).");
}

}  // namespace optkern
