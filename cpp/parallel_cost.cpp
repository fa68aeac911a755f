// When an OpenMP region pays off (parallel.hpp's serial_below).
//
// A region costs the time to wake the sleeping workers (optkern's workers sleep between regions,
// see optkern/_backend.py) and to join them. On bare metal that is a few microseconds; on a VM
// whose idle vCPUs halt, the wake-up goes through the hypervisor: 96-172 us on the 2-vCPU VM
// this project is developed on (region_ns below, 8 processes; a standalone g++ -fopenmp loop:
// 56-60 us after work on the calling thread, 137 us after a 2 ms sleep), where a fixed bound of 32K work units
// made every call between 64K and ~700K elements 1.5-3x slower than one thread (measured
// 2026-12-02: Adam over 100K floats 215 us in two threads, 131 us in one; p.Ap over 203K
// floats 157 us vs 63 us). So the bound is measured, once per thread count:
//
//   two threads win when the work one thread does exceeds wake * T / (T - 1), and one thread
//   moves about kUnitsPerNs work units per ns (a work unit: one element of one array streamed,
//   in cache; the kernels' `work` counts elements times the arrays they stream), so
//   serial_below(T) = wake_ns * kUnitsPerNs * T / (T - 1), never below kMinSerial.
//
// The split never changes a result (every reduction adds per-chunk partials in chunk order), only
// its speed. OPTKERN_SERIAL_BELOW=<work units> fixes the bound instead (the tests set it low so
// that their mid-size arrays run the parallel code paths).
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <mutex>

#include "parallel.hpp"

namespace optkern {
namespace {

// Work units one thread streams per ns with arrays in cache, measured here (Xeon, AVX-512):
// p.Ap 5.8, the CG update 6.2, p = z + beta p 11, Adam (4 arrays, sqrt and divide) about 4.
constexpr double kUnitsPerNs = 5.0;
// The bound before measurement was 32K: a region's bookkeeping alone costs about that much work.
constexpr int64_t kMinSerial = int64_t(1) << 15;
// (a measurement disturbed by load must not put a 2M-element Adam step on one thread)
constexpr int64_t kMaxSerial = int64_t(1) << 23;
// Thread counts measured apart: every count set_num_threads takes.
constexpr int kMaxCounted = kMaxThreads;

// Median time of an empty region of `threads` threads: the fork, the wake-up of sleeping workers
// and the join (the first region, which creates the threads, is not counted). Each one follows
// 250 us of work on the calling thread alone, as a kernel follows the caller's own code, so the
// workers have gone to sleep as they have before a real kernel.
double region_ns(int threads) {
#ifdef _OPENMP
  using clock = std::chrono::steady_clock;
  std::array<double, 9> t{};
  std::atomic<int> arrived{0};  // (a region with an empty body is compiled away)
#pragma omp parallel num_threads(threads)
  arrived.fetch_add(1, std::memory_order_relaxed);
  for (double& x : t) {
    const auto busy_until = clock::now() + std::chrono::microseconds(250);
    while (clock::now() < busy_until) {
    }
    const auto t0 = clock::now();
#pragma omp parallel num_threads(threads)
    arrived.fetch_add(1, std::memory_order_relaxed);
    x = std::chrono::duration<double, std::nano>(clock::now() - t0).count();
  }
  std::nth_element(t.begin(), t.begin() + 4, t.end());
  return t[4];
#else
  (void)threads;
  return 0.0;
#endif
}

int64_t measured_bound(int threads) {
  const double wake = region_ns(threads);
  const double units = wake * kUnitsPerNs * double(threads) / double(threads - 1);
  return std::clamp(int64_t(units), kMinSerial, kMaxSerial);
}

// OPTKERN_SERIAL_BELOW when set to a non-negative integer, else -1.
int64_t fixed_bound() {
  const char* v = std::getenv("OPTKERN_SERIAL_BELOW");
  if (v == nullptr || *v == '\0') return -1;
  char* end = nullptr;
  const long long x = std::strtoll(v, &end, 10);
  return (*end == '\0' && x >= 0) ? int64_t(x) : -1;
}

}  // namespace

int64_t serial_below(int threads) {
  static const int64_t fixed = fixed_bound();
  if (fixed >= 0) return fixed;
  if (threads < 2) return INT64_MAX;  // (one thread: nothing runs in parallel)
  // One measurement per thread count (optkern.set_num_threads may change it), kept for the process.
  // Every parallel-eligible kernel call reads it: a relaxed atomic load, the lock only to measure.
  static std::array<std::atomic<int64_t>, kMaxCounted + 1> bound{};  // 0 until measured
  std::atomic<int64_t>& b = bound[size_t(std::min(threads, kMaxCounted))];
  const int64_t known = b.load(std::memory_order_relaxed);
  if (known != 0) return known;
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  if (b.load(std::memory_order_relaxed) == 0) b.store(measured_bound(threads), std::memory_order_relaxed);
  return b.load(std::memory_order_relaxed);
}

}  // namespace optkern
