// L-BFGS on the CPU: the two memory passes of one step (rules/second_order.hpp explains the
// coefficient-space two-loop recursion they serve), plus the line search's parameter moves.
//   push:      Y[slot] = g - prev_g, S[slot] = t d, prev_g = g, and every inner product the
//              recursion needs with the new pair and the new gradient (reads each history row once);
//   direction: d = g_scale g + sum_j cy_j y_j + cs_j s_j, with g.d and max |d| on the way.
// Per sub-block sums run in the array type (float32 data: full SIMD width), block partials in float64.
// Columns are cut into fixed chunks (one OpenMP task each) and sub-blocks that stay in cache; each
// chunk keeps its own float64 partials, added in chunk order, so results are bitwise the same
// for any thread count.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "optkern/call_args.hpp"
#include "py_arrays.hpp"
#include "optkern/common.hpp"
#include "lane_sums.hpp"
#include "lbfgs_blocks.hpp"
#include "multi_tensor.hpp"
#include "parallel.hpp"
#include "optkern/rules/second_order.hpp"
#include "optkern/signatures_second_order.hpp"
#include "optkern/scalar_checks.hpp"

namespace optkern {
namespace {
namespace rs = rules;
using lbfgs::direction_block;
using lbfgs::kSub;
using lbfgs::push_block;

// The history: rows S[j], Y[j] (oldest first), each a 1-D array of n elements, read only.
struct History {
  py::dtype dt;
  ArrayList S, Y;
  int64_t n;
  int64_t k() const { return int64_t(S.count()); }
};

// dtype and n come from `like` (the gradient), which every call has.
History check_history(py::handle S_h, py::handle Y_h, py::handle like, const char* like_name) {
  const py::dtype dt = float_dtype<HostArrays>(like, like_name);
  py::array l = check_array(like, like_name, dt, false);
  if (l.ndim() != 1) throw py::value_error(std::string(like_name) + ": expected a 1-D array, got " +
                                           std::to_string(l.ndim()) + "-D");
  History h{dt, {}, {}, int64_t(l.shape(0))};
  h.S = gather(S_h, "S", dt, false);
  std::vector<int64_t> sizes(h.S.count(), h.n);
  for (size_t j = 0; j < h.S.count(); ++j) check_size(item_name("S", j), h.n, h.S.size[j]);
  h.Y = gather(Y_h, "Y", dt, false, &sizes);
  return h;
}

py::array check_vector(py::handle a, const char* name, const History& h, bool writable) {
  py::array v = check_array(a, name, h.dt, writable);
  if (v.ndim() != 1 || int64_t(v.shape(0)) != h.n) {
    std::vector<int64_t> got(v.shape(), v.shape() + v.ndim());
    throw py::value_error(std::string(name) + ": expected shape " + shape_str({h.n}) + ", got " + shape_str(got));
  }
  return v;
}

py::array check_out(py::handle a, const char* name, int64_t need) {
  py::array o = check_array(a, name, py::dtype::of<double>(), true);
  if (o.ndim() != 1 || o.shape(0) < need)
    throw py::value_error(std::string(name) + ": expected a 1-D float64 array of at least " + std::to_string(need) +
                          " elements");
  return o;
}

ArrayList single(const py::array& a) {
  ArrayList l;
  l.data.push_back(static_cast<char*>(const_cast<void*>(a.data())));
  l.size.push_back(int64_t(a.size()));
  return l;
}

std::vector<Chunk> column_chunks(int64_t n) { return make_chunks({n}); }

// ArrayList sizes in bytes (check_no_overlap counts items of `itemsize`; mixing dtypes needs one unit).
ArrayList in_bytes(const ArrayList& l, size_t itemsize) {
  ArrayList b;
  b.data = l.data;
  for (int64_t s : l.size) b.size.push_back(s * int64_t(itemsize));
  return b;
}

ArrayList bytes_of(const py::array& a) {
  ArrayList l;
  l.data.push_back(static_cast<char*>(const_cast<void*>(a.data())));
  l.size.push_back(int64_t(a.nbytes()));
  return l;
}

struct Named {
  const char* name;
  py::array a;
  bool written;
};

// No written array shares memory with any other array of the call (history rows included).
void check_disjoint(const History& h, const std::vector<Named>& vecs) {
  const size_t is = size_t(h.dt.itemsize());
  const ArrayList S = in_bytes(h.S, is), Y = in_bytes(h.Y, is);
  std::vector<ArrayList> v;
  v.reserve(vecs.size());
  for (const Named& x : vecs) v.push_back(bytes_of(x.a));
  std::vector<NamedList> all{{"S", &S, false}, {"Y", &Y, false}};
  for (size_t i = 0; i < vecs.size(); ++i) all.push_back({vecs[i].name, &v[i], vecs[i].written});
  check_no_overlap(all, 1);
}

template <class T>
void push(const History& h, T* s_new, T* y_new, const T* g, T* prev_g, const T* d, double t, double* out) {
  const int64_t n = h.n, k = h.k();
  const int64_t Q = rs::kPushPerRow * k + rs::kPushSelf;
  const auto chunks = column_chunks(n);
  std::vector<double> part(chunks.size() * size_t(Q), 0.0);
  const T tt = T(t);
  // Each thread's scratch for the new pair of a run (lbfgs_blocks.hpp's push_block): 2 values per
  // element of a run, at most push_run<T>() of them (a small model's n fewer).
  constexpr int64_t run = lbfgs::push_run<T>();
  const PerThread<T> scratch(2 * std::min(run, n));
  const bool stream = streaming::stream_output(n, sizeof(T));
  py::gil_scoped_release nogil;
  for_each_chunk(chunks, n * (2 * k + 5), [&](const Chunk& c) {  // the rows, s_new, y_new, g, prev_g, d
    double* acc = part.data() + size_t(&c - chunks.data()) * size_t(Q);
    T* mine = scratch.mine();
    for (int64_t lo = c.start; lo < c.start + c.len; lo += run)
      push_block<T>(h.S, h.Y, k, lo, std::min(run, c.start + c.len - lo), s_new, y_new, g, prev_g, d, tt, mine,
                    stream, acc);
  });
  for (int64_t q = 0; q < Q; ++q) out[q] = 0.0;
  for (size_t b = 0; b < chunks.size(); ++b)
    for (int64_t q = 0; q < Q; ++q) out[q] += part[b * size_t(Q) + size_t(q)];
}

void lbfgs_push(py::handle S_h, py::handle Y_h, py::handle sn_h, py::handle yn_h, py::handle g_h, py::handle pg_h,
                py::handle d_h, double t, py::handle out_h) {
  const History h = check_history(S_h, Y_h, g_h, "g");
  py::array g = check_vector(g_h, "g", h, false), pg = check_vector(pg_h, "prev_g", h, true);
  py::array sn = check_vector(sn_h, "s_new", h, true), yn = check_vector(yn_h, "y_new", h, true);
  py::array d = check_vector(d_h, "d", h, false);
  // (t: checked by the signature, sig::lbfgs)
  py::array out = check_out(out_h, "out", rs::kPushPerRow * h.k() + rs::kPushSelf);
  check_disjoint(h, {{"s_new", sn, true}, {"y_new", yn, true}, {"g", g, false}, {"prev_g", pg, true},
                     {"d", d, false}, {"out", out, true}});
  double* op = static_cast<double*>(out.mutable_data());
  dispatch_float(h.dt, [&](auto tag) {
    using T = decltype(tag);
    push<T>(h, static_cast<T*>(sn.mutable_data()), static_cast<T*>(yn.mutable_data()),
            static_cast<const T*>(g.data()), static_cast<T*>(pg.mutable_data()), static_cast<const T*>(d.data()), t,
            op);
  });
}

template <class T>
void direction(const History& h, const std::vector<double>& cs, const std::vector<double>& cy, const T* g,
               double g_scale, T* d, double* out) {
  const int64_t n = h.n, k = h.k();
  const auto chunks = column_chunks(n);
  std::vector<double> gd(chunks.size(), 0.0), dmax(chunks.size(), 0.0);
  const bool stream = streaming::stream_output(n, sizeof(T));
  // Each thread's accumulator for a sub-block (lbfgs_blocks.hpp's direction_block): up to kSub
  // values, 256 KiB in float64, too large for a worker thread's stack.
  const PerThread<T> scratch(std::min(kSub, n));
  py::gil_scoped_release nogil;
  for_each_chunk(chunks, n * (2 * k + 2), [&](const Chunk& c) {
    const size_t ci = size_t(&c - chunks.data());
    T* acc = scratch.mine();
    double m = 0.0;
    int nan = 0;
    for (int64_t lo = c.start; lo < c.start + c.len; lo += kSub)
      gd[ci] += direction_block<T>(h.S, h.Y, k, lo, std::min(kSub, c.start + c.len - lo), cs.data(), cy.data(), g,
                                   g_scale, d, stream, acc, &m, &nan);
    dmax[ci] = nan ? rules::abs_max_nan() : m;
  });
  double s = 0.0, m = 0.0;
  for (size_t b = 0; b < chunks.size(); ++b) {
    s += gd[b];
    m = rules::abs_max_step(m, dmax[b]);
  }
  out[0] = s;
  out[1] = m;
}

void lbfgs_direction(py::handle S_h, py::handle Y_h, std::vector<double> cs, std::vector<double> cy, py::handle g_h,
                     double g_scale, py::handle d_h, py::handle out_h) {
  const History h = check_history(S_h, Y_h, g_h, "g");
  if (int64_t(cs.size()) != h.k() || int64_t(cy.size()) != h.k())
    throw py::value_error("coef_s, coef_y: expected " + counted(h.k(), "coefficient") + " each (one per "
                          "history row), got " + std::to_string(cs.size()) + " and " + std::to_string(cy.size()));
  for (size_t j = 0; j < cs.size(); ++j)
    if (!std::isfinite(cs[j]) || !std::isfinite(cy[j]))
      throw py::value_error("coef_s, coef_y: must be finite (entry " + std::to_string(j) + ")");
  if (!std::isfinite(g_scale)) throw py::value_error("g_scale: must be finite");
  py::array g = check_vector(g_h, "g", h, false), d = check_vector(d_h, "d", h, true);
  py::array out = check_out(out_h, "out", 2);
  check_disjoint(h, {{"g", g, false}, {"d", d, true}, {"out", out, true}});
  double* op = static_cast<double*>(out.mutable_data());
  dispatch_float(h.dt, [&](auto tag) {
    using T = decltype(tag);
    direction<T>(h, cs, cy, static_cast<const T*>(g.data()), g_scale, static_cast<T*>(d.mutable_data()), op);
  });
}

// One chunk of the line search's move: p = x + t d (with save: x = p first; x null: p = p + t d, the
// last move of a step, which no evaluation follows and so keeps no copy), per ISA clone so that the
// move's fma is the instruction and not a call.
template <class T>
OK_CLONES void move_loop(T* OK_RESTRICT p, T* OK_RESTRICT x, const T* OK_RESTRICT d, T t, bool save, int64_t n) {
  if (x == nullptr) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) p[i] = rs::move(p[i], d[i], t);
  } else if (save) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      x[i] = p[i];
      p[i] = rs::move(p[i], d[i], t);
    }
  } else {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) p[i] = rs::move(x[i], d[i], t);
  }
}

