// The fused Lanczos step on the GPU, same contract as cpp/linalg.cpp:
//   w <- w - Q_k^T (Q_k w), twice (CGS2; once with passes = 1);  beta = ||w||;  w <- w / beta.
// Deterministic: the column blocking depends only on n (never on the device),
// every block reduces in a fixed tree in double, and block partials are added
// in block order by one thread per row. Kernels per call: 2 x (dots, sum,
// update) + norm + scale, all on CuPy's current stream; the returned beta
// is copied to the host (Lanczos needs it there for T anyway). Q may be float32
// with a float64 w (float32 basis storage; w and the coefficients in double). ||w|| of a w near the ends
// of double's range is summed again scaled (rules::lanczos_sumsq_direct): three more kernels, which
// return at once unless the direct sum said so (no host round trip).
#include <cuda_runtime.h>
#include <pybind11/pybind11.h>

#include <string>

#include "block_tree.cuh"
#include "cuda_arrays.hpp"
#include "optkern/rules/second_order.hpp"
#include "optkern/signatures.hpp"

namespace optkern {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 256;     // column blocks per row (fixed by n only)
constexpr int64_t kMinPerBlock = 2048;  // columns per block at least

inline int64_t num_blocks(int64_t n) {
  const int64_t b = (n + kMinPerBlock - 1) / kMinPerBlock;
  return b < 1 ? 1 : (b > kMaxBlocks ? kMaxBlocks : b);
}

// part[i * nb + b] = sum over block b's columns of Q[i, j] * w[j]  (rows i = blockIdx.y, + gridDim.y, ...:
// gridDim.y is at most 65535, the basis may be longer).
template <class TQ, class T>
__global__ void dots_kernel(const TQ* __restrict__ Q, const T* __restrict__ w, double* __restrict__ part, int64_t n,
                            int64_t nb, int64_t k) {
  const int64_t b = blockIdx.x;
  const auto [lo, hi] = blockgpu::block_segment(n, nb, b);
  for (int64_t i = blockIdx.y; i < k; i += gridDim.y) {  // uniform per block: block_sum may sync
    const TQ* q = Q + i * n;
    double s = 0.0;
    for (int64_t j = lo + threadIdx.x; j < hi; j += kThreads) s = rules::scaled_plus(double(q[j]), double(w[j]), s);
    s = blockgpu::block_sum<kThreads>(s);
    if (threadIdx.x == 0) part[i * nb + b] = s;
    __syncthreads();  // everyone has read sh[0] before the next row overwrites it
  }
}

// ||w||^2 partials per block.
template <class T> __global__ void sq_kernel(const T* __restrict__ w, double* __restrict__ part, int64_t n, int64_t nb) {
  const int64_t b = blockIdx.x;
  const auto [lo, hi] = blockgpu::block_segment(n, nb, b);
  double s = 0.0;
  for (int64_t j = lo + threadIdx.x; j < hi; j += kThreads) s = rules::scaled_plus(double(w[j]), double(w[j]), s);
  s = blockgpu::block_sum<kThreads>(s);
  if (threadIdx.x == 0) part[b] = s;
}

// c[i] = sum_b part[i * nb + b] in block order; coeffs[i] = c[i] (first pass) or += c[i].
__global__ void sum_kernel(const double* __restrict__ part, double* __restrict__ c, double* __restrict__ coeffs,
                           int64_t k, int64_t nb, bool accumulate) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= k) return;
  double s = 0.0;
  for (int64_t b = 0; b < nb; ++b) s += part[i * nb + b];
  c[i] = s;
  coeffs[i] = accumulate ? coeffs[i] + s : s;
}

// w[j] -= sum_i c[i] Q[i, j], rows in order.
template <class TQ, class T>
__global__ void update_kernel(const TQ* __restrict__ Q, const double* __restrict__ c, T* __restrict__ w, int64_t n,
                              int64_t k) {
  for (int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; j < n; j += int64_t(gridDim.x) * blockDim.x) {
    T acc = w[j];
    for (int64_t i = 0; i < k; ++i) acc = rules::scaled_plus(-T(c[i]), T(Q[i * n + j]), acc);  // (not contracted: the CPU's rounding)
    w[j] = acc;
  }
}

// The norm's state in scratch after norm_kernel: beta, the path (kDirect, kScaled, kLeave), and for
// kScaled the exponent e and 1 / sqrt(ssq) of rules::lanczos_unit_scaled.
enum NormPath { kDirect = 0, kScaled = 1, kLeave = 2 };
struct NormState {
  double beta, inv;
  int path, e;
};

