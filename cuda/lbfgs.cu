// L-BFGS on CuPy arrays, same contract as cpp/lbfgs.cpp (rules/second_order.hpp explains the
// coefficient-space two-loop recursion). Per step: push (one kernel writes the new pair, one
// reads every history row once for all the inner products, one adds the block partials in
// order) and direction (one kernel, plus the ordered sum of g.d and max |d|); the row pointers
// and coefficients go by value with the launches (lbfgsgpu::RowTable, 120 rows each: a longer
// history takes more launches, in row order). Nothing synchronizes per history entry: the host
// reads the few inner products once per step (the Python side needs them for torch's s.y > 1e-10
// test). Deterministic: the column blocking depends on n only and every sum runs in a fixed order.
#include <cuda_runtime.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "cuda_arrays.hpp"
#include "lbfgs_kernels.cuh"
#include "multi_tensor.cuh"
#include "optkern/call_args.hpp"
#include "optkern/rules/second_order.hpp"
#include "optkern/signatures_second_order.hpp"
#include "optkern/scalar_checks.hpp"

namespace optkern {
namespace {

// Shape helpers for the history checks (the call's dtype comes from float_dtype<DeviceArrays>).
std::vector<int64_t> shape_of(py::handle h) { return DeviceArrays::shape(h); }

void expect_shape(py::handle h, const char* name, const std::vector<int64_t>& want) {
  const auto got = shape_of(h);
  if (got != want)
    throw py::value_error(std::string(name) + ": expected shape " + shape_str(want) + ", got " + shape_str(got));
}
namespace rs = rules;
using lbfgsgpu::MoveInPlaceOp;
using lbfgsgpu::MoveOp;
using lbfgsgpu::direction_kernel;
using lbfgsgpu::dots_kernel;
using lbfgsgpu::kRows;
using lbfgsgpu::kTableRows;
using lbfgsgpu::kThreads;
using lbfgsgpu::new_pair_kernel;
using lbfgsgpu::num_blocks;
using lbfgsgpu::stats_kernel;
using lbfgsgpu::sum_parts_kernel;

// ---- argument checks ---------------------------------------------------------------------

struct Vec {
  const char* name;
  char* ptr;
  int64_t bytes;
  bool written;
};

struct Hist {
  DType dt;
  int dev = -1;
  int64_t n = 0;
  DeviceList S, Y;
  int64_t k() const { return int64_t(S.count()); }
};

Hist check_history(py::handle S, py::handle Y, py::handle like, const char* like_name) {
  Hist h;
  h.dt = float_dtype<DeviceArrays>(like, like_name);
  const auto shape = shape_of(like);
  if (shape.size() != 1)
    throw py::value_error(std::string(like_name) + ": expected a 1-D array, got " + std::to_string(shape.size()) +
                          "-D");
  h.n = shape[0];
  std::vector<int64_t> sizes;
  h.S = gather_device(S, "S", h.dt, false, h.dev);
  sizes.assign(h.S.count(), h.n);
  for (size_t j = 0; j < h.S.count(); ++j) check_size(item_name("S", j), h.n, h.S.size[j]);
  h.Y = gather_device(Y, "Y", h.dt, false, h.dev, &sizes);
  return h;
}

Vec vec(const Hist& h, py::handle a, const char* name, bool written, int& dev) {
  char* p = check_device_array(a, name, h.dt, written, h.n, dev);
  expect_shape(a, name, {h.n});
  return {name, p, h.n * int64_t(dtype_size(h.dt)), written};
}

Vec out_buffer(py::handle a, const char* name, int64_t need, int& dev) {
  char* p = check_device_array(a, name, DType::f64, true, -1, dev);
  const auto s = shape_of(a);
  if (s.size() != 1 || s[0] < need)
    throw py::value_error(std::string(name) + ": expected a 1-D float64 array of at least " + std::to_string(need) +
                          " elements");
  return {name, p, s[0] * 8, true};
}

// No written vector shares memory with any other array (history rows included).
void check_disjoint(const Hist& h, const std::vector<Vec>& vs) {
  std::vector<DeviceList> singles(vs.size());
  std::vector<NamedDeviceList> all{{"S", &h.S, false}, {"Y", &h.Y, false}};
  for (size_t i = 0; i < vs.size(); ++i) {
    singles[i].data.push_back(vs[i].ptr);
    singles[i].size.push_back(vs[i].bytes);  // in bytes: the vectors and out differ in dtype
    all.push_back({vs[i].name, &singles[i], vs[i].written, true, 1});
  }
  check_no_overlap(all, dtype_size(h.dt));
}

// The launch table of history rows first .. first + count - 1 (coefficients when given).
template <class T>
lbfgsgpu::RowTable<T> row_table(const Hist& h, int64_t first, const std::vector<double>* cs = nullptr,
                                const std::vector<double>* cy = nullptr) {
  lbfgsgpu::RowTable<T> t{};
  t.first = first;
  t.count = int(std::min<int64_t>(h.k() - first, kTableRows));
  for (int i = 0; i < t.count; ++i) {
    const size_t j = size_t(first + i);
    t.s[i] = h.S.ptr<T>(j);
    t.y[i] = h.Y.ptr<T>(j);
    t.cs[i] = cs ? (*cs)[j] : 0.0;
    t.cy[i] = cy ? (*cy)[j] : 0.0;
  }
  return t;
}

// ---- bindings ------------------------------------------------------------------------------

void lbfgs_push(py::handle S_h, py::handle Y_h, py::handle sn_h, py::handle yn_h, py::handle g_h, py::handle pg_h,
                py::handle d_h, double t, py::handle out_h) {
  Hist h = check_history(S_h, Y_h, g_h, "g");
  int dev = h.dev;
  const Vec g = vec(h, g_h, "g", false, dev), pg = vec(h, pg_h, "prev_g", true, dev);
  const Vec sn = vec(h, sn_h, "s_new", true, dev), yn = vec(h, yn_h, "y_new", true, dev);
  const Vec d = vec(h, d_h, "d", false, dev);
  // (t: checked by the signature, sig::lbfgs)
  const int64_t k = h.k(), Q = rs::kPushPerRow * k + rs::kPushSelf;
  const Vec out = out_buffer(out_h, "out", Q, dev);
  check_disjoint(h, {sn, yn, g, pg, d, out});
  require_current_device(dev, "g");
  cudaStream_t s = current_stream();
  // Column segments of 8192 (up to 512 of them, times the row groups): a 1M-element history has
  // 128 x groups blocks (16384-column segments left half of an H200's SMs without work).
  const int64_t n = h.n, nb = num_blocks(n, 8192, 512);
  auto run = [&](auto tag) {
    using T = decltype(tag);
    const ScratchBuffer buf(sizeof(double) * size_t(Q * nb), s, dev);  // freed (stream-ordered) on return
    double* part = buf.as<double>();
    const int grid = int(num_blocks(n, kThreads * 8, 4096));
    if (n > 0) {
      new_pair_kernel<T><<<grid, kThreads, 0, s>>>((T*)sn.ptr, (T*)yn.ptr, (const T*)g.ptr, (T*)pg.ptr,
                                                   (const T*)d.ptr, T(t), n);
      // a table of rows per launch; the last launch adds the self group
      for (int64_t first = 0; first == 0 || first < k; first += kTableRows) {
        const auto rt = row_table<T>(h, first);
        const bool last = first + kTableRows >= k;
        const unsigned groups = unsigned((rt.count + kRows - 1) / kRows + (last ? 1 : 0));
        dots_kernel<T><<<dim3(unsigned(nb), groups), kThreads, 0, s>>>(rt, (const T*)sn.ptr, (const T*)yn.ptr,
                                                                       (const T*)g.ptr, part, n, nb, k);
      }
    } else {
      check_cuda(cudaMemsetAsync(part, 0, sizeof(double) * size_t(Q * nb), s), "lbfgs_push_");
    }
    sum_parts_kernel<<<unsigned((Q + kThreads - 1) / kThreads), kThreads, 0, s>>>(part, (double*)out.ptr, Q, nb, -1);
    check_launch("lbfgs_push_");
  };
  py::gil_scoped_release nogil;
  if (h.dt == DType::f32) run(float{});
  else run(double{});
}

void lbfgs_direction(py::handle S_h, py::handle Y_h, std::vector<double> cs, std::vector<double> cy, py::handle g_h,
                     double g_scale, py::handle d_h, py::handle out_h) {
  Hist h = check_history(S_h, Y_h, g_h, "g");
  const int64_t k = h.k();
  if (int64_t(cs.size()) != k || int64_t(cy.size()) != k)
    throw py::value_error("coef_s, coef_y: expected " + counted(k, "coefficient") + " each (one per "
                          "history row), got " + std::to_string(cs.size()) + " and " + std::to_string(cy.size()));
  for (size_t j = 0; j < cs.size(); ++j)
    if (!std::isfinite(cs[j]) || !std::isfinite(cy[j]))
      throw py::value_error("coef_s, coef_y: must be finite (entry " + std::to_string(j) + ")");
  if (!std::isfinite(g_scale)) throw py::value_error("g_scale: must be finite");
  int dev = h.dev;
  const Vec g = vec(h, g_h, "g", false, dev), d = vec(h, d_h, "d", true, dev);
  const Vec out = out_buffer(out_h, "out", 2, dev);
  check_disjoint(h, {g, d, out});
  require_current_device(dev, "g");
  cudaStream_t s = current_stream();
  // Segments of 4096 (up to 1024 blocks): 1M elements take 256 blocks (with 16384, 64: 45 % of the
  // probe on an H200, half its SMs idle).
  const int64_t n = h.n, nb = num_blocks(n, 4096, 1024);
  auto run = [&](auto tag) {
    using T = decltype(tag);
    const ScratchBuffer buf(sizeof(double) * size_t(2 * nb), s, dev);  // freed (stream-ordered) on return
    double* part = buf.as<double>();
    if (n > 0) {
      // a table of rows per launch: the first starts from g_scale g, the last writes the partials
      for (int64_t first = 0; first == 0 || first < k; first += kTableRows) {
        const auto rt = row_table<T>(h, first, &cs, &cy);
        const bool start = first == 0, finish = first + kTableRows >= k;
        const auto kernel = start ? (finish ? direction_kernel<T, true, true> : direction_kernel<T, true, false>)
                                   : (finish ? direction_kernel<T, false, true> : direction_kernel<T, false, false>);
        kernel<<<unsigned(nb), kThreads, 0, s>>>(rt, (const T*)g.ptr, g_scale, (T*)d.ptr, part, n, nb);
      }
    } else {
      check_cuda(cudaMemsetAsync(part, 0, sizeof(double) * size_t(2 * nb), s), "lbfgs_direction_");
    }
    sum_parts_kernel<<<1, kThreads, 0, s>>>(part, (double*)out.ptr, 2, nb, 1);
    check_launch("lbfgs_direction_");
  };
  py::gil_scoped_release nogil;
  if (h.dt == DType::f32) run(float{});
  else run(double{});
}

void lbfgs_move(py::handle params, py::handle x_h, py::handle d_h, double t, checks::Flag save_arg) {
  const bool save = checks::flag(save_arg, "save");
  // The params' dtype (float32 for none), as the CPU's: x's made "params[0]" the culprit of a float64
  // x beside float32 params, and took a float64 x with no params, which the CPU refuses.
  const DType dt = float_dtype_of(params, "params");
  int dev = -1;
  const DeviceList P = gather_device(params, "params", dt, true, dev);
  int64_t n = 0;
  for (int64_t s : P.size) n += s;
  // x None: p = p + t d with no copy kept (save only: without save the move reads x), as the CPU twin
  const bool keep = !x_h.is_none();
  if (!keep && !save) throw py::value_error("x: None needs save=True (save=False reads p = x + t d from x)");
  char* x = keep ? check_device_array(x_h, "x", dt, save, n, dev) : nullptr;
  char* d = check_device_array(d_h, "d", dt, false, n, dev);
  if (keep) expect_shape(x_h, "x", {n});  // 1-D, as the CPU twin requires
  expect_shape(d_h, "d", {n});
  // (t: checked by the signature, sig::lbfgs)
  DeviceList X, D;
  X.data.push_back(x);
  X.size.push_back(n);
  D.data.push_back(d);
  D.size.push_back(n);
  if (keep) check_no_overlap({{"params", &P, true}, {"x", &X, save}, {"d", &D, false}}, dtype_size(dt));
  else check_no_overlap({{"params", &P, true}, {"d", &D, false}}, dtype_size(dt));
  if (n == 0) return;
  require_current_device(dev, "params");
  cudaStream_t s = current_stream();
  // x and d cut into the params' slices: lists aligned with the params for one launch
  DeviceList Xs, Ds;
  int64_t off = 0;
  for (size_t i = 0; i < P.count(); ++i) {
    Xs.data.push_back(x + off * int64_t(dtype_size(dt)));
    Ds.data.push_back(d + off * int64_t(dtype_size(dt)));
    Xs.size.push_back(P.size[i]);
    Ds.size.push_back(P.size[i]);
    off += P.size[i];
  }
  const mt::Lists<3> lists{&P, &Xs, &Ds};
  const mt::Lists<2> in_place{&P, &Ds};
  auto run = [&](auto tag) {
    using T = decltype(tag);
    if (!keep) mt::launch_apply<T>(MoveInPlaceOp<T>{T(t)}, in_place, s);
    else if (save) mt::launch_apply<T>(MoveOp<T, true>{T(t)}, lists, s);
    else mt::launch_apply<T>(MoveOp<T, false>{T(t)}, lists, s);
  };
  py::gil_scoped_release nogil;
  if (dt == DType::f32) run(float{});
  else run(double{});
}

void lbfgs_stats(py::handle g_h, py::handle out_h) {
  const DType dt = float_dtype<DeviceArrays>(g_h, "g");
  int dev = -1;
  char* g = check_device_array(g_h, "g", dt, false, -1, dev);
  const auto shape = shape_of(g_h);
  int64_t n = 1;
  for (int64_t v : shape) n *= v;
  const Vec out = out_buffer(out_h, "out", 2, dev);
  DeviceList gl, ol;  // in bytes: g and out differ in dtype
  gl.data.push_back(g);
  gl.size.push_back(n * int64_t(dtype_size(dt)));
  ol.data.push_back(out.ptr);
  ol.size.push_back(out.bytes);
  // itemsize 1: a `single` entry without one counts 8-byte items (g's span would be 8x its bytes)
  check_no_overlap({{"g", &gl, false, true, 1}, {"out", &ol, true, true, 1}}, 1);
  require_current_device(dev, "g");
  cudaStream_t s = current_stream();
  const int64_t nb = num_blocks(n, 16384, 1024);
  auto run = [&](auto tag) {
    using T = decltype(tag);
    const ScratchBuffer buf(sizeof(double) * size_t(2 * nb), s, dev);
    double* part = buf.as<double>();
    if (n > 0) stats_kernel<T><<<unsigned(nb), kThreads, 0, s>>>((const T*)g, part, n, nb);
    else check_cuda(cudaMemsetAsync(part, 0, sizeof(double) * size_t(2 * nb), s), "lbfgs_stats");
    sum_parts_kernel<<<1, kThreads, 0, s>>>(part, (double*)out.ptr, 2, nb, 0);
    check_launch("lbfgs_stats");
  };
  py::gil_scoped_release nogil;
  if (dt == DType::f32) run(float{});
  else run(double{});
}

}  // namespace

void register_lbfgs(py::module_& m) { sig::lbfgs(m, &lbfgs_push, &lbfgs_direction, &lbfgs_move, &lbfgs_stats); }

}  // namespace optkern