void lbfgs_move(py::handle params_h, py::handle x_h, py::handle d_h, double t, checks::Flag save_arg) {
  const bool save = checks::flag(save_arg, "save");
  const py::dtype dt = list_dtype(params_h, "params");
  const ArrayList P = gather(params_h, "params", dt, true);
  const int64_t n = total_size(P.size);
  // x None: p = p + t d with no copy kept (save only: without save the move reads x)
  const bool keep = !x_h.is_none();
  if (!keep && !save) throw py::value_error("x: None needs save=True (save=False reads p = x + t d from x)");
  py::array d = check_array(d_h, "d", dt, false);
  // (in the CUDA module's words: a (2, 4) x was "got size 8", the size expected)
  const auto check_flat = [n](const py::array& a, const char* name) {
    if (a.ndim() == 1 && a.shape(0) == n) return;
    std::vector<int64_t> got(a.shape(), a.shape() + a.ndim());
    throw py::value_error(std::string(name) + ": expected shape " + shape_str({n}) + ", got " + shape_str(got));
  };
  py::array x;
  if (keep) {
    x = check_array(x_h, "x", dt, save);
    check_flat(x, "x");
  }
  check_flat(d, "d");
  // (t: checked by the signature, sig::lbfgs)
  const ArrayList D = single(d);
  if (keep) {
    const ArrayList X = single(x);
    check_no_overlap({{"params", &P, true}, {"x", &X, save}, {"d", &D, false}}, size_t(dt.itemsize()));
  } else {
    check_no_overlap({{"params", &P, true}, {"d", &D, false}}, size_t(dt.itemsize()));
  }
  std::vector<int64_t> offset(P.count() + 1, 0);
  for (size_t i = 0; i < P.count(); ++i) offset[i + 1] = offset[i] + P.size[i];
  const auto chunks = make_chunks(P.size);
  dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    T* xp = keep ? static_cast<T*>(x.mutable_data()) : nullptr;
    const T* dp = static_cast<const T*>(d.data());
    const T tt = T(t);
    py::gil_scoped_release nogil;
    for_each_chunk(chunks, (keep ? 3 : 2) * n, [&](const Chunk& c) {  // p, (x,) d
      T* OK_RESTRICT p = P.ptr<T>(size_t(c.tensor)) + c.start;
      T* OK_RESTRICT xx = xp ? xp + offset[size_t(c.tensor)] + c.start : nullptr;
      const T* OK_RESTRICT dd = dp + offset[size_t(c.tensor)] + c.start;
      move_loop(p, xx, dd, tt, save, c.len);
    });
  });
}

