// CUDA on the CPU: the launches (the device's limits, shared memory, launch counts) and the
// runtime calls (see include/cuda_runtime.h). scheduler.cpp runs the threads of each block.
//
// OKEMU_SKIP_KERNELS=1 counts launches without running them: the host code around them is then
// all a call costs (bench/host_cost.py --emulated times it so; results are garbage).

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "cuda_runtime.h"
#include "scheduler.h"

namespace okemu {
namespace {

constexpr int kMaxThreads = 1024;

std::mutex g_launch_mutex;  // one launch at a time (Python threads may call with the GIL released)
unsigned long long g_launches = 0;
std::map<std::string, unsigned long long> g_sites;  // launches per launch site (build.py's names)
cudaError_t g_last_error = cudaSuccess;
unsigned long long g_block_serial = 0;  // blocks run so far (shared memory is fresh per block)
std::vector<unsigned char>* g_dynamic = nullptr;  // the running launch's dynamic shared memory
std::unordered_map<const void*, unsigned long long> g_shared_seen;  // variable -> block that filled it
// Shared memory per block: static bytes this block has reached (the device counts every
// `__shared__` variable of the kernel, here only those reached: a lower bound), the launch's
// dynamic bytes and its limit. Without cudaFuncSetAttribute's opt-in, static + dynamic <= 48 KB;
// with an opt-in of N bytes, dynamic <= N and static + N <= 227 KB (an H100 / H200 block's most).
constexpr size_t kDefaultShared = 48u * 1024u, kOptInShared = 227u * 1024u;
size_t g_block_static = 0, g_launch_dynamic = 0, g_launch_opt_in = 0;
const char* g_launch_name = "";
std::unordered_map<std::string, size_t> g_opt_in;  // kernel expression -> opted-in dynamic bytes

}  // namespace

// Each block's shared memory starts undefined (0xff bytes), its static bytes counted anew.
void shared_block_start() {
  ++g_block_serial;
  g_block_static = 0;
  if (g_dynamic) std::memset(g_dynamic->data(), 0xff, g_dynamic->size());  // undefined at block start
}

void shared_fresh(void* p, size_t bytes) {
  auto& seen = g_shared_seen[p];
  if (seen == g_block_serial) return;  // filled by an earlier thread of this block
  seen = g_block_serial;
  std::memset(p, 0xff, bytes);
  g_block_static += bytes;
  const bool over = g_launch_opt_in ? g_block_static + g_launch_opt_in > kOptInShared
                                    : g_block_static + g_launch_dynamic > kDefaultShared;
  if (over && g_last_error == cudaSuccess) {  // the device refuses such a launch: cudaLaunchKernel's error
    g_last_error = cudaErrorInvalidValue;
    std::fprintf(stderr, "cuda_emu: %zu bytes of static + %zu of dynamic shared memory (opt-in %zu) in %s\n",
                 g_block_static, g_launch_dynamic, g_launch_opt_in, g_launch_name);
  }
}

// The text after a launch name's "cuda/file.cu:line " (build.py's names), else the whole name.
std::string kernel_of(const char* name) {
  const char* sp = std::strchr(name, ' ');
  return sp && std::strncmp(name, "cuda/", 5) == 0 ? std::string(sp + 1) : std::string(name);
}

cudaError_t opt_in_shared(const char* kernel, long long bytes) {
  if (bytes < 0 || size_t(bytes) > kOptInShared) return cudaErrorInvalidValue;
  std::lock_guard<std::mutex> lock(g_launch_mutex);
  g_opt_in[kernel] = size_t(bytes);
  return cudaSuccess;
}

void run_grid(dim3 grid, dim3 block, size_t shmem, const std::function<void()>& body, const char* name) {
  const uint64_t threads = uint64_t(block.x) * block.y * block.z;
  // The device's limits: 1024 threads (z <= 64), grid.x < 2^31, grid.y and grid.z <= 65535, and 48 KB
  // of dynamic shared memory without cudaFuncSetAttribute's opt-in (static bytes: shared_fresh).
  size_t opt_in = 0;
  {
    std::lock_guard<std::mutex> lock(g_launch_mutex);
    const auto it = g_opt_in.find(kernel_of(name));
    if (it != g_opt_in.end()) opt_in = it->second;
  }
  if (threads == 0 || threads > uint64_t(kMaxThreads) || block.z > 64 || grid.x == 0 || grid.y == 0 ||
      grid.z == 0 || grid.x > 0x7fffffffu || grid.y > 65535u || grid.z > 65535u ||
      shmem > (opt_in ? opt_in : kDefaultShared)) {
    // What the device reports for an invalid configuration, at cudaGetLastError.
    g_last_error = cudaErrorInvalidValue;
    std::fprintf(stderr, "cuda_emu: invalid launch configuration (%u,%u,%u)x(%u,%u,%u) in %s\n", grid.x, grid.y,
                 grid.z, block.x, block.y, block.z, name);
    return;
  }
  std::lock_guard<std::mutex> lock(g_launch_mutex);
  ++g_launches;
  ++g_sites[name];
  g_launch_dynamic = shmem;
  g_launch_opt_in = opt_in;
  g_launch_name = name;
  static const bool skip = [] {
    const char* v = std::getenv("OKEMU_SKIP_KERNELS");
    return v && *v && std::string(v) != "0";
  }();
  if (skip) return;
  std::vector<unsigned char> dynamic(shmem + 16);  // (never empty: data() is a valid pointer)
  std::vector<unsigned char>* outer_dynamic = g_dynamic;
  g_dynamic = &dynamic;
  blockDim = block;
  gridDim = grid;
  try {
    run_blocks(grid, block, body);
  } catch (...) {
    g_dynamic = outer_dynamic;
    throw;
  }
  g_dynamic = outer_dynamic;
}

void* dynamic_shared() { return g_dynamic ? g_dynamic->data() : nullptr; }

}  // namespace okemu

