// CUDA on the CPU: the block scheduler and the runtime calls (see include/cuda_runtime.h).
//
// One block at a time; each of its threads is a fiber. The scheduler resumes the
// fibers round robin; a fiber runs until it finishes or waits at a barrier
// (__syncthreads: every live thread of the block; a warp shuffle: every live lane
// of the warp). A barrier opens when the last live participant arrives, or when a
// thread's exit leaves only waiting ones. A pass in which no fiber can move is a
// deadlock (e.g. __syncthreads in divergent code) and fails the launch.
//
// OKEMU_ORDER picks the order in which the scheduler resumes the threads of a block after each
// barrier (and runs the blocks of a grid): `forward` (default), `reverse`, or `shuffle` (a new
// permutation every pass, seeded by OKEMU_SEED). A kernel whose result changes with the order
// reads shared memory (or another block's output) that nothing ordered before the read: a race
// on a GPU, invisible in one fixed order. Every `__shared__` variable is filled with 0xff bytes
// (NaN, all-ones integers) when a block first reaches its declaration (build.py inserts the
// call), so a read before any write is not masked by the previous block's values. A warp
// shuffle whose mask names a lane that has exited (or lies past the block), or omits the
// calling lane, fails the launch: undefined on a GPU (e.g. a tail `if (i < n)` before it).
//
// OKEMU_SKIP_KERNELS=1 counts launches without running them: the host code around them is then
// all a call costs (bench/host_cost.py --emulated times it so; results are garbage).
//
// Every switch is _setjmp/_longjmp, which saves no signal mask (swapcontext's sigprocmask
// system calls were ~90% of the run time of kernels with warp reductions); a fiber starts by
// moving the stack pointer to its stack and calling fiber_main (x86-64), elsewhere by
// makecontext/swapcontext.
//
// Compilers that define _FORTIFY_SOURCE by default (Ubuntu's) make _longjmp glibc's checked
// __longjmp_chk, which aborts every jump between fiber stacks ("longjmp causes uninitialized
// stack frame": seen on the GPU machine's image): off for this file, before any header.
#undef _FORTIFY_SOURCE
#include <setjmp.h>
#include <sys/mman.h>
#include <ucontext.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <unordered_map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda_runtime.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define OKEMU_ASAN 1
#else
#define OKEMU_ASAN 0
#endif