void lbfgs_stats(py::handle g_h, py::handle out_h) {
  const py::dtype dt = float_dtype<HostArrays>(g_h, "g");
  py::array g = check_array(g_h, "g", dt, false);
  py::array out = check_out(out_h, "out", 2);
  ArrayList gl, ol;  // in bytes: g and out differ in dtype
  gl.data.push_back(static_cast<char*>(const_cast<void*>(g.data())));  // (read only: a read-only g is taken)
  gl.size.push_back(int64_t(g.nbytes()));
  ol.data.push_back(static_cast<char*>(out.mutable_data()));
  ol.size.push_back(int64_t(out.nbytes()));
  check_no_overlap({{"g", &gl, false}, {"out", &ol, true}}, 1);
  const int64_t n = int64_t(g.size());
  const auto chunks = column_chunks(n);
  std::vector<double> mx(chunks.size()), sm(chunks.size());
  dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    const T* gp = static_cast<const T*>(g.data());
    py::gil_scoped_release nogil;
    for_each_chunk(chunks, n, [&](const Chunk& c) {
      const T* OK_RESTRICT x = gp + c.start;
      double m = 0.0;
      int nan = 0;
#pragma omp simd reduction(max : m) reduction(| : nan)
      for (int64_t i = 0; i < c.len; ++i) {
        const double a = std::fabs(double(x[i]));
        m = a > m ? a : m;
        nan |= (a != a);
      }
      const size_t ci = size_t(&c - chunks.data());
      mx[ci] = nan ? rules::abs_max_nan() : m;
      sm[ci] = lane_sum<double>(c.len, [&](int64_t i) { return std::fabs(double(x[i])); });
    });
  });
  double m = 0.0, s = 0.0;
  for (size_t b = 0; b < chunks.size(); ++b) {
    m = rules::abs_max_step(m, mx[b]);
    s += sm[b];
  }
  double* op = static_cast<double*>(out.mutable_data());
  op[0] = m;
  op[1] = s;
}

