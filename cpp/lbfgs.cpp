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
#include "multi_tensor.hpp"
#include "parallel.hpp"
#include "optkern/rules/second_order.hpp"
#include "optkern/signatures_second_order.hpp"

namespace optkern {
namespace {
namespace rs = rules;

// Columns per sub-block. Direction: its accumulator (16 KiB in float32) stays in L1 while two row
// pairs stream past it; against the 23-array read probe in the same process (k = 11, 16M floats,
// 2 threads, 2026-12-01): 1024 columns 88%, 4096 96-98%, 8192 95%, 16384 89% when the VM's memory
// read 46-47 GB/s; 70% (1024) and 82-84% (4096) when it read 76-78 GB/s. Push: the new pair
// and g stay in L2 (3 x 128 KiB in float32: Zen 3's L2 is 512 KiB) while each row's 32768 columns
// stream past them: the longer each row's run, the fewer restarts of the hardware-prefetched
// streams. Push alone, 16M floats, 2 threads, one row per pass, k = 10 / 100 (2026-12-01, EPYC):
// 2048 columns 53 / 476 ms, 4096 48 / 425, 8192 45 / 374, 16384 43 / 364, 32768 43 / 344; with
// rows in pairs against the read probe in the same process: 4096 48%, 8192 53-77%, 32768 58-79%.
constexpr int64_t kPushSub = 32768;
constexpr int64_t kSub = 4096;

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
  for (size_t j = 0; j < h.S.count(); ++j)
    if (h.S.size[j] != h.n)
      throw py::value_error(item_name("S", j) + ": expected " + std::to_string(h.n) + " elements, got " +
                            std::to_string(h.S.size[j]));
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

// The five inner products of R history rows (srow[r], yrow[r]) with the new pair and g over one
// sub-block, in one pass: 5 R accumulators of W lanes (GCC vector extension: one AVX2 vector each),
// lane l taking elements l, l + W, ... (folded in a fixed tree, the tail added in order), so the
// association of a sum depends on len only -- not on the thread count or the row's neighbours.
// The push is bound by loading the cached pair and g from L2 (3 x 128 KiB), not by memory: R rows
// per pass load them once for R rows. Against the read probe in the same process (16M floats,
// 2 threads, k = 10 / 11 / 100): R = 2 81 / 81 / 85%, R = 3 81-83 / 85 / 88%, R = 4 84-85 / 87-90 /
// 94%, R = 8 57-59% (its 40 accumulators spill); one row at a time with 2-3 cached terms ~58%.
template <class T, int R>
OK_LANE_INLINE void row_dots(int64_t len, const T* OK_RESTRICT sc, const T* OK_RESTRICT yc, const T* OK_RESTRICT gg,
                             const T* const* srow, const T* const* yrow, T (*v)[rs::kPushPerRow]) {
  typedef T V __attribute__((vector_size(32)));  // W lanes, held in registers (GCC vector extension)
  constexpr int64_t W = 32 / int64_t(sizeof(T));
  constexpr int Q = rs::kPushPerRow;
  // Software prefetch 1 KiB ahead in each of the 2 R row streams: per core the hardware prefetcher
  // alone kept too few of them in flight (one thread read 23 GB/s here, 30 GB/s with it). Against
  // the read probe (k = 11 / 100, 2 threads): 64-70% -> 74-79% when this VM's memory read 77 GB/s,
  // 86-90% -> 83% when it read 48 (further ahead, 4 KiB: 67-68%; 512 B: 65%).
  constexpr int64_t kAhead = 1024 / int64_t(sizeof(T)), kLine = 64 / int64_t(sizeof(T));
  // (loads into a reference: a function returning an AVX vector would change the baseline clone's ABI)
  const auto ld = [](V& x, const T* p) { std::memcpy(&x, p, sizeof(V)); };
  V acc[R * Q] = {};
  int64_t i = 0;
  for (; i + W <= len; i += W) {
    V s, y, g;
    ld(s, sc + i);
    ld(y, yc + i);
    ld(g, gg + i);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      V sj, yj;
      if (i % kLine == 0 && i + kAhead < len) {  // once per cache line, inside the sub-block
        __builtin_prefetch(srow[r] + i + kAhead);
        __builtin_prefetch(yrow[r] + i + kAhead);
      }
      ld(sj, srow[r] + i);
      ld(yj, yrow[r] + i);
      acc[r * Q + rs::kSnewYj] += s * yj;
      acc[r * Q + rs::kYnewSj] += y * sj;
      acc[r * Q + rs::kYnewYj] += y * yj;
      acc[r * Q + rs::kGSj] += g * sj;
      acc[r * Q + rs::kGYj] += g * yj;
    }
  }
  T lanes[R * Q][W];
  std::memcpy(lanes, acc, sizeof(acc));
  for (auto& a : lanes)
    for (int64_t w = W / 2; w > 0; w /= 2)
      for (int64_t l = 0; l < w; ++l) a[l] += a[l + w];
  for (; i < len; ++i)
    for (int r = 0; r < R; ++r) {
      lanes[r * Q + rs::kSnewYj][0] += sc[i] * yrow[r][i];
      lanes[r * Q + rs::kYnewSj][0] += yc[i] * srow[r][i];
      lanes[r * Q + rs::kYnewYj][0] += yc[i] * yrow[r][i];
      lanes[r * Q + rs::kGSj][0] += gg[i] * srow[r][i];
      lanes[r * Q + rs::kGYj][0] += gg[i] * yrow[r][i];
    }
  for (int r = 0; r < R; ++r)
    for (int q = 0; q < Q; ++q) v[r][q] = lanes[r * Q + q][0];
}

// One sub-block of the push pass (compiled per ISA level): the new pair, then the dots of every
// row with the L1-resident new pair and gradient, added to acc.
template <class T>
OK_CLONES void push_block(const ArrayList& S, const ArrayList& Y, int64_t k, int64_t lo, int64_t len, T* sn, T* yn,
                          const T* g, T* prev_g, const T* d, T t, double* acc) {
  T* OK_RESTRICT yc = yn + lo;
  T* OK_RESTRICT sc = sn + lo;
  T* OK_RESTRICT pg = prev_g + lo;
  const T* OK_RESTRICT gg = g + lo;
  const T* OK_RESTRICT dd = d + lo;
#pragma omp simd
  for (int64_t i = 0; i < len; ++i) {
    yc[i] = gg[i] - pg[i];
    sc[i] = t * dd[i];
    pg[i] = gg[i];
  }
  constexpr int R = 4;  // rows per pass: the cached pair and g loaded once for four rows
  for (int64_t j = 0; j < k; j += R) {
    // Sums in T within the sub-block (float32: twice the lanes, no conversions), then float64. Past
    // the last row, the pass repeats the last row (its extra sums are dropped).
    const T* srow[R];
    const T* yrow[R];
    for (int r = 0; r < R; ++r) {
      const size_t jr = size_t(j + r < k ? j + r : k - 1);
      srow[r] = S.ptr<T>(jr) + lo;
      yrow[r] = Y.ptr<T>(jr) + lo;
    }
    T v[R][rs::kPushPerRow];
    row_dots<T, R>(len, sc, yc, gg, srow, yrow, v);
    for (int r = 0; r < R && j + r < k; ++r)
      for (int q = 0; q < rs::kPushPerRow; ++q) acc[(j + r) * rs::kPushPerRow + q] += double(v[r][q]);
  }
  T v[rs::kPushSelf];
  lane_sums<rs::kPushSelf, T>(len, [&](int64_t i, T* w) {
    w[rs::kYS] = yc[i] * sc[i];
    w[rs::kYY] = yc[i] * yc[i];
    w[rs::kGS] = gg[i] * sc[i];
    w[rs::kGY] = gg[i] * yc[i];
  }, v);
  for (int q = 0; q < rs::kPushSelf; ++q) acc[rs::kPushPerRow * k + q] += double(v[q]);
}

// One sub-block of the direction pass: d = g_scale g + sum_j cy_j y_j + cs_j s_j, accumulated in T
// in L1 (as torch's axpys are; float32 keeps the full SIMD width); returns g.d over the block and
// raises *m to max |d| (NaN-sticky through *nan). Rows go two pairs at a time: one pair per pass
// kept two streams in flight per thread and read 15.8-17.1 GB/s, two pairs 21.2 GB/s (a standalone
// copy of this loop, 16M floats, k = 10, 2 threads).
template <class T>
OK_CLONES double direction_block(const ArrayList& S, const ArrayList& Y, int64_t k, int64_t lo, int64_t len,
                                 const double* cs, const double* cy, const T* g, double g_scale, T* d, double* m,
                                 int* nan) {
  T acc[kSub];
  const T* OK_RESTRICT gg = g + lo;
  const T gs = T(g_scale);
#pragma omp simd
  for (int64_t i = 0; i < len; ++i) acc[i] = gs * gg[i];
  int64_t j = 0;
  for (; j + 2 <= k; j += 2) {  // two row pairs per pass: four memory streams in flight, not two
    const T* OK_RESTRICT s0 = S.ptr<T>(size_t(j)) + lo;
    const T* OK_RESTRICT y0 = Y.ptr<T>(size_t(j)) + lo;
    const T* OK_RESTRICT s1 = S.ptr<T>(size_t(j + 1)) + lo;
    const T* OK_RESTRICT y1 = Y.ptr<T>(size_t(j + 1)) + lo;
    const T a0 = T(cy[j]), b0 = T(cs[j]), a1 = T(cy[j + 1]), b1 = T(cs[j + 1]);
#pragma omp simd
    for (int64_t i = 0; i < len; ++i) acc[i] += (a0 * y0[i] + b0 * s0[i]) + (a1 * y1[i] + b1 * s1[i]);
  }
  if (j < k) {
    const T* OK_RESTRICT sj = S.ptr<T>(size_t(j)) + lo;
    const T* OK_RESTRICT yj = Y.ptr<T>(size_t(j)) + lo;
    const T a = T(cy[j]), b = T(cs[j]);
#pragma omp simd
    for (int64_t i = 0; i < len; ++i) acc[i] += a * yj[i] + b * sj[i];
  }
  T* OK_RESTRICT dd = d + lo;
  double mx = *m;
  int bad = 0;
#pragma omp simd reduction(max : mx) reduction(| : bad)
  for (int64_t i = 0; i < len; ++i) {
    const T v = acc[i];
    dd[i] = v;
    const double a = std::fabs(double(v));
    mx = a > mx ? a : mx;
    bad |= (a != a);
  }
  *m = mx;
  *nan |= bad;
  return lane_sum<double>(len, [&](int64_t i) { return double(gg[i]) * double(dd[i]); });
}

template <class T>
void push(const History& h, T* s_new, T* y_new, const T* g, T* prev_g, const T* d, double t, double* out) {
  const int64_t n = h.n, k = h.k();
  const int64_t Q = rs::kPushPerRow * k + rs::kPushSelf;
  const auto chunks = column_chunks(n);
  std::vector<double> part(chunks.size() * size_t(Q), 0.0);
  const T tt = T(t);
  py::gil_scoped_release nogil;
  for_each_chunk(chunks, n * (2 * k + 3), [&](const Chunk& c) {
    double* acc = part.data() + size_t(&c - chunks.data()) * size_t(Q);
    for (int64_t lo = c.start; lo < c.start + c.len; lo += kPushSub)
      push_block<T>(h.S, h.Y, k, lo, std::min(kPushSub, c.start + c.len - lo), s_new, y_new, g, prev_g, d, tt, acc);
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
  if (!std::isfinite(t)) throw py::value_error("t: must be finite, got " + std::to_string(t));
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
  py::gil_scoped_release nogil;
  for_each_chunk(chunks, n * (2 * k + 2), [&](const Chunk& c) {
    const size_t ci = size_t(&c - chunks.data());
    double m = 0.0;
    int nan = 0;
    for (int64_t lo = c.start; lo < c.start + c.len; lo += kSub)
      gd[ci] += direction_block<T>(h.S, h.Y, k, lo, std::min(kSub, c.start + c.len - lo), cs.data(), cy.data(), g,
                                   g_scale, d, &m, &nan);
    dmax[ci] = nan ? NAN : m;
  });
  double s = 0.0, m = 0.0;
  for (size_t b = 0; b < chunks.size(); ++b) {
    s += gd[b];
    m = (dmax[b] > m || dmax[b] != dmax[b]) ? dmax[b] : m;
  }
  out[0] = s;
  out[1] = m;
}

void lbfgs_direction(py::handle S_h, py::handle Y_h, std::vector<double> cs, std::vector<double> cy, py::handle g_h,
                     double g_scale, py::handle d_h, py::handle out_h) {
  const History h = check_history(S_h, Y_h, g_h, "g");
  if (int64_t(cs.size()) != h.k() || int64_t(cy.size()) != h.k())
    throw py::value_error("coef_s, coef_y: expected " + std::to_string(h.k()) + " coefficients each (one per "
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

void lbfgs_move(py::handle params_h, py::handle x_h, py::handle d_h, double t, bool save) {
  const py::dtype dt = list_dtype(params_h, "params");
  const ArrayList P = gather(params_h, "params", dt, true);
  const int64_t n = total_size(P.size);
  py::array x = check_array(x_h, "x", dt, save), d = check_array(d_h, "d", dt, false);
  if (x.ndim() != 1 || x.shape(0) != n)
    throw py::value_error("x: expected shape (" + std::to_string(n) + ",) (all params), got size " +
                          std::to_string(x.size()));
  if (d.ndim() != 1 || d.shape(0) != n)
    throw py::value_error("d: expected shape (" + std::to_string(n) + ",) (all params), got size " +
                          std::to_string(d.size()));
  if (!std::isfinite(t)) throw py::value_error("t: must be finite, got " + std::to_string(t));
  const ArrayList X = single(x), D = single(d);
  check_no_overlap({{"params", &P, true}, {"x", &X, save}, {"d", &D, false}}, size_t(dt.itemsize()));
  std::vector<int64_t> offset(P.count() + 1, 0);
  for (size_t i = 0; i < P.count(); ++i) offset[i + 1] = offset[i] + P.size[i];
  const auto chunks = make_chunks(P.size);
  dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    T* xp = static_cast<T*>(x.mutable_data());
    const T* dp = static_cast<const T*>(d.data());
    const T tt = T(t);
    py::gil_scoped_release nogil;
    for_each_chunk(chunks, n, [&](const Chunk& c) {
      T* OK_RESTRICT p = P.ptr<T>(size_t(c.tensor)) + c.start;
      T* OK_RESTRICT xx = xp + offset[size_t(c.tensor)] + c.start;
      const T* OK_RESTRICT dd = dp + offset[size_t(c.tensor)] + c.start;
      if (save) {
#pragma omp simd
        for (int64_t i = 0; i < c.len; ++i) {
          xx[i] = p[i];
          p[i] = rs::move(p[i], dd[i], tt);
        }
      } else {
#pragma omp simd
        for (int64_t i = 0; i < c.len; ++i) p[i] = rs::move(xx[i], dd[i], tt);
      }
    });
  });
}

void lbfgs_stats(py::handle g_h, py::handle out_h) {
  const py::dtype dt = float_dtype<HostArrays>(g_h, "g");
  py::array g = check_array(g_h, "g", dt, false);
  py::array out = check_out(out_h, "out", 2);
  ArrayList gl, ol;  // in bytes: g and out differ in dtype
  gl.data.push_back(static_cast<char*>(g.mutable_data()));
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
      mx[ci] = nan ? NAN : m;
      sm[ci] = lane_sum<double>(c.len, [&](int64_t i) { return std::fabs(double(x[i])); });
    });
  });
  double m = 0.0, s = 0.0;
  for (size_t b = 0; b < chunks.size(); ++b) {
    m = (mx[b] > m || mx[b] != mx[b]) ? mx[b] : m;
    s += sm[b];
  }
  double* op = static_cast<double*>(out.mutable_data());
  op[0] = m;
  op[1] = s;
}

}  // namespace