// For the Python side: how many kernels ran (proof that a test reached the emulated module).
extern "C" __attribute__((visibility("default"))) unsigned long long okemu_launch_count() { return okemu::g_launches; }

// "name\tcount\n" per launch site that ran, into buf (up to cap bytes); returns the length needed.
extern "C" __attribute__((visibility("default"))) size_t okemu_launch_sites(char* buf, size_t cap) {
  std::lock_guard<std::mutex> lock(okemu::g_launch_mutex);
  std::string out;
  for (const auto& [name, n] : okemu::g_sites) out += name + "\t" + std::to_string(n) + "\n";
  if (buf && cap > out.size()) std::memcpy(buf, out.c_str(), out.size() + 1);
  return out.size() + 1;
}

// ---- runtime API ------------------------------------------------------------------
cudaError_t cudaGetLastError() {
  const cudaError_t e = okemu::g_last_error;
  okemu::g_last_error = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError() { return okemu::g_last_error; }
const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument (emulated)";
    default: return "unspecified launch failure (emulated)";
  }
}
cudaError_t cudaGetDevice(int* d) {
  *d = 0;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : cudaErrorInvalidValue; }
cudaError_t cudaGetDeviceCount(int* n) {
  *n = 1;
  return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int* v) {
  *v = 13000;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int) {
  *v = a == cudaDevAttrMemoryPoolsSupported ? 1 : 0;
  return cudaSuccess;
}
cudaError_t cudaMalloc(void** p, size_t bytes) {
  *p = std::malloc(bytes ? bytes : 1);
  return *p ? cudaSuccess : cudaErrorInvalidValue;
}
cudaError_t cudaFree(void* p) {
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaMemPoolCreate(cudaMemPool_t* pool, const cudaMemPoolProps*) {
  static int token;
  *pool = reinterpret_cast<cudaMemPool_t>(&token);
  return cudaSuccess;
}
cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t, cudaMemPoolAttr, void*) { return cudaSuccess; }
cudaError_t cudaMallocFromPoolAsync(void** p, size_t bytes, cudaMemPool_t, cudaStream_t) {
  return cudaMalloc(p, bytes);
}
cudaError_t cudaFreeAsync(void* p, cudaStream_t) { return cudaFree(p); }
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind, cudaStream_t) {
  if (bytes) std::memmove(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind k) {
  return cudaMemcpyAsync(dst, src, bytes, k, nullptr);
}
cudaError_t cudaMemsetAsync(void* p, int v, size_t bytes, cudaStream_t) {
  if (bytes) std::memset(p, v, bytes);
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
