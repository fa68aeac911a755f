// R-operator of batch norm (training mode) and layer norm over an (N, D)
// array, for the exact Hessian-vector product of the built-in MLP. The math
// is rules/norm.hpp's norm_rop_*; here are the loops. Groups (the sets sharing
// one mean and rstd) are the rows (axis 1: layer norm) or the columns (axis 0:
// batch norm). Every sum is in double, in an order fixed by the shape (a row
// by one thread; a column by fixed row blocks added in block order), so
// results do not depend on the thread count.
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "py_arrays.hpp"
#include "norm_cpu.hpp"
#include "optkern/norm_rop.hpp"
#include "optkern/signatures.hpp"

namespace optkern {
namespace {
namespace py = pybind11;
using namespace normcpu;
using namespace rop;

// Sums in double, rounded to T once (float32 sums of thousands of terms of a common offset rounded
// alike: a layer-norm row of 65536 R{h} = 1000 + small had m(R{h}) and R{y} 1.6e-5 off, 40x torch's;
// a batch-norm column of dy = 1 + small at N = 16K R{dβ} 2e-6 off and the hvp's dh 5e-5 of its size).

// Groups are rows (layer norm): item i sums row i; out[k * N + i] = scale_k * Σ_d.
template <class Terms> struct RowSums {
  using T = typename Terms::value_type;
  static constexpr int K = Terms::K;
  Terms f;
  int64_t N, D;
  double scale;
  T* out;
  OK_INLINE void operator()(int64_t i) const {
    double s[K];
    block_sums<K, T>(D, [&](int64_t d, T* v) OK_INLINE_LAMBDA { f(i, d, v); }, s);
    for (int k = 0; k < K; ++k) out[k * N + i] = T(s[k] * scale);
  }
};

// Column sums (batch norm's groups; the parameter sums) by tiles of kBlockRows rows x kTileCols
// columns: a tile's rows are read contiguously and its K x kTileCols double accumulators stay in L1.
// One vector loop a row forms all K terms of an element (x̂ and the products once) and adds each to
// its column's accumulator: the accumulators are indexed by the column, not reduced along the loop,
// so GCC vectorizes the K updates (a K x W lane array reduced along the loop did not: lane_sums.hpp).
// One pass a term, recomputing x̂ and the loads each time, took 1.8x this loop's time; 256-column
// tiles (a 2 KiB stride between a tile's row segments) 1.3x that of whole 512-column rows. Each tile's
// partial sums go to part[(block * K + k) * D + d], added in block order by merge_cols: the
// association depends on the shape only, never on the thread count.
constexpr int64_t kTileCols = 512, kBlockRows = 256;

template <class Terms> struct ColPartials {
  using T = typename Terms::value_type;
  static constexpr int K = Terms::K;
  Terms f;
  int64_t N, D;
  double* part;
  int64_t tiles() const { return (D + kTileCols - 1) / kTileCols; }
  int64_t blocks() const { return (N + kBlockRows - 1) / kBlockRows; }
  OK_INLINE void operator()(int64_t t) const {
    const int64_t b = t / tiles(), c0 = (t % tiles()) * kTileCols, nc = std::min(kTileCols, D - c0);
    const int64_t n1 = std::min(N, (b + 1) * kBlockRows);
    double s[K][kTileCols];
    for (int k = 0; k < K; ++k) std::fill(s[k], s[k] + nc, 0.0);
    const Terms fl = f;  // (a local copy keeps the members' loads out of the loop)
    for (int64_t n = b * kBlockRows; n < n1; ++n) {
      // (the iterations are independent; `omp simd` made `v` a per-lane array, which GCC 12 left
      // scalar: 2.4x this loop's time)
#pragma GCC ivdep
      for (int64_t j = 0; j < nc; ++j) {
        T v[K];
        fl(n, c0 + j, v);
        for (int k = 0; k < K; ++k) s[k][j] += double(v[k]);
      }
    }
    for (int k = 0; k < K; ++k) std::copy(s[k], s[k] + nc, part + (b * K + k) * D + c0);
  }
};

// out[k * D + d] = T(scale[k] * Σ_block part[(block * K + k) * D + d]), blocks in order.
template <class T>
void merge_cols(const std::vector<double>& part, int64_t blocks, int K, int64_t D, const double* scale, T* out) {
  std::vector<double> acc(static_cast<size_t>(D));
  for (int k = 0; k < K; ++k) {
    std::fill(acc.begin(), acc.end(), 0.0);
    for (int64_t b = 0; b < blocks; ++b) {
      const double* p = part.data() + (b * K + k) * D;
      for (int64_t d = 0; d < D; ++d) acc[size_t(d)] += p[d];
    }
    for (int64_t d = 0; d < D; ++d) out[k * D + d] = T(acc[size_t(d)] * scale[k]);
  }
}

// Every group's normalizer as (f, mf, rf) ([3][G], rop::Norm::scaled): ChannelScaling's where a group
// needs the scaled form, else (1, -mean, r) for all (its form of the plain groups).
template <class T> std::vector<T> normalizers(const T* mean, const T* r, int64_t G) {
  ChannelScaling<T> cs(mean, r, G);
  if (!cs.v.empty()) return std::move(cs.v);
  std::vector<T> v(size_t(3 * G));
  for (int64_t g = 0; g < G; ++g) v[size_t(g)] = T(1), v[size_t(G + g)] = -mean[g], v[size_t(2 * G + g)] = r[g];
  return v;
}

// Every group's mean low part (rules::mean_lo: 0 where not needed), from the moments of the groups that
// need it computed again, as the row norms' backward does (cpp/norm_rows.cpp): rows by moments() (the
// forward's chunks and bits); columns (batch norm's groups), where any needs it, all by
// channel_moments (batch_norm's statistics, its bits: a two-pass down each strided column, or a
// transposed copy, took a far (4096, 512) float32 forward 4x its time on this host).
template <class T, int A> std::vector<T> group_lows(const Norm<T, A>& s) {
  const int64_t G = s.groups(), M = s.size();
  if constexpr (A == 0) {
    std::vector<T> lo = channel_lows(s.mean, s.rstd, G, [&] { return channel_moments(s.h, s.N, s.D, 1); });
    if (lo.empty()) lo.assign(size_t(G), T(0));
    return lo;
  } else {
    std::vector<T> lo(size_t(G), T(0));
    std::vector<int64_t> far;  // (usually none: no pass over the data, no parallel region)
    for (int64_t g = 0; g < G; ++g)
      if (rules::mean_lo_needed(s.mean[g], s.rstd[g])) far.push_back(g);
    parallel_for(int64_t(far.size()), int64_t(far.size()) * M, [&](int64_t k) {
      const int64_t g = far[size_t(k)];
      lo[size_t(g)] = row_mean_lo(s.h + g * s.D, M, s.mean[g], s.rstd[g]);
    });
    return lo;
  }
}

// Row n of an element functor (FwdElement or BwdElement); bad[n]: whether an output of the row is
// not finite (the rows that may need the scaled redo, rop::fwd_group_scaled). A chunk of the row is
// formed into local buffers, then copied out (E::values); the check is an integer OR of
// nonfinite_bit (a float sum of v - v waited on the add's latency: stream_store.hpp).
template <class E> struct RowApply {
  E e;
  char* bad;
  OK_INLINE void operator()(int64_t n) const {
    using T = decltype(e.nonfinite(0));
    constexpr int64_t B = 256 / int64_t(sizeof(T));
    alignas(64) T o0[B], o1[B];
    decltype(nonfinite_bit(T())) z = 0;
    const int64_t D = e.s.D, row = n * D;
    for (int64_t d0 = 0; d0 < D; d0 += B) {
      const int64_t m = std::min(B, D - d0);
      // (ivdep, not `omp simd`: that made a and b per-lane arrays, which GCC 12 left scalar)
#pragma GCC ivdep
      for (int64_t j = 0; j < m; ++j) {
        T a, b;
        e.values(n, d0 + j, a, b);
        o0[j] = a, o1[j] = b;
        z |= nonfinite_bit(a) | nonfinite_bit(b);
      }
      std::copy(o0, o0 + m, e.outputs(0) + row + d0);
      std::copy(o1, o1 + m, e.outputs(1) + row + d0);
    }
    bad[n] = z != 0;
  }
};

template <class T, int A> using FwdApply = RowApply<FwdElement<T, A>>;
template <class T, int A> using BwdApply = RowApply<BwdElement<T, A>>;
// Both column sums of batch norm's backward in one pass: BwdTerms' then ParamTerms'.
template <class T, int A> struct BwdParamTerms {
  using value_type = T;
  static constexpr int K = 6, axis = 0;
  BwdTerms<T, A> b;
  ParamTerms<T, A> p;
  OK_HD void operator()(int64_t n, int64_t d, T* v) const {
    b(n, d, v);
    p(n, d, v + 4);
  }
};
template <class T, int A> using FwdCols = ColPartials<FwdTerms<T, A>>;
template <class T, int A> using FwdRows = RowSums<FwdTerms<T, A>>;
template <class T, int A> using BwdRows = RowSums<BwdTerms<T, A>>;
template <class T, int A> using ParamCols = ColPartials<ParamTerms<T, A>>;
template <class T, int A> using BwdParamCols = ColPartials<BwdParamTerms<T, A>>;

// Multi-versioned item loops for both dtypes and axes (GCC target_clones
// needs plain functions).
#define OK_ROP_CLONE(Kernel, T, A)                                               \
  OK_CLONES void run_items(const Kernel<T, A>& k, int64_t i0, int64_t i1) {     \
    for (int64_t i = i0; i < i1; ++i) k(i);                                     \
  }
#define OK_ROP_CLONES_AXIS(Kernel, A) OK_ROP_CLONE(Kernel, float, A) OK_ROP_CLONE(Kernel, double, A)
#define OK_ROP_CLONES(Kernel) OK_ROP_CLONES_AXIS(Kernel, 0) OK_ROP_CLONES_AXIS(Kernel, 1)
OK_ROP_CLONES_AXIS(FwdCols, 0)
OK_ROP_CLONES_AXIS(BwdParamCols, 0)
OK_ROP_CLONES_AXIS(FwdRows, 1)
OK_ROP_CLONES_AXIS(BwdRows, 1)
OK_ROP_CLONES_AXIS(ParamCols, 1)
OK_ROP_CLONES(FwdApply)
OK_ROP_CLONES(BwdApply)

template <class K> void run_all(const K& k, int64_t items, int64_t work) {
  parallel_for(items, work, [&](int64_t i) { run_items(k, i, i + 1); });
}

// The groups whose outputs are not finite, from RowApply's rows (mx: also those whose m(x̂ R{h}) is not).
template <class E>
std::vector<int64_t> bad_groups(const E& e, const std::vector<char>& bad_rows, const decltype(e.nonfinite(0))* mx) {
  const int64_t N = e.s.N, D = e.s.D, G = e.s.groups();
  std::vector<char> bad(size_t(G), 0);
  for (int64_t n = 0; n < N; ++n) {
    if (!bad_rows[size_t(n)]) continue;
    for (int64_t d = 0; d < D; ++d)
      if (!rules::finite_(e.nonfinite(n * D + d))) bad[size_t(e.s.group(n, d))] = 1;
  }
  std::vector<int64_t> out;
  for (int64_t g = 0; g < G; ++g)
    if (bad[size_t(g)] || (mx && !rules::finite_(mx[g]))) out.push_back(g);
  return out;
}

// out[k * G + group] = T(scale[k] * Σ of the group's terms k) (G: N for row groups, else D).
template <class Terms, class T> void group_sums(const Terms& f, int64_t N, int64_t D, const double* scale, T* out) {
  if constexpr (Terms::axis == 1) {
    run_all(RowSums<Terms>{f, N, D, scale[0], out}, N, 3 * N * D);  // (about three arrays per element, parallel.hpp)
  } else {
    const ColPartials<Terms> k{f, N, D, nullptr};
    std::vector<double> part(size_t(k.blocks() * Terms::K * D));
    ColPartials<Terms> kp = k;
    kp.part = part.data();
    run_all(kp, k.blocks() * k.tiles(), 3 * N * D);
    merge_cols(part, k.blocks(), Terms::K, D, scale, out);
  }
}

// The (N, D) shape of `h` and the checked statistics.
struct Shape {
  int64_t N, D, G;
};

Shape shape_of(py::handle h, int axis) {
  if (axis != 0 && axis != 1)
    throw py::value_error("axis: must be 0 (batch norm) or 1 (layer norm), got " + std::to_string(axis));
  const auto a = py::reinterpret_borrow<py::array>(h);
  if (a.ndim() != 2) throw py::value_error("h: expected a 2-D array (N, D), got " + std::to_string(a.ndim()) + "-D");
  const int64_t N = a.shape(0), D = a.shape(1);
  return {N, D, axis == 1 ? N : D};
}

template <class T, int A>
Norm<T, A> saved(HostArgs& args, py::handle h, py::handle mean, py::handle rstd, const Shape& S) {
  return {args.get<T>(h, "h", S.N * S.D, false), args.shaped<T>(mean, "mean", {S.G}, false),
          args.shaped<T>(rstd, "rstd", {S.G}, false), S.N, S.D};
}

template <class T, int A>
void fwd_impl(const py::dtype& dt, const Shape& S, py::handle h, py::handle mean, py::handle rstd, py::handle rh,
              py::handle w, py::handle vw, py::handle vb, py::handle ry, py::handle rxhat, py::handle m_xrh) {
  HostArgs args(dt);
  const int64_t n = S.N * S.D;
  FwdElement<T, A> a{};
  a.s = saved<T, A>(args, h, mean, rstd, S);
  a.rh = args.shaped<T>(rh, "rh", {S.N, S.D}, false);
  a.w = args.shaped<T>(w, "weight", {S.D}, false);
  a.vw = args.shaped<T>(vw, "vweight", {S.D}, false);
  a.vb = args.shaped<T>(vb, "vbias", {S.D}, false);
  a.ry = args.shaped<T>(ry, "ry", {S.N, S.D}, true);
  a.rxhat = args.shaped<T>(rxhat, "rxhat", {S.N, S.D}, true);
  T* mx = args.shaped<T>(m_xrh, "m_xrh", {S.G}, true);
  args.check_overlap();
  const std::vector<T> scaled = normalizers(a.s.mean, a.s.rstd, S.G);  // (rop::Norm)
  a.s.scaled = scaled.data();
  std::vector<T> means(size_t(2 * S.G));
  a.means = means.data();
  py::gil_scoped_release nogil;
  if (n == 0) {  // empty groups have no mean
    std::fill(mx, mx + S.G, T(NAN));
    return;
  }
  const std::vector<T> lo = group_lows(a.s);  // (rop::Norm)
  a.s.lo = lo.data();
  const double inv = 1.0 / double(A == 1 ? S.D : S.N), scale[2] = {inv, inv};
  group_sums(FwdTerms<T, A>{a.s, a.rh}, S.N, S.D, scale, means.data());
  std::copy(means.begin() + S.G, means.end(), mx);
  std::vector<char> bad_rows(size_t(S.N));
  run_all(FwdApply<T, A>{a, bad_rows.data()}, S.N, 3 * n);
  for (const int64_t g : bad_groups(a, bad_rows, mx)) fwd_group_scaled(a, mx, g);  // (rare: directions near the max)
}

template <class T, int A>
void bwd_impl(const py::dtype& dt, const Shape& S, py::handle h, py::handle mean, py::handle rstd, py::handle dy,
              py::handle rdy, py::handle w, py::handle vw, py::handle rxhat, py::handle m_xrh, py::handle dh,
              py::handle rdh, py::handle rdw, py::handle rdb) {
  HostArgs args(dt);
  const int64_t n = S.N * S.D;
  BwdElement<T, A> a{};
  a.s = saved<T, A>(args, h, mean, rstd, S);
  a.dy = args.shaped<T>(dy, "dy", {S.N, S.D}, false);
  a.rdy = args.shaped<T>(rdy, "rdy", {S.N, S.D}, false);
  a.w = args.shaped<T>(w, "weight", {S.D}, false);
  a.vw = args.shaped<T>(vw, "vweight", {S.D}, false);
  a.rxhat = args.shaped<T>(rxhat, "rxhat", {S.N, S.D}, false);
  a.m_xrh = args.shaped<T>(m_xrh, "m_xrh", {S.G}, false);
  a.dh = args.shaped<T>(dh, "dh", {S.N, S.D}, true);
  a.rdh = args.shaped<T>(rdh, "rdh", {S.N, S.D}, true);
  T* pw = args.shaped<T>(rdw, "rdweight", {S.D}, true);
  T* pb = args.shaped<T>(rdb, "rdbias", {S.D}, true);
  args.check_overlap();
  const std::vector<T> scaled = normalizers(a.s.mean, a.s.rstd, S.G);  // (rop::Norm)
  a.s.scaled = scaled.data();
  // The group means (4 G), then the parameter sums (2 D): batch norm's are all column sums, one pass.
  std::vector<T> sums(size_t(4 * S.G + 2 * S.D));
  T* const params = sums.data() + 4 * S.G;
  a.means = sums.data();
  py::gil_scoped_release nogil;
  if (n > 0) {
    const std::vector<T> lo = group_lows(a.s);  // (rop::Norm)
    a.s.lo = lo.data();
    const double inv = 1.0 / double(A == 1 ? S.D : S.N), scale[6] = {inv, inv, inv, inv, 1.0, 1.0};
    const BwdTerms<T, A> bt{a.s, a.dy, a.rdy, a.w, a.vw, a.rxhat};
    const ParamTerms<T, A> terms{a.s, a.dy, a.rdy, a.rxhat};
    if constexpr (A == 0) {
      group_sums(BwdParamTerms<T, A>{bt, terms}, S.N, S.D, scale, sums.data());
    } else {
      group_sums(bt, S.N, S.D, scale, sums.data());
      group_sums(terms, S.N, S.D, scale + 4, params);
    }
    std::vector<char> bad_rows(size_t(S.N));
    run_all(BwdApply<T, A>{a, bad_rows.data()}, S.N, 5 * n);
    for (const int64_t g : bad_groups(a, bad_rows, static_cast<const T*>(nullptr))) bwd_group_scaled(a, g);
    for (int64_t d = 0; d < S.D; ++d)  // (rare: the columns of directions near the max)
      if (!rules::finite_(params[d]) || !rules::finite_(params[S.D + d]))
        param_col_scaled(terms, d, params, params + S.D);
  }
  std::copy(params, params + S.D, pw);
  std::copy(params + S.D, params + 2 * S.D, pb);
}

// f(dtype, shape, T{}, axis constant) for the dtype of `h` and the axis.
template <class F> void dispatch(py::handle h, int axis, F&& f) {
  const py::dtype dt = float_dtype<HostArrays>(h, "h");
  const Shape S = shape_of(h, axis);
  using A0 = std::integral_constant<int, 0>;
  using A1 = std::integral_constant<int, 1>;
  if (dt.itemsize() == 4) axis == 0 ? f(dt, S, float{}, A0{}) : f(dt, S, float{}, A1{});
  else axis == 0 ? f(dt, S, double{}, A0{}) : f(dt, S, double{}, A1{});
}

void norm_rop_fwd(py::handle h, py::handle mean, py::handle rstd, py::handle rh, py::handle w, py::handle vw,
                  py::handle vb, py::handle ry, py::handle rxhat, py::handle m_xrh, int axis) {
  dispatch(h, axis, [&](const py::dtype& dt, const Shape& S, auto t, auto a) {
    fwd_impl<decltype(t), decltype(a)::value>(dt, S, h, mean, rstd, rh, w, vw, vb, ry, rxhat, m_xrh);
  });
}

void norm_rop_bwd(py::handle h, py::handle mean, py::handle rstd, py::handle dy, py::handle rdy, py::handle w,
                  py::handle vw, py::handle rxhat, py::handle m_xrh, py::handle dh, py::handle rdh, py::handle rdw,
                  py::handle rdb, int axis) {
  dispatch(h, axis, [&](const py::dtype& dt, const Shape& S, auto t, auto a) {
    bwd_impl<decltype(t), decltype(a)::value>(dt, S, h, mean, rstd, dy, rdy, w, vw, rxhat, m_xrh, dh, rdh, rdw, rdb);
  });
}

}  // namespace

void register_norm_rop(py::module_& m) {
  sig::norm_rop(m, &norm_rop_fwd, &norm_rop_bwd);
}

}  // namespace optkern
