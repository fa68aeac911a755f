// CUDA on the CPU: the block scheduler, which runs the threads of a launch's blocks (the launch
// itself, its limits and the runtime calls: runtime.cpp; what kernels see: include/cuda_runtime.h).
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
// call; runtime.cpp's shared_fresh), so a read before any write is not masked by the previous block's values. A warp
// shuffle whose mask names a lane that has exited (or lies past the block), or omits the
// calling lane, fails the launch: undefined on a GPU (e.g. a tail `if (i < n)` before it).
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
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda_runtime.h"
#include "scheduler.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define OKEMU_ASAN 1
#else
#define OKEMU_ASAN 0
#endif

namespace okemu {
namespace {

constexpr size_t kStack = size_t(1) << 20;  // per thread; mapped lazily, reused by every launch

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
std::vector<void*> g_stacks;

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
  shared_block_start();  // (runtime.cpp)
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

void run_blocks(dim3 grid, dim3 block, const std::function<void()>& body) {
  Block b;
  b.body = &body;
  Block* outer = g_block;
  g_block = &b;
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
    throw;
  }
  g_block = outer;
}

}  // namespace okemu
