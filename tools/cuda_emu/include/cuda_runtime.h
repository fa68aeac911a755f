// CUDA on the CPU, for running optkern's .cu files where no GPU is lent.
//
// tools/cuda_emu/build.py compiles every cuda/*.cu file as C++ against this
// header (in place of the toolkit's), with __CUDACC__ and __CUDA_ARCH__
// defined so the device branches of the shared rule headers are the ones that
// run, and with each `kernel<<<grid, block, shmem, stream>>>(args)` rewritten
// to `::okemu::launch(grid, block, shmem, stream, kernel, args)`.
//
// A launch runs its blocks one after another on the calling thread. Each CUDA
// thread of a block is a fiber (ucontext) with its own stack; __syncthreads()
// and the warp shuffles are barriers at which a fiber yields until every live
// thread of its block (or warp) has arrived, so the kernels' cooperation is
// exercised as written. `__shared__` variables are function statics: one per
// block at a time, since blocks never overlap. "Device memory" is host memory:
// the CuPy stand-in (tools/cuda_emu/py/cupy) hands out NumPy buffers.
//
// What this checks: indexing, reductions, barriers, the host code around the
// launches, against the CPU module's results (and, built with ASan, every
// out-of-bounds access); shared memory that starts undefined (0xff bytes per
// block), shuffle masks naming exited lanes, the device's grid and block limits;
// with OKEMU_ORDER=reverse / shuffle, shared-memory races that one fixed thread
// order hides (scheduler.cpp). What it cannot: the memory model (a fiber switches
// only at barriers and shuffles, never between a racing load and store), races
// between blocks that run at once, nvcc's floating-point contraction, device
// intrinsics' exact ulps (they are emulated correctly rounded), performance.
#pragma once
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <type_traits>
#include <utility>

// ---- qualifiers -------------------------------------------------------------
#define __host__
#define __device__
#define __global__
#define __forceinline__ inline __attribute__((always_inline))
#define __shared__ static
#define __grid_constant__
#define __launch_bounds__(...)
#define __constant__ static

// ---- built-in vector types and indices --------------------------------------
struct uint3 {
  unsigned x, y, z;
};
struct alignas(16) float4 {  // (CUDA's vector type: one 16-byte load or store)
  float x, y, z, w;
};
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};
inline thread_local uint3 threadIdx{0, 0, 0};
inline thread_local uint3 blockIdx{0, 0, 0};
inline thread_local dim3 blockDim{1, 1, 1};
inline thread_local dim3 gridDim{1, 1, 1};
constexpr int warpSize = 32;

// ---- runtime API (the calls optkern makes) -----------------------------------
enum cudaError_t { cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorLaunchFailure = 719 };
using cudaError = cudaError_t;
struct CUstream_st;
using cudaStream_t = CUstream_st*;
struct CUmemPoolHandle_st;
using cudaMemPool_t = CUmemPoolHandle_st*;
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4
};
enum cudaDeviceAttr { cudaDevAttrMemoryPoolsSupported = 115 };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
// Only build.py's rewrite of it (okemu::opt_in_shared) runs here: a call it missed does not build.
template <class K> cudaError_t cudaFuncSetAttribute(K*, cudaFuncAttribute, int) = delete;
enum cudaMemAllocationType { cudaMemAllocationTypeInvalid = 0, cudaMemAllocationTypePinned = 1 };
enum cudaMemLocationType { cudaMemLocationTypeInvalid = 0, cudaMemLocationTypeDevice = 1 };
enum cudaMemPoolAttr { cudaMemPoolAttrReleaseThreshold = 4 };
struct cudaMemLocation {
  cudaMemLocationType type;
  int id;
};
struct cudaMemPoolProps {
  cudaMemAllocationType allocType;
  int handleTypes;
  cudaMemLocation location;
  void* win32SecurityAttributes;
  size_t maxSize;
  unsigned char reserved[56];
};

cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
const char* cudaGetErrorString(cudaError_t e);
cudaError_t cudaGetDevice(int* d);
cudaError_t cudaSetDevice(int d);
cudaError_t cudaGetDeviceCount(int* n);
cudaError_t cudaRuntimeGetVersion(int* v);
cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int device);
cudaError_t cudaMalloc(void** p, size_t bytes);
cudaError_t cudaFree(void* p);
cudaError_t cudaMemPoolCreate(cudaMemPool_t* pool, const cudaMemPoolProps* props);
cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t pool, cudaMemPoolAttr a, void* v);
cudaError_t cudaMallocFromPoolAsync(void** p, size_t bytes, cudaMemPool_t pool, cudaStream_t s);
cudaError_t cudaFreeAsync(void* p, cudaStream_t s);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind k, cudaStream_t s = nullptr);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind k);
cudaError_t cudaMemsetAsync(void* p, int v, size_t bytes, cudaStream_t s = nullptr);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaDeviceSynchronize();