void register_lbfgs(py::module_& m) {
  sig::lbfgs(m, &lbfgs_push, &lbfgs_direction, &lbfgs_move, &lbfgs_stats);
  m.def("lbfgs_two_loop", [](int64_t k, py::array_t<double, py::array::c_style | py::array::forcecast> sy,
                             py::array_t<double, py::array::c_style | py::array::forcecast> yy,
                             py::array_t<double, py::array::c_style | py::array::forcecast> sg,
                             py::array_t<double, py::array::c_style | py::array::forcecast> yg,
                             py::array_t<double, py::array::c_style | py::array::forcecast> ro, double h) {
    if (k < 0) throw py::value_error("k: must be >= 0");
    if (sy.size() != k * k || yy.size() != k * k)
      throw py::value_error("sy, yy: expected k*k = " + std::to_string(k * k) + " elements each");
    if (sg.size() != k || yg.size() != k || ro.size() != k)
      throw py::value_error("sg, yg, ro: expected k = " + std::to_string(k) + " elements each");
    const size_t kk = static_cast<size_t>(k);
    std::vector<double> al(kk), cs(kk), cy(kk);
    const double gs = rules::lbfgs_two_loop(k, sy.data(), yy.data(), sg.data(), yg.data(), ro.data(), h, al.data(),
                                            cs.data(), cy.data());
    return py::make_tuple(al, cs, cy, gs);
  }, py::arg("k"), py::arg("sy"), py::arg("yy"), py::arg("sg"), py::arg("yg"), py::arg("ro"), py::arg("h"),
     "The L-BFGS two-loop recursion on inner products (rules/second_order.hpp): returns (al, coef_s, coef_y, "
     "g_scale) for lbfgs_direction_. Host-only: both modules' L-BFGS call it.");
}

}  // namespace optkern
