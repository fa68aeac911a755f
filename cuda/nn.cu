// CUDA kernels of the built-in MLP (optkern.nn), the same functions and
// signatures as cpp/nn.cpp on CuPy arrays: activations with f, f', f'' in one
// pass (grid-stride, one element per thread), softmax cross-entropy forward /
// backward / R-forward (one row per thread: the row rules of rules/loss.hpp;
// fine for classifier heads, C up to a few thousand). Work goes to CuPy's
// current stream; labels are range-checked by the Python wrapper (an invalid
// label yields NaN in its row of loss, logp and dlogits here, never an
// out-of-bounds read nor a row left unwritten: rules::xent_row).
#include <cuda_runtime.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <string>
#include <vector>

#include "cuda_arrays.hpp"
#include "optkern/rules/activation.hpp"
#include "optkern/rules/loss.hpp"
#include "optkern/signatures.hpp"

namespace optkern {
namespace {

constexpr int kThreads = 256;

inline int blocks_for(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return int(b < 65535 * 8 ? (b > 0 ? b : 1) : 65535 * 8);
}

template <class T>
__global__ void activation_kernel(rules::Act k, const T* __restrict__ z, T* __restrict__ a, T* __restrict__ d1,
                                  T* __restrict__ d2, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    T f, g1, g2;
    rules::activation(k, z[i], f, g1, g2);
    a[i] = f;
    if (d1) d1[i] = g1;
    if (d2) d2[i] = g2;
  }
}

template <class T>
__global__ void xent_fwd_kernel(const T* __restrict__ z, const int64_t* __restrict__ y, T* __restrict__ loss,
                                T* __restrict__ logp, T* __restrict__ g, int64_t N, int64_t C, rules::XentHP<T> h) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= N) return;
  loss[i] = rules::xent_row(z + i * C, C, y[i], h, logp ? logp + i * C : nullptr, g ? g + i * C : nullptr);
}

template <class T>
__global__ void xent_rop_kernel(const T* __restrict__ logp, const T* __restrict__ r, T* __restrict__ out, int64_t N,
                                int64_t C, rules::XentHP<T> h) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= N) return;
  rules::xent_rop_row(logp + i * C, r + i * C, C, h, out + i * C);
}

void activation_fwd(const std::string& kind, py::handle z, py::handle a, py::handle d1, py::handle d2) {
  const rules::Act k = sig::parse_activation(kind);
  const DType dt = float_dtype<DeviceArrays>(z, "z");
  DeviceArgs args(dt);
  char* zp = args.get(z, "z", -1, false);
  const auto shape = DeviceArrays::shape(z);
  const int64_t n = z.attr("size").cast<int64_t>();
  char* ap = args.shaped(a, "a", shape, true);
  char* p1 = d1.is_none() ? nullptr : args.shaped(d1, "d1", shape, true);
  char* p2 = d2.is_none() ? nullptr : args.shaped(d2, "d2", shape, true);
  args.check_overlap();
  require_current_device(args.device, "z");
  if (n == 0) return;
  cudaStream_t s = current_stream();
  py::gil_scoped_release nogil;
  if (dt == DType::f32)
    activation_kernel<float><<<blocks_for(n), kThreads, 0, s>>>(k, (const float*)zp, (float*)ap, (float*)p1,
                                                                 (float*)p2, n);
  else
    activation_kernel<double><<<blocks_for(n), kThreads, 0, s>>>(k, (const double*)zp, (double*)ap, (double*)p1,
                                                                  (double*)p2, n);
  check_launch("activation_fwd");
}

// The (N, C) shape of a 2-D array `what` (logits, log-probabilities).
std::vector<int64_t> rows_classes(py::handle h, const char* what) {
  const auto s = DeviceArrays::shape(h);
  if (s.size() != 2) throw py::value_error(std::string(what) + ": expected a 2-D array (rows, classes)");
  return s;
}

void softmax_xent_fwd(py::handle logits, py::handle labels, py::handle loss, py::handle logp, py::handle dlogits,
                      double smoothing, double penalty, double scale) {
  const DType dt = float_dtype<DeviceArrays>(logits, "logits");
  DeviceArgs args(dt);
  char* zp = args.get(logits, "logits", -1, false);
  const auto NC = rows_classes(logits, "logits");
  const int64_t N = NC[0], C = NC[1];
  if (C < 1) throw py::value_error("logits: needs at least one class");
  const auto* yp = args.shaped<const int64_t>(labels, "labels", DType::i64, {N}, false);
  char* lp = args.shaped(loss, "loss", {N}, true);
  char* logpp = logp.is_none() ? nullptr : args.shaped(logp, "logp", NC, true);
  char* gp = dlogits.is_none() ? nullptr : args.shaped(dlogits, "dlogits", NC, true);
  sig::check_xent_args(smoothing, penalty, scale);
  args.check_overlap();
  require_current_device(args.device, "logits");
  if (N == 0) return;
  cudaStream_t s = current_stream();
  const int blocks = int((N + kThreads - 1) / kThreads);
  py::gil_scoped_release nogil;
  if (dt == DType::f32)
    xent_fwd_kernel<float><<<blocks, kThreads, 0, s>>>((const float*)zp, yp, (float*)lp, (float*)logpp, (float*)gp,
                                                       N, C, {float(smoothing), float(penalty), float(scale)});
  else
    xent_fwd_kernel<double><<<blocks, kThreads, 0, s>>>((const double*)zp, yp, (double*)lp, (double*)logpp,
                                                        (double*)gp, N, C, {smoothing, penalty, scale});
  check_launch("softmax_xent_fwd");
}

void softmax_xent_rop(py::handle logp, py::handle r, py::handle out, double penalty, double scale) {
  const DType dt = float_dtype<DeviceArrays>(logp, "logp");
  DeviceArgs args(dt);
  char* lp = args.get(logp, "logp", -1, false);
  const auto NC = rows_classes(logp, "logp");
  const int64_t N = NC[0], C = NC[1];
  char* rp = args.shaped(r, "r", NC, false);
  char* op = args.shaped(out, "out", NC, true);
  sig::check_xent_args(0.0, penalty, scale);
  args.check_overlap();
  require_current_device(args.device, "logp");
  if (N == 0) return;
  cudaStream_t s = current_stream();
  const int blocks = int((N + kThreads - 1) / kThreads);
  py::gil_scoped_release nogil;
  if (dt == DType::f32)
    xent_rop_kernel<float><<<blocks, kThreads, 0, s>>>((const float*)lp, (const float*)rp, (float*)op, N, C,
                                                       {0.f, float(penalty), float(scale)});
  else
    xent_rop_kernel<double><<<blocks, kThreads, 0, s>>>((const double*)lp, (const double*)rp, (double*)op, N, C,
                                                        {0.0, penalty, scale});
  check_launch("softmax_xent_rop");
}

}  // namespace

void register_nn(py::module_& m) {
  sig::nn(m, &activation_fwd, &softmax_xent_fwd, &softmax_xent_rop);
}

}  // namespace optkern
