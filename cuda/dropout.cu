// optkern._cuda: random_uniform_, random_rademacher_ and dropout_ on CuPy
// arrays, from the same Philox4x32-10 stream as the CPU (philox.hpp): one
// thread per Philox block, grid-stride, so results equal the CPU's bit for bit.
#include "norm_common.cuh"
#include "optkern/dropout_args.hpp"
#include "optkern/philox.hpp"
#include "optkern/rules/norm.hpp"
#include "optkern/signatures_random.hpp"

namespace optkern {

namespace {

// Blocks b0 .. b0 + nblocks - 1 (per elements each) cover elements [0, n).
struct BlockRange {
  uint64_t b0, nblocks;
  BlockRange(int64_t n, uint64_t offset, unsigned per)
      : b0(offset / per), nblocks(n > 0 ? (offset + uint64_t(n) - 1) / per - offset / per + 1 : 0) {}
};

// f(i, r, k) for each element i in [0, n) of this thread's Philox blocks
// (grid-stride): r is the block's four words, k the element's slot in it.
template <unsigned Per, class F>
__device__ __forceinline__ void for_each_slot(int64_t n, uint64_t seed, uint64_t offset, BlockRange br, F f) {
  for (uint64_t j = blockIdx.x * uint64_t(blockDim.x) + threadIdx.x; j < br.nblocks;
       j += uint64_t(gridDim.x) * blockDim.x) {
    const uint64_t b = br.b0 + j;
    const philox::U4 r = philox::block(b, seed);
    for (unsigned k = 0; k < Per; ++k) {
      const int64_t i = int64_t(b * Per + k - offset);
      if (i >= 0 && i < n) f(i, r, k);
    }
  }
}

template <class T>
__global__ void uniform_kernel(T* out, int64_t n, uint64_t seed, uint64_t offset, BlockRange br) {
  constexpr unsigned per = sizeof(T) == 8 ? 2 : 4;  // a double takes two words
  for_each_slot<per>(n, seed, offset, br, [&](int64_t i, const philox::U4& r, unsigned k) {
    if constexpr (sizeof(T) == 8) out[i] = k == 0 ? philox::to_double(r.x, r.y) : philox::to_double(r.z, r.w);
    else out[i] = philox::to_float(philox::lane(r, k));
  });
}

template <class T>
__global__ void sign_kernel(T* out, int64_t n, uint64_t seed, uint64_t offset, BlockRange br) {
  for_each_slot<4>(n, seed, offset, br, [&](int64_t i, const philox::U4& r, unsigned k) {
    out[i] = philox::to_sign<T>(philox::lane(r, k));
  });
}

template <class T>
__global__ void dropout_kernel(const T* x, T* y, uint8_t* mask, int64_t n, philox::DropoutThreshold th,
                               typename Compute<T>::type scale, uint64_t seed, uint64_t offset, BlockRange br) {
  using C = typename Compute<T>::type;
  for_each_slot<4>(n, seed, offset, br, [&](int64_t i, const philox::U4& r, unsigned k) {
    const bool keep = philox::kept(philox::lane(r, k), th);
    store(y, i, rules::dropout(C(load(x, i)), keep, scale));  // (a dropped NaN or inf: NaN)
    if (mask) mask[i] = uint8_t(keep);
  });
}

constexpr int kThreads = 256;

void random_fill(py::handle out, uint64_t seed, uint64_t offset, bool signs) {
  const DType dt = float_dtype<DeviceArrays>(out, "out");
  DeviceArgs a(dt);
  char* p = a.get(out, "out", -1, true);
  const int64_t n = device_size(out);
  check_philox_counter(n, offset);
  if (n == 0) return;
  require_current_device(a.device, "out");
  const cudaStream_t s = current_stream();
  const unsigned per = (dt == DType::f64 && !signs) ? 2 : 4;
  const BlockRange br(n, offset, per);
  const unsigned grid = grid_for(int64_t(br.nblocks), kThreads);
  if (dt == DType::f32) {
    if (signs) sign_kernel<<<grid, kThreads, 0, s>>>(reinterpret_cast<float*>(p), n, seed, offset, br);
    else uniform_kernel<<<grid, kThreads, 0, s>>>(reinterpret_cast<float*>(p), n, seed, offset, br);
  } else {
    if (signs) sign_kernel<<<grid, kThreads, 0, s>>>(reinterpret_cast<double*>(p), n, seed, offset, br);
    else uniform_kernel<<<grid, kThreads, 0, s>>>(reinterpret_cast<double*>(p), n, seed, offset, br);
  }
  check_launch(signs ? "random_rademacher_" : "random_uniform_");
}

void dropout_(py::handle x, py::handle out, double p, uint64_t seed, uint64_t offset, py::object mask_h) {
  sig::check_dropout_p(p);
  const DType dt = float_dtype<DeviceArrays>(x, "x", true);
  // (Not the collector's aliasing check: out may be x; dropout_args::check_overlap.)
  DeviceArgs a(dt);
  const char* xp = a.get(x, "x", -1, false);
  const int64_t n = device_size(x);
  char* yp = a.get(out, "out", n, true);
  uint8_t* mp = a.opt<uint8_t>(mask_h, "mask", DType::u8, n, true);
  dropout_args::check_overlap(xp, yp, uint64_t(n) * dtype_size(dt), mp, mp ? uint64_t(n) : 0);
  check_philox_counter(n, offset);
  if (n == 0) return;
  require_current_device(a.device, "x");
  const cudaStream_t s = current_stream();
  const BlockRange br(n, offset, 4);
  const unsigned grid = grid_for(int64_t(br.nblocks), kThreads);
  const philox::DropoutThreshold th = philox::dropout_threshold(p);  // (p in [0, 1]: checked above)
  dispatch(dt, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    using C = typename Compute<T>::type;
    const C scale = philox::dropout_scale<C>(p);
    dropout_kernel<T><<<grid, kThreads, 0, s>>>(reinterpret_cast<const T*>(xp), reinterpret_cast<T*>(yp), mp, n,
                                                th, scale, seed, offset, br);
  });
  check_launch("dropout_");
}

}  // namespace

void register_dropout(py::module_& m) {
  sig::random(
      m, [](py::handle o, uint64_t seed, uint64_t off) { random_fill(o, seed, off, false); },
      [](py::handle o, uint64_t seed, uint64_t off) { random_fill(o, seed, off, true); });
  sig::dropout(m, &dropout_);
}

}  // namespace optkern
