// optkern._cuda's GradScaler kernels (rules/amp.hpp), the twins of cpp/amp.cpp with the same
// signatures and checks (optkern/amp_args.hpp): amp_unscale_ multiplies the grads by
// float(1 / double(scale)) read on the device and raises the device flag found_inf on any inf
// or NaN (every thread that sees one stores the same 1.0f: no reduction, no order), amp_check_
// raises it without writing the grads (any format);
// amp_update_scale_ is torch's _amp_update_scale_ in one thread. Nothing synchronizes the host.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "cuda_arrays.hpp"
#include "multi_tensor.cuh"
#include "optkern/amp_args.hpp"
#include "optkern/rules/amp.hpp"

namespace optkern {
namespace {

// g <- g * inv, the factor read from the device scale when a block starts.
struct UnscaleOp {
  static constexpr int kDepth = 1;
  static constexpr unsigned kWritten = 1u;
  const float* scale;
  float* found_inf;
  float inv = 1.0f;
  __device__ UnscaleOp load() const {
    UnscaleOp o = *this;
    o.inv = rules::inv_scale(*scale);
    return o;
  }
  __device__ void operator()(float* v) const {
    if (rules::nonfinite(v[0])) *found_inf = 1.0f;
    v[0] = rules::unscale(v[0], inv);
  }
};

// found_inf <- 1 on any inf or NaN among the grads (format F: float32 or a half's bits); the
// grads are only read (kWritten 0).
template <lowp::Fmt F, class T> struct CheckOp {
  static constexpr int kDepth = 1;
  static constexpr unsigned kWritten = 0u;
  float* found_inf;
  __device__ CheckOp load() const { return *this; }
  __device__ void operator()(T* v) const {
    if (rules::nonfinite(lowp::load<F>(v, 0))) *found_inf = 1.0f;
  }
};

__global__ void update_scale_kernel(float* scale, int64_t* tracker, const float* found_inf, double growth,
                                    double backoff, int64_t interval) {
  rules::update_scale(*scale, *tracker, *found_inf != 0.0f, growth, backoff, interval);
}

void amp_unscale(py::handle grads, py::handle scale, py::handle found_inf) {
  amp::UnscaleCall<DeviceArrays> c;
  amp::gather_unscale(c, grads, scale, found_inf);
  int64_t n = 0;
  for (int64_t k : c.grads.size) n += k;
  if (n == 0) return;  // nothing to scale, nothing found
  require_current_device(c.args.device, "grads");
  const cudaStream_t s = current_stream();
  const mt::Lists<1> lists{&c.grads};
  py::gil_scoped_release nogil;
  mt::launch_apply<float>(UnscaleOp{c.scale, c.found_inf}, lists, s);
}

void amp_check(py::handle grads, const std::string& grad_dtype, py::handle found_inf) {
  amp::CheckCall<DeviceArrays> c;
  amp::gather_check(c, grads, grad_dtype, found_inf);
  int64_t n = 0;
  for (int64_t k : c.grads.size) n += k;
  if (n == 0) return;
  require_current_device(c.args.device, "grads");
  const cudaStream_t s = current_stream();
  const mt::Lists<1> lists{&c.grads};
  py::gil_scoped_release nogil;
  if (c.fmt == lowp::Fmt::f32) mt::launch_apply<float>(CheckOp<lowp::Fmt::f32, float>{c.found_inf}, lists, s);
  else if (c.fmt == lowp::Fmt::bf16) mt::launch_apply<uint16_t>(CheckOp<lowp::Fmt::bf16, uint16_t>{c.found_inf}, lists, s);
  else mt::launch_apply<uint16_t>(CheckOp<lowp::Fmt::f16, uint16_t>{c.found_inf}, lists, s);
}

void amp_update_scale(py::handle scale, py::handle tracker, py::handle found_inf, double growth, double backoff,
                      int64_t interval) {
  amp::UpdateCall<DeviceArrays> c;
  amp::gather_update(c, scale, tracker, found_inf, growth, backoff, interval);
  require_current_device(c.args.device, "scale");
  const cudaStream_t s = current_stream();
  update_scale_kernel<<<1, 1, 0, s>>>(c.scale, c.tracker, c.found_inf, growth, backoff, interval);
  check_launch("optkern._cuda amp_update_scale_");
}

}  // namespace

void register_amp(py::module_& m) { sig::amp(m, &amp_unscale, &amp_check, &amp_update_scale); }

}  // namespace optkern