template <class T> cudaError_t cudaMallocFromPoolAsync(T** p, size_t bytes, cudaMemPool_t pool, cudaStream_t s) {
  return cudaMallocFromPoolAsync(reinterpret_cast<void**>(p), bytes, pool, s);
}
template <class T> cudaError_t cudaMalloc(T** p, size_t bytes) { return cudaMalloc(reinterpret_cast<void**>(p), bytes); }

// ---- device functions ----------------------------------------------------------
// One rounding each, never contracted into a neighbouring add or multiply (the empty asm hides
// the value from GCC's contraction, which runs after inlining).
template <class T> inline T okemu_rounded(T x) {
  asm("" : "+x"(x));
  return x;
}
inline float __fmul_rn(float a, float b) { return okemu_rounded(a * b); }
inline float __fadd_rn(float a, float b) { return okemu_rounded(a + b); }
inline float __fsub_rn(float a, float b) { return okemu_rounded(a - b); }
inline float __fdiv_rn(float a, float b) { return okemu_rounded(a / b); }
inline double __dmul_rn(double a, double b) { return okemu_rounded(a * b); }
inline double __dadd_rn(double a, double b) { return okemu_rounded(a + b); }
inline uint32_t __float_as_uint(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
}
inline float __uint_as_float(uint32_t u) {
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(unsigned(x)); }
inline unsigned __umulhi(unsigned a, unsigned b) { return unsigned((uint64_t(a) * b) >> 32); }

// CUDA's min/max take mixed argument types (the usual arithmetic conversions).
template <class A, class B> inline std::common_type_t<A, B> min(A a, B b) {
  using C = std::common_type_t<A, B>;
  return C(b) < C(a) ? C(b) : C(a);
}
template <class A, class B> inline std::common_type_t<A, B> max(A a, B b) {
  using C = std::common_type_t<A, B>;
  return C(a) < C(b) ? C(b) : C(a);
}

namespace okemu {

// ---- the scheduler and the launches (tools/cuda_emu/scheduler.cpp, runtime.cpp) ---
void syncthreads();
// barrier of the live lanes; *got = src's value; every lane `mask` names must take part
void warp_exchange(uint64_t mine, int src_lane, uint64_t* got, unsigned mask);
unsigned lane_id();
void run_grid(dim3 grid, dim3 block, size_t shmem, const std::function<void()>& thread_body, const char* name);
// A `__shared__` variable's bytes set to 0xff when the first thread of a block reaches its
// declaration (build.py inserts the call after each one): no value survives from another block.
void shared_fresh(void* p, size_t bytes);
// The running launch's dynamic shared memory (`extern __shared__ T name[];`, which build.py
// rewrites to a pointer to it): the launch's shmem bytes, 0xff-filled when each block starts.
void* dynamic_shared();
// cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes), which build.py
// rewrites to this with the kernel expression's text: launches of that expression (their names'
// text after "file:line ") may take `bytes` of dynamic shared memory.
cudaError_t opt_in_shared(const char* kernel, long long bytes);

template <class T> T shuffle_from(T v, int src_lane, unsigned mask) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "shuffle of a value wider than 8 bytes");
  uint64_t mine = 0, got = 0;
  std::memcpy(&mine, &v, sizeof(T));
  warp_exchange(mine, src_lane, &got, mask);
  T r;
  std::memcpy(&r, &got, sizeof(T));
  return r;
}

// `body` runs the kernel call for the current thread (build.py wraps each launch's call in it).
template <class Body> void launch(dim3 grid, dim3 block, size_t shmem, cudaStream_t /*stream*/, Body&& body,
                                  const char* kernel) {
  run_grid(grid, block, shmem, std::function<void()>(std::forward<Body>(body)), kernel);
}

}  // namespace okemu

inline void __syncthreads() { okemu::syncthreads(); }

// Every live lane of the warp takes part (a shuffle is a barrier of the warp's live lanes); the
// lanes the mask names must all be among them (a mask naming an exited lane fails the launch).
template <class T> inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  const int lane = int(okemu::lane_id()), seg = lane % width;
  const int src = seg + int(delta) < width ? lane + int(delta) : lane;
  return okemu::shuffle_from(v, src, mask);
}
template <class T> inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  const int lane = int(okemu::lane_id()), base = lane & ~(width - 1);
  return okemu::shuffle_from(v, base + ((lane - base) ^ lane_mask), mask);
}

// Blocks run one at a time and a fiber is never preempted between a load and a store: a
// plain read-modify-write is atomic here.
template <class T> inline T atomicMax(T* p, T v) {
  const T old = *p;
  if (old < v) *p = v;
  return old;
}
template <class T> inline T atomicMin(T* p, T v) {
  const T old = *p;
  if (v < old) *p = v;
  return old;
}
template <class T> inline T atomicOr(T* p, T v) {
  const T old = *p;
  *p = old | v;
  return old;
}
template <class T> inline T atomicAdd(T* p, T v) {
  const T old = *p;
  *p = old + v;
  return old;
}
