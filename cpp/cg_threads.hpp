// Whether hessian.cg's fused iteration (cg_iteration_, cpp/cg.cpp) runs on all of optkern's threads or
// on the calling thread, chosen by timing both.
//
// serial_below (parallel_cost.cpp) prices one wake-up of the sleeping workers, measured once on an
// empty region. The fused iteration pays more than that, and by an amount no fixed bound captures:
// it follows an operator product (milliseconds in which the workers sleep and BLAS's own threads run),
// its region wakes a worker at each of its two step boundaries as well, and its chunks split unevenly
// (n = 203,530: four chunks, 64 % of the elements on one thread). On this project's 2-vCPU VM, a
// 784-256-10 MLP's Gauss-Newton CG at n = 203,530 took 197 us per iteration on one thread and 245 us
// on two on a quiet host; 123 vs 158 us (batch 128) and 205 vs 292 us (batch 512) under load, where
// serial_below (93K-440K work units) chose two threads for its 1.6M.
//
// So where serial_below allows threads, the calls of one size run one thread and all threads in turn
// until each has kExplore timings, then the faster by their medians, and the other alone once after
// kRecheck calls (the machine's load changes), after twice as many each time it stays slower (up to
// kMaxRecheck: a re-timing of the slower path under load can cost milliseconds). Only timings of the
// same period are compared: a re-timing against the choice's last kKeep calls, and where it is faster,
// both timed afresh in turn. (The other's last kKeep re-timings, up to 5 x 1024 calls old, were
// compared with the choice's last calls: when the load rose, the choice's fresh times lost to the
// other's quiet ones and three calls of two threads ran in a row, each milliseconds under load; first
// timings disturbed by a burst of load stood for 112 calls, until three re-timings outvoted them.)
// The thread count changes no bits: each chunk's sum is its own, added in chunk order. A fixed bound
// (OPTKERN_SERIAL_BELOW: the tests') turns the choice off: the bound decides, as for every other kernel.
#pragma once
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace optkern {

class ThreadChoice {
 public:
  // timed false: a fixed OPTKERN_SERIAL_BELOW decides (every call may run all threads; the bound rules).
  explicit ThreadChoice(bool timed = !fixed()) : timed_(timed) {}

  // True: this call of n elements on `threads` threads runs them all.
  bool parallel(int64_t n, int threads) {
    if (!timed_) return true;
    std::lock_guard<std::mutex> lock(mu_);
    Entry& e = entry(n, threads);
    ++e.calls;
    if (e.count[0] < kExplore || e.count[1] < kExplore) return e.count[1] <= e.count[0];  // (in turn)
    if (!e.chosen) {  // both timed in turn, over the same calls: the faster by its median
      e.best = median(e, 1) < median(e, 0);
      e.chosen = true;
      e.interval = kRecheck;
      e.next = e.calls + kRecheck;
    }
    if (e.calls < e.next) return e.best;
    e.next = INT64_MAX;  // (a re-timing of the other: record() answers it)
    return !e.best;
  }

  void record(int64_t n, int threads, bool par, double ns) {
    if (!timed_) return;
    std::lock_guard<std::mutex> lock(mu_);
    Entry& e = entry(n, threads);
    const size_t m = par ? 1 : 0;
    if (e.chosen && par != e.best) {  // the re-timing of the path not chosen
      if (ns < median(e, e.best ? 1 : 0)) {  // faster than the choice's last calls: both timed afresh
        e.count = {0, 0};
        e.chosen = false;
      } else {
        e.interval = std::min(2 * e.interval, kMaxRecheck);
        e.next = e.calls + e.interval;
      }
      return;
    }
    e.t[m][size_t(e.count[m] % kKeep)] = ns;
    ++e.count[m];
  }

  // (n, threads, calls, chosen, all threads chosen) of each size timed: what cg_thread_stats_ reports.
  std::vector<std::array<int64_t, 5>> entries() {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::array<int64_t, 5>> out;
    for (const Entry& e : table_)
      if (e.n >= 0) out.push_back({e.n, e.threads, e.calls, e.chosen, e.best});
    return out;
  }

 private:
  static constexpr int kExplore = 3, kKeep = 5;
  static constexpr int64_t kRecheck = 16, kMaxRecheck = 1024;
  struct Entry {
    int64_t n = -1, calls = 0, next = 0, interval = kRecheck;  // next: the call that re-times the other
    int threads = 0;
    bool chosen = false, best = false;  // whether chosen, and the choice (true: all threads)
    std::array<std::array<double, kKeep>, 2> t{};  // [one thread, all threads]
    std::array<int64_t, 2> count{};
  };

  static bool fixed() {
    static const bool f = [] {
      const char* v = std::getenv("OPTKERN_SERIAL_BELOW");
      return v != nullptr && *v != '\0';
    }();
    return f;
  }

  // The entry of (n, threads); a new size replaces the oldest of the few kept.
  Entry& entry(int64_t n, int threads) {
    for (Entry& e : table_)
      if (e.n == n && e.threads == threads) return e;
    Entry& e = table_[next_];
    next_ = (next_ + 1) % table_.size();
    e = Entry{};
    e.n = n;
    e.threads = threads;
    return e;
  }

  static double median(const Entry& e, int m) {
    std::array<double, kKeep> s = e.t[size_t(m)];
    const size_t k = size_t(std::min<int64_t>(e.count[size_t(m)], kKeep));
    std::nth_element(s.begin(), s.begin() + k / 2, s.begin() + k);
    return s[k / 2];
  }

  const bool timed_;
  std::array<Entry, 4> table_{};
  size_t next_ = 0;
  std::mutex mu_;
};

// The process's timed choices, one per call site, by name (cg_thread_stats_: which path each runs).
// Made on a site's first call and kept for the process's life.
inline std::vector<std::pair<std::string, ThreadChoice*>>& choice_sites() {
  static std::vector<std::pair<std::string, ThreadChoice*>> sites;
  return sites;
}
inline std::mutex& choice_sites_mutex() {
  static std::mutex mu;
  return mu;
}
inline ThreadChoice& site_choice(const char* site) {
  std::lock_guard<std::mutex> lock(choice_sites_mutex());
  for (auto& s : choice_sites())
    if (s.first == site) return *s.second;
  choice_sites().emplace_back(site, new ThreadChoice());
  return *choice_sites().back().second;
}

}  // namespace optkern