// beta = sqrt(sum part) when that sum is in range (rules::lanczos_sumsq_direct); else the scaled path.
template <class T> __global__ void norm_kernel(const double* __restrict__ part, NormState* __restrict__ st, int64_t nb) {
  double s = 0.0;
  for (int64_t b = 0; b < nb; ++b) s += part[b];
  st->beta = sqrt(s);
  st->inv = 0.0, st->e = 0;
  st->path = rules::lanczos_sumsq_direct<T>(s) ? kDirect : kScaled;
}

// The scaled path, 1: max |w| per block.
template <class T>
__global__ void max_kernel(const T* __restrict__ w, double* __restrict__ part, const NormState* __restrict__ st,
                           int64_t n, int64_t nb) {
  if (st->path != kScaled) return;  // (uniform: the whole grid returns)
  __shared__ double sh[kThreads];
  const int64_t b = blockIdx.x;
  const auto [lo, hi] = blockgpu::block_segment(n, nb, b);
  double m = 0.0;
  for (int64_t j = lo + threadIdx.x; j < hi; j += kThreads) m = rules::max_abs(m, double(w[j]));
  sh[threadIdx.x] = m;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) sh[threadIdx.x] = rules::max_abs(sh[threadIdx.x], sh[threadIdx.x + s]);
    __syncthreads();
  }
  if (threadIdx.x == 0) part[b] = sh[0];
}

// 2: the squares of w 2^-e per block, e the exponent of max |w| (every block folds the maxima itself,
// in block order, as scaled_norm_kernel does).
template <class T>
__global__ void scaled_sq_kernel(const T* __restrict__ w, const double* __restrict__ maxima,
                                 double* __restrict__ part, const NormState* __restrict__ st, int64_t n,
                                 int64_t nb) {
  if (st->path != kScaled) return;
  double amax = 0.0;
  for (int64_t b = 0; b < nb; ++b) amax = rules::max_abs(amax, maxima[b]);
  if (!rules::finite_(amax) || amax == 0.0) return;  // (scaled_norm_kernel says so: kLeave)
  const int e = rules::scale_exp(amax);
  const int64_t b = blockIdx.x;
  const auto [lo, hi] = blockgpu::block_segment(n, nb, b);
  double s = 0.0;
  for (int64_t j = lo + threadIdx.x; j < hi; j += kThreads) {
    const double v = rules::scale2(double(w[j]), -e);
    s = rules::scaled_plus(v, v, s);
  }
  s = blockgpu::block_sum<kThreads>(s);
  if (threadIdx.x == 0) part[b] = s;
}

// 3: beta and 1 / sqrt(ssq) from the scaled sums; a zero w: beta 0, a w holding NaN or Inf: beta NaN
// or Inf, w left as it is (kLeave).
__global__ void scaled_norm_kernel(const double* __restrict__ part, const double* __restrict__ maxima,
                                   NormState* __restrict__ st, int64_t nb) {
  if (st->path != kScaled) return;
  double amax = 0.0;
  for (int64_t b = 0; b < nb; ++b) amax = rules::max_abs(amax, maxima[b]);
  if (!rules::finite_(amax) || amax == 0.0) {
    st->beta = amax, st->path = kLeave;
    return;
  }
  double s = 0.0;
  for (int64_t b = 0; b < nb; ++b) s += part[b];
  st->e = rules::scale_exp(amax);
  st->beta = rules::norm_scaled(s, st->e);
  st->inv = 1.0 / sqrt(s);
}

// w <- w / beta: w *= 1 / beta on the direct path when beta > 0, the scaled entries on the scaled one.
template <class T> __global__ void scale_kernel(T* __restrict__ w, const NormState* __restrict__ st, int64_t n) {
  const int path = st->path;
  const double b = st->beta, inv = st->inv;
  const int e = st->e;
  if (path == kLeave || (path == kDirect && !(b > 0.0))) return;
  const T d = path == kDirect ? T(1.0 / b) : T(0);  // (1 / b need not be a T on the scaled path)
  for (int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; j < n; j += int64_t(gridDim.x) * blockDim.x)
    w[j] = path == kDirect ? w[j] * d : rules::lanczos_unit_scaled(w[j], e, inv);
}