namespace okemu {
namespace {

constexpr size_t kStack = size_t(1) << 20;  // per thread; mapped lazily, reused by every launch
constexpr int kMaxThreads = 1024;

struct Barrier {
  int arrived = 0;
  unsigned generation = 0;
};

struct Fiber {
  ucontext_t ctx;
  void* stack = nullptr;
  uint3 tid{0, 0, 0};
  int linear = 0;
  jmp_buf resume;  // where a yielded fiber continues
  bool started = false;
  bool done = false;
  Barrier* waiting = nullptr;  // the barrier it waits at, or null
  unsigned wait_generation = 0;
};

struct Block {
  std::vector<Fiber> fibers;
  Barrier block_barrier;
  std::vector<Barrier> warp_barriers;
  std::vector<int> warp_live;
  std::vector<uint64_t> slots;  // shuffle values, one per thread
  std::vector<int> order;       // resume order of the current pass
  int live = 0;
  int current = -1;
  ucontext_t scheduler;
  jmp_buf back;  // the scheduler's resume point
  const std::function<void()>* body = nullptr;
  std::string error;  // an exception thrown by a thread
};

Block* g_block = nullptr;
std::mutex g_launch_mutex;  // one launch at a time (Python threads may call with the GIL released)
unsigned long long g_launches = 0;
std::map<std::string, unsigned long long> g_sites;  // launches per launch site (build.py's names)
cudaError_t g_last_error = cudaSuccess;
std::vector<void*> g_stacks;
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

enum class Order { forward, reverse, shuffle };
struct Scheduling {
  Order order = Order::forward;
  std::mt19937_64 rng;
  Scheduling() {
    const char* o = std::getenv("OKEMU_ORDER");
    const std::string v = o ? o : "forward";
    if (v == "reverse") order = Order::reverse;
    else if (v == "shuffle") order = Order::shuffle;
    else if (v != "forward" && !v.empty()) {
      std::fprintf(stderr, "cuda_emu: OKEMU_ORDER=%s: expected forward, reverse or shuffle\n", v.c_str());
      std::abort();
    }
    const char* seed = std::getenv("OKEMU_SEED");
    rng.seed(seed ? std::strtoull(seed, nullptr, 10) : 1u);
  }
  // 0 .. n-1 in this run's order (a fresh permutation per call when shuffling).
  void arrange(std::vector<int>& idx, int n) {
    idx.resize(size_t(n));
    for (int i = 0; i < n; ++i) idx[size_t(i)] = order == Order::reverse ? n - 1 - i : i;
    if (order == Order::shuffle) std::shuffle(idx.begin(), idx.end(), rng);
  }
};
Scheduling& scheduling() {
  static Scheduling s;
  return s;
}

#if OKEMU_ASAN
// The scheduler's stack as ASan knows it, learnt when a fiber first starts.
const void* g_sched_bottom = nullptr;
size_t g_sched_size = 0;
#endif

void* stack_for(int i) {
  if (size_t(i) >= g_stacks.size()) g_stacks.resize(size_t(i) + 1, nullptr);
  if (!g_stacks[size_t(i)]) {
    void* p = mmap(nullptr, kStack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error("cuda_emu: cannot map a fiber stack");
    g_stacks[size_t(i)] = p;
  }
  return g_stacks[size_t(i)];
}

// Switch from the current fiber back to the scheduler.
void yield_to_scheduler() {
  Block& b = *g_block;
  Fiber& f = b.fibers[size_t(b.current)];
#if OKEMU_ASAN
  void* fake = nullptr;
  __sanitizer_start_switch_fiber(&fake, g_sched_bottom, g_sched_size);
#endif
  if (!_setjmp(f.resume)) _longjmp(b.back, 1);
#if OKEMU_ASAN
  __sanitizer_finish_switch_fiber(fake, &g_sched_bottom, &g_sched_size);
#endif
}

void fiber_main() {
#if OKEMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &g_sched_bottom, &g_sched_size);
#endif
  Block& b = *g_block;
  try {
    (*b.body)();
  } catch (const std::exception& e) {
    if (b.error.empty()) b.error = e.what();
  } catch (...) {
    if (b.error.empty()) b.error = "unknown exception in a kernel";
  }
  b.fibers[size_t(b.current)].done = true;
#if OKEMU_ASAN
  __sanitizer_start_switch_fiber(nullptr, g_sched_bottom, g_sched_size);  // this stack is not coming back
#endif
  _longjmp(b.back, 1);
}

// First entry into a fiber: fiber_main on its own stack (it never returns: it leaves by _longjmp).
void start(Fiber& f) {
#if defined(__x86_64__)
  char* top = static_cast<char*>(f.stack) + kStack;  // 16-byte aligned, as the call below needs
  asm volatile("mov %0, %%rsp\n\tcall *%1\n\tud2" : : "r"(top), "r"(&fiber_main) : "memory");
#else
  swapcontext(&g_block->scheduler, &f.ctx);
#endif
}

// The barrier opens for everyone once `needed` participants wait at it.
void maybe_open(Barrier& bar, int needed) {
  if (bar.arrived > 0 && bar.arrived >= needed) {
    bar.arrived = 0;
    ++bar.generation;
  }
}

void wait_at(Barrier& bar, int needed) {
  Block& b = *g_block;
  Fiber& f = b.fibers[size_t(b.current)];
  const unsigned gen = bar.generation;
  ++bar.arrived;
  maybe_open(bar, needed);
  if (bar.generation != gen) return;  // the last to arrive
  f.waiting = &bar;
  f.wait_generation = gen;
  yield_to_scheduler();
  f.waiting = nullptr;
}

int warp_of(int linear) { return linear / warpSize; }

void run_block(Block& b, dim3 block) {
  const int n = int(block.x * block.y * block.z);
  b.fibers.assign(size_t(n), Fiber{});
  b.block_barrier = Barrier{};
  const int warps = (n + warpSize - 1) / warpSize;
  b.warp_barriers.assign(size_t(warps), Barrier{});
  b.warp_live.assign(size_t(warps), 0);
  b.slots.assign(size_t(n), ~uint64_t(0));
  b.live = n;
  b.error.clear();
  ++g_block_serial;
  g_block_static = 0;
  if (g_dynamic) std::memset(g_dynamic->data(), 0xff, g_dynamic->size());  // undefined at block start
  for (int i = 0; i < n; ++i) {
    Fiber& f = b.fibers[size_t(i)];
    f.linear = i;
    f.tid = {unsigned(i) % block.x, (unsigned(i) / block.x) % block.y, unsigned(i) / (block.x * block.y)};
    f.stack = stack_for(i);
#if !defined(__x86_64__)
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = f.stack;
    f.ctx.uc_stack.ss_size = kStack;
    f.ctx.uc_link = nullptr;
    makecontext(&f.ctx, fiber_main, 0);
#endif
    ++b.warp_live[size_t(warp_of(i))];
  }
  while (b.live > 0) {
    bool moved = false;
    scheduling().arrange(b.order, n);
    for (int i : b.order) {
      Fiber& f = b.fibers[size_t(i)];
      if (f.done || (f.waiting && f.waiting->generation == f.wait_generation)) continue;
      b.current = i;
      threadIdx = f.tid;
#if OKEMU_ASAN
      void* fake = nullptr;
      __sanitizer_start_switch_fiber(&fake, f.stack, kStack);
#endif
      if (!_setjmp(b.back)) {
        if (f.started) _longjmp(f.resume, 1);
        f.started = true;
        start(f);  // the fiber comes back by _longjmp(b.back)
      }
#if OKEMU_ASAN
      __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
      moved = true;
      if (f.done) {  // an exit lowers what every barrier waits for
        --b.live;
        const int w = warp_of(i);
        --b.warp_live[size_t(w)];
        maybe_open(b.block_barrier, b.live);
        maybe_open(b.warp_barriers[size_t(w)], b.warp_live[size_t(w)]);
      }
    }
    if (!moved) throw std::runtime_error("cuda_emu: deadlock: every live thread of the block waits at a barrier "
                                         "that cannot open (a barrier in divergent code?)");
  }
  if (!b.error.empty()) throw std::runtime_error("cuda_emu: a kernel threw: " + b.error);
}

}  // namespace

void syncthreads() { wait_at(g_block->block_barrier, g_block->live); }

unsigned lane_id() { return unsigned(g_block->fibers[size_t(g_block->current)].linear % warpSize); }

// The lanes `mask` names must all take part in the shuffle: each exists, has not exited, and
// the caller is one of them (checked once every live lane has arrived).
void check_mask(unsigned mask, int me, int w) {
  Block& b = *g_block;
  const int n = int(b.fibers.size()), first = w * warpSize;
  const int lanes = std::min(warpSize, n - first);
  const unsigned exist = lanes == warpSize ? ~0u : (1u << lanes) - 1u;
  if (!(mask >> (me - first) & 1u))
    throw std::runtime_error("warp shuffle by lane " + std::to_string(me - first) + " whose mask " +
                             std::to_string(mask) + " does not name it");
  if ((mask & ~exist) != 0u)
    throw std::runtime_error("warp shuffle mask names lanes past the end of the block (" +
                             std::to_string(lanes) + " lanes in warp " + std::to_string(w) + ")");
  if (b.warp_live[size_t(w)] == lanes) return;  // nobody exited
  for (int l = 0; l < lanes; ++l)
    if ((mask >> l & 1u) && b.fibers[size_t(first + l)].done)
      throw std::runtime_error("warp shuffle mask names lane " + std::to_string(l) + " of warp " +
                               std::to_string(w) + ", which has exited (a tail `if (i < n)` before the shuffle?)");
}

void warp_exchange(uint64_t mine, int src_lane, uint64_t* got, unsigned mask) {
  Block& b = *g_block;
  const int me = b.fibers[size_t(b.current)].linear, w = warp_of(me);
  b.slots[size_t(me)] = mine;
  wait_at(b.warp_barriers[size_t(w)], b.warp_live[size_t(w)]);  // every lane has written
  check_mask(mask, me, w);
  const int src = w * warpSize + src_lane;
  // An exited or missing lane's slot reads as all ones (a NaN), which a correct kernel never uses.
  *got = src < int(b.slots.size()) && !b.fibers[size_t(src)].done ? b.slots[size_t(src)] : ~uint64_t(0);
  wait_at(b.warp_barriers[size_t(w)], b.warp_live[size_t(w)]);  // every lane has read
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
  Block b;
  b.body = &body;
  Block* outer = g_block;
  g_block = &b;
  std::vector<unsigned char> dynamic(shmem + 16);  // (never empty: data() is a valid pointer)
  std::vector<unsigned char>* outer_dynamic = g_dynamic;
  g_dynamic = &dynamic;
  blockDim = block;
  gridDim = grid;
  try {
    const uint64_t blocks = uint64_t(grid.x) * grid.y * grid.z;
    if (scheduling().order == Order::forward || blocks > (uint64_t(1) << 24)) {
      for (unsigned z = 0; z < grid.z; ++z)
        for (unsigned y = 0; y < grid.y; ++y)
          for (unsigned x = 0; x < grid.x; ++x) {
            blockIdx = {x, y, z};
            run_block(b, block);
          }
    } else {  // blocks in the run's order too (a kernel may not rely on one block running first)
      std::vector<int> order;
      scheduling().arrange(order, int(blocks));
      for (int k : order) {
        const unsigned x = unsigned(k) % grid.x, y = (unsigned(k) / grid.x) % grid.y, z = unsigned(k) / (grid.x * grid.y);
        blockIdx = {x, y, z};
        run_block(b, block);
      }
    }
  } catch (...) {
    g_block = outer;
    g_dynamic = outer_dynamic;
    throw;
  }
  g_block = outer;
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
