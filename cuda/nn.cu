// CUDA kernels of the built-in MLP (optkern.nn), the same functions and
// signatures as cpp/nn.cpp on CuPy arrays: activations with f, f', f'' in one
// pass (grid-stride, one element per thread), softmax cross-entropy forward /
// backward / R-forward (one row per thread: the row rules of rules/loss.hpp;
// fine for classifier heads, C up to a few thousand). Work goes to CuPy's
// current stream; labels are range-checked by the Python wrapper (an invalid
// label yields NaN here, never an out-of-bounds read).
#include <cuda_runtime.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <string>

#include "cuda_arrays.hpp"
#include "nn_checks.cuh"
#include "optkern/rules/activation.hpp"
#include "optkern/rules/loss.hpp"
#include "optkern/signatures.hpp"

namespace optkern {
namespace {
namespace nc = nncheck_cuda;

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
  const DType dt = nc::float_dtype(z, "z");
  int dev = -1;
  char* zp = check_device_array(z, "z", dt, false, -1, dev);
  const auto shape = nc::shape_of(z);
  const int64_t n = z.attr("size").cast<int64_t>();
  char* ap = check_device_array(a, "a", dt, true, -1, dev);
  nc::expect_shape(a, "a", shape);
  std::vector<nc::Span> spans{nc::span("z", z, false), nc::span("a", a, true)};
  char* p1 = nullptr;
  char* p2 = nullptr;
  if (!d1.is_none()) {
    p1 = check_device_array(d1, "d1", dt, true, -1, dev);
    nc::expect_shape(d1, "d1", shape);
    spans.push_back(nc::span("d1", d1, true));
  }
  if (!d2.is_none()) {
    p2 = check_device_array(d2, "d2", dt, true, -1, dev);
    nc::expect_shape(d2, "d2", shape);
    spans.push_back(nc::span("d2", d2, true));
  }
  nc::no_overlap(spans);
  require_current_device(dev, "z");
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

void softmax_xent_fwd(py::handle logits, py::handle labels, py::handle loss, py::handle logp, py::handle dlogits,
                      double smoothing, double penalty, double scale) {
  const DType dt = nc::float_dtype(logits, "logits");
  int dev = -1;
  char* zp = check_device_array(logits, "logits", dt, false, -1, dev);
  const auto shape = nc::shape_of(logits);
  if (shape.size() != 2) throw py::value_error("logits: expected a 2-D array (rows, classes)");
  const int64_t N = shape[0], C = shape[1];
  if (C < 1) throw py::value_error("logits: needs at least one class");
  const int64_t* yp = nc::int64_array(labels, "labels", dev);
  nc::expect_shape(labels, "labels", {N});
  char* lp = check_device_array(loss, "loss", dt, true, -1, dev);
  nc::expect_shape(loss, "loss", {N});
  std::vector<nc::Span> spans{nc::span("logits", logits, false), nc::span("labels", labels, false),
                              nc::span("loss", loss, true)};
  char* logpp = nullptr;
  char* gp = nullptr;
  if (!logp.is_none()) {
    logpp = check_device_array(logp, "logp", dt, true, -1, dev);
    nc::expect_shape(logp, "logp", {N, C});
    spans.push_back(nc::span("logp", logp, true));
  }
  if (!dlogits.is_none()) {
    gp = check_device_array(dlogits, "dlogits", dt, true, -1, dev);
    nc::expect_shape(dlogits, "dlogits", {N, C});
    spans.push_back(nc::span("dlogits", dlogits, true));
  }
  if (!(smoothing >= 0.0 && smoothing <= 1.0))
    throw py::value_error("label_smoothing: must be in [0, 1], got " + std::to_string(smoothing));
  if (!std::isfinite(penalty)) throw py::value_error("confidence_penalty: must be finite");
  if (!std::isfinite(scale)) throw py::value_error("scale: must be finite");
  nc::no_overlap(spans);
  require_current_device(dev, "logits");
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
  const DType dt = nc::float_dtype(logp, "logp");
  int dev = -1;
  char* lp = check_device_array(logp, "logp", dt, false, -1, dev);
  const auto shape = nc::shape_of(logp);
  if (shape.size() != 2) throw py::value_error("logp: expected a 2-D array (rows, classes)");
  const int64_t N = shape[0], C = shape[1];
  char* rp = check_device_array(r, "r", dt, false, -1, dev);
  nc::expect_shape(r, "r", {N, C});
  char* op = check_device_array(out, "out", dt, true, -1, dev);
  nc::expect_shape(out, "out", {N, C});
  if (!std::isfinite(penalty)) throw py::value_error("confidence_penalty: must be finite");
  if (!std::isfinite(scale)) throw py::value_error("scale: must be finite");
  nc::no_overlap({nc::span("logp", logp, false), nc::span("r", r, false), nc::span("out", out, true)});
  require_current_device(dev, "logp");
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