// A float64 input of lbfgs_two_loop (the Gram blocks sy, yy and the vectors sg, yg, ro) as a
// C-contiguous array: any layout is taken (the Python layer's sy, yy are views of its Gram
// buffers; the copy is k * k doubles), but a non-array or another dtype is refused by name, as
// every array argument is (py_arrays.hpp). A forcecast took a bool array, a list or True and
// ran the recursion on their cast.
using Float64s = py::array_t<double, py::array::c_style | py::array::forcecast>;
Float64s two_loop_input(py::handle h, const char* name) {
  const py::dtype dt = py::dtype::of<double>();
  const Fault f = array_fault(h, dt, sizeof(double), false);
  if (f == Fault::not_array || f == Fault::dtype) raise_fault(f, h, name, dt);
  return Float64s::ensure(h);
}

// lbfgs_two_loop's sizes: sy, yy of k * k elements each, sg, yg, ro of k (k * k compared
// without forming it: past 2**63 it wrapped).
void check_two_loop_sizes(int64_t k, const Float64s& sy, const Float64s& yy, const Float64s& sg,
                          const Float64s& yg, const Float64s& ro) {
  if (k < 0) throw py::value_error("k: must be >= 0, got " + std::to_string(k));
  const auto square = [k](py::ssize_t n) { return k == 0 ? n == 0 : n % k == 0 && n / k == k; };
  if (!square(sy.size()) || !square(yy.size()))
    throw py::value_error("sy, yy: expected k*k = " +
                          (k <= 3037000499 ? std::to_string(k * k) : std::to_string(k) + "**2") +
                          " elements each");
  if (sg.size() != k || yg.size() != k || ro.size() != k)
    throw py::value_error("sg, yg, ro: expected k = " + std::to_string(k) + " elements each");
}

}  // namespace