template <class TQ, class T>
void cgs2(const TQ* Q, int64_t n, int64_t k, T* w, double* coeffs, double* scratch, int passes, cudaStream_t s) {
  const int64_t nb = num_blocks(n);
  double* part = scratch;          // k * nb (>= 2 nb)
  double* c = part + (k > 1 ? k : 2) * nb;  // k
  NormState* st = reinterpret_cast<NormState*>(c + (k > 0 ? k : 1));
  const int grid_cols = int((n + kThreads - 1) / kThreads < 4096 ? (n + kThreads - 1) / kThreads : 4096);
  for (int pass = 0; pass < passes && k > 0; ++pass) {
    dots_kernel<TQ, T><<<dim3(unsigned(nb), unsigned(k < 65535 ? k : 65535)), kThreads, 0, s>>>(Q, w, part, n, nb, k);
    sum_kernel<<<unsigned((k + kThreads - 1) / kThreads), kThreads, 0, s>>>(part, c, coeffs, k, nb, pass == 1);
    update_kernel<TQ, T><<<grid_cols, kThreads, 0, s>>>(Q, c, w, n, k);
  }
  sq_kernel<T><<<unsigned(nb), kThreads, 0, s>>>(w, part, n, nb);
  norm_kernel<T><<<1, 1, 0, s>>>(part, st, nb);
  max_kernel<T><<<unsigned(nb), kThreads, 0, s>>>(w, part + nb, st, n, nb);
  scaled_sq_kernel<T><<<unsigned(nb), kThreads, 0, s>>>(w, part + nb, part, st, n, nb);
  scaled_norm_kernel<<<1, 1, 0, s>>>(part, part + nb, st, nb);
  scale_kernel<T><<<grid_cols, kThreads, 0, s>>>(w, st, n);
}

double lanczos_orthogonalize(py::handle Q, int64_t k, py::handle w, py::handle coeffs, int passes) {
  if (passes != 1 && passes != 2) throw py::value_error("passes: expected 1 or 2, got " + std::to_string(passes));
  const DType dq = float_dtype<DeviceArrays>(Q, "Q");
  const DType dt = float_dtype<DeviceArrays>(w, "w");
  if (dq == DType::f64 && dt == DType::f32)  // f32 Q with f64 w is allowed, not the reverse
    throw py::type_error("w: expected float64, got float32");
  DeviceArgs args(dt);
  char* qp = args.get(Q, "Q", dq, -1, false);
  const auto shape = DeviceArrays::shape(Q);
  if (shape.size() != 2) throw py::value_error("Q: expected a 2-D array (basis vectors as rows)");
  const int64_t m = shape[0], n = shape[1];
  if (k < 0 || k > m)
    throw py::value_error("k: must be in [0, " + std::to_string(m) + "] (rows of Q), got " + std::to_string(k));
  char* wp = args.shaped(w, "w", {n}, true);
  char* cp = args.get(coeffs, "coeffs", DType::f64, -1, true);
  const auto cs = DeviceArrays::shape(coeffs);
  if (cs.size() != 1 || cs[0] < k)
    throw py::value_error("coeffs: expected a 1-D float64 array with at least k = " + std::to_string(k) +
                          " elements");
  args.check_overlap();
  require_current_device(args.device, "Q");
  if (n == 0) {  // as on the CPU: no basis to project on, coefficients zero
    if (k > 0) check_cuda(cudaMemsetAsync(cp, 0, size_t(k) * sizeof(double), current_stream()), "coeffs");
    return 0.0;
  }
  cudaStream_t s = current_stream();
  double beta = 0.0;
  {
    py::gil_scoped_release nogil;
    const int64_t nb = num_blocks(n);
    const size_t bytes = sizeof(double) * size_t((k > 1 ? k : 2) * nb + (k > 0 ? k : 1)) + sizeof(NormState);
    const ScratchBuffer buf(bytes, s, args.device);
    double* scratch = buf.as<double>();
    if (dt == DType::f32)
      cgs2<float, float>((const float*)qp, n, k, (float*)wp, (double*)cp, scratch, passes, s);
    else if (dq == DType::f32)
      cgs2<float, double>((const float*)qp, n, k, (double*)wp, (double*)cp, scratch, passes, s);
    else
      cgs2<double, double>((const double*)qp, n, k, (double*)wp, (double*)cp, scratch, passes, s);
    cudaError_t e = cudaGetLastError();
    const double* beta_at = scratch + (k > 1 ? k : 2) * nb + (k > 0 ? k : 1);  // (NormState::beta: first)
    if (e == cudaSuccess) e = cudaMemcpyAsync(&beta, beta_at, sizeof(double), cudaMemcpyDeviceToHost, s);
    if (e == cudaSuccess) e = cudaStreamSynchronize(s);
    if (e != cudaSuccess) {
      py::gil_scoped_acquire gil;
      throw std::runtime_error(std::string("lanczos_orthogonalize_: CUDA error: ") + cudaGetErrorString(e));
    }
  }
  return beta;
}

}  // namespace

void register_linalg(py::module_& m) {
  sig::linalg(m, &lanczos_orthogonalize);
}

}  // namespace optkern
