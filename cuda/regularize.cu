// L1 / L2 penalties over many CuPy arrays at once (rules/regularize.hpp):
//   penalty_grad_(params, grads, l1, l2, out|None): g += l2 p + l1 sign(p);
//       out[0] = l1 sum|p| + l2/2 sum p^2 when out is given (same pass over p)
//   penalty_value(params, l1, l2, out): the penalty alone into out[0]
// Multi-tensor: up to kMaxTensors arrays per launch, their pointers passed by
// value in the kernel arguments; blockIdx.y picks the array, blockIdx.x
// strides over it. The value is reduced deterministically: a fixed tree per
// block into a partials buffer, then one block sums the partials in order.
// Nothing synchronizes; the result stays on the device (both return None).
#include <cuda_runtime.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "block_tree.cuh"
#include "cuda_arrays.hpp"
#include "optkern/regularize_args.hpp"
#include "optkern/rules/regularize.hpp"
#include "optkern/signatures_reduce.hpp"

namespace optkern {
namespace py = pybind11;

namespace {

constexpr int kMaxTensors = 64;  // 64 * 3 pointers: well inside the 4 KiB argument limit
constexpr int kThreads = 256;
constexpr int kMaxBlocksX = 1024;

template <class T> struct Table {
  const T* p[kMaxTensors];
  T* g[kMaxTensors];
  int64_t n[kMaxTensors];
  int64_t part_offset;  // first slot of this launch in the partials buffer
};

template <class T>
__global__ void penalty_kernel(Table<T> t, T l1, T l2, double dl1, double dl2, bool grad, double* partial) {
  const int k = blockIdx.y;
  const T* p = t.p[k];
  T* g = t.g[k];
  const int64_t n = t.n[k];
  double acc = 0.0;
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < n; i += int64_t(gridDim.x) * kThreads) {
    const T pi = p[i];
    if (grad) g[i] = rules::penalty_grad(pi, g[i], l1, l2);
    if (partial) acc += rules::penalty_term(pi, dl1, dl2);
  }
  if (partial) {
    const double s = blockgpu::block_sum<kThreads>(acc);
    if (threadIdx.x == 0) partial[t.part_offset + int64_t(k) * gridDim.x + blockIdx.x] = s;
  }
}

__global__ void sum_partials(const double* part, int64_t n, double* out) {
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += kThreads) acc += part[i];
  const double s = blockgpu::block_sum<kThreads>(acc);
  if (threadIdx.x == 0) out[0] = s;
}

double* out_ptr(py::handle out, int& device) {
  if (out.is_none()) return nullptr;
  return reinterpret_cast<double*>(check_device_array(out, "out", DType::f64, true, 1, device));
}

int blocks_x(const DeviceList& p, size_t lo, size_t hi) {
  int64_t m = 1;
  for (size_t i = lo; i < hi; ++i) m = std::max(m, p.size[i]);
  return int(std::min<int64_t>((m + kThreads - 1) / kThreads, kMaxBlocksX));
}

template <class T>
void launch(const DeviceList& p, const DeviceList* g, double l1, double l2, double* out) {
  cudaStream_t stream = current_stream();
  const size_t n = p.count();
  // Partial slots: each launch group needs (#arrays in group) * blocks_x.
  int64_t slots = 0;
  for (size_t lo = 0; lo < n; lo += kMaxTensors) {
    const size_t hi = std::min(n, lo + kMaxTensors);
    slots += int64_t(hi - lo) * blocks_x(p, lo, hi);
  }
  const ScratchBuffer part_buf(out ? size_t(slots) * sizeof(double) : 0, stream);
  double* part = part_buf.as<double>();
  {
    py::gil_scoped_release nogil;
    int64_t offset = 0;
    for (size_t lo = 0; lo < n; lo += kMaxTensors) {
      const size_t hi = std::min(n, lo + kMaxTensors);
      Table<T> t{};
      for (size_t i = lo; i < hi; ++i) {
        t.p[i - lo] = p.ptr<T>(i);
        t.g[i - lo] = g ? g->ptr<T>(i) : nullptr;
        t.n[i - lo] = p.size[i];
      }
      t.part_offset = offset;
      const int bx = blocks_x(p, lo, hi);
      offset += int64_t(hi - lo) * bx;
      penalty_kernel<T><<<dim3(bx, unsigned(hi - lo)), kThreads, 0, stream>>>(t, T(l1), T(l2), l1, l2, g != nullptr, part);
    }
    if (out) {
      if (slots > 0) sum_partials<<<1, kThreads, 0, stream>>>(part, slots, out);
      else check_cuda(cudaMemsetAsync(out, 0, sizeof(double), stream), "penalty");  // (no arrays: 0)
    }
  }
  check_launch("penalty");
}

py::object penalty_grad_(py::handle params, py::handle grads, double l1, double l2, py::handle out) {
  // (l1, l2: checked by the signature, sig::penalties)
  const DType dt = float_dtype_of(params, "params");
  int device = -1;
  const DeviceList p = gather_device(params, "params", dt, false, device);
  const DeviceList g = gather_device(grads, "grads", dt, true, device, &p.size);
  regularize_args::check_rounded(l1, l2, dt == DType::f32 && p.count() > 0);
  double* o = out_ptr(out, device);
  const DeviceList ol = regularize_args::out_list<DeviceList>(o);
  regularize_args::check_overlap(p, &g, o ? &ol : nullptr, dtype_size(dt));
  require_current_device(device, "params");
  if (dt == DType::f32) launch<float>(p, &g, l1, l2, o);
  else launch<double>(p, &g, l1, l2, o);
  return py::none();
}

py::object penalty_value(py::handle params, double l1, double l2, py::handle out) {
  // (l1, l2: checked by the signature, sig::penalties)
  const DType dt = float_dtype_of(params, "params");
  int device = -1;
  const DeviceList p = gather_device(params, "params", dt, false, device);
  if (out.is_none()) throw py::value_error("out: a 1-element float64 cupy array is required (no host sync)");
  double* o = out_ptr(out, device);
  const DeviceList ol = regularize_args::out_list<DeviceList>(o);
  regularize_args::check_overlap<DeviceList>(p, nullptr, &ol, dtype_size(dt));
  require_current_device(device, "params");
  if (dt == DType::f32) launch<float>(p, nullptr, l1, l2, o);
  else launch<double>(p, nullptr, l1, l2, o);
  return py::none();
}

}  // namespace

void register_regularize(py::module_& m) { sig::penalties(m, &penalty_grad_, &penalty_value); }

}  // namespace optkern