void register_lbfgs(py::module_& m) {
  sig::lbfgs(m, &lbfgs_push, &lbfgs_direction, &lbfgs_move, &lbfgs_stats);
  def_named(
      m, "lbfgs_two_loop",
      [](int64_t k, py::handle sy_h, py::handle yy_h, py::handle sg_h, py::handle yg_h, py::handle ro_h, double h) {
        const Float64s sy = two_loop_input(sy_h, "sy"), yy = two_loop_input(yy_h, "yy");
        const Float64s sg = two_loop_input(sg_h, "sg"), yg = two_loop_input(yg_h, "yg");
        const Float64s ro = two_loop_input(ro_h, "ro");
        check_two_loop_sizes(k, sy, yy, sg, yg, ro);
        const size_t kk = static_cast<size_t>(k);
        std::vector<double> al(kk), cs(kk), cy(kk);
        const double gs = rules::lbfgs_two_loop(k, sy.data(), yy.data(), sg.data(), yg.data(), ro.data(), h,
                                                al.data(), cs.data(), cy.data());
        return py::make_tuple(al, cs, cy, gs);
      },
      py::arg("k"), py::arg("sy"), py::arg("yy"), py::arg("sg"), py::arg("yg"), py::arg("ro"), py::arg("h"),
      "The L-BFGS two-loop recursion on inner products (rules/second_order.hpp): returns (al, coef_s, coef_y, "
      "g_scale) for lbfgs_direction_. sy, yy: float64 (k, k) Gram blocks, sg, yg, ro: float64 (k) (NumPy arrays, "
      "any layout; another dtype is refused). Host-only: both modules' L-BFGS call it.");
}

}  // namespace optkern
