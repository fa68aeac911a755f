// Multi-tensor work splitting for the CPU: many arrays become one list of
// fixed-size chunks run under a single OpenMP parallel region. Reductions
// keep one partial per chunk and add them in chunk order, so the result is
// bitwise the same for any number of threads.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <new>
#include <type_traits>
#include <vector>
#ifdef _OPENMP
#include <omp.h>
#endif

namespace optkern {

struct Chunk {
  int32_t tensor;  // index in the array list
  int64_t start;   // first element
  int64_t len;     // number of elements
};

// 64K elements: 256 KiB of fp32 per stream, small enough to balance 200
// mid-size arrays across threads, large enough to amortize the loop setup.
constexpr int64_t kChunk = int64_t(1) << 16;

inline std::vector<Chunk> make_chunks(const std::vector<int64_t>& sizes, int64_t chunk = kChunk) {
  std::vector<Chunk> out;
  for (size_t t = 0; t < sizes.size(); ++t)
    for (int64_t s = 0; s < sizes[t]; s += chunk)
      out.push_back({int32_t(t), s, sizes[t] - s < chunk ? sizes[t] - s : chunk});
  return out;
}

inline int64_t total_size(const std::vector<int64_t>& sizes) {
  int64_t n = 0;
  for (auto s : sizes) n += s;
  return n;
}

// The one process-wide thread count of every optkern parallel region
// (optkern.set_num_threads). omp_set_num_threads would only set it for the
// calling Python thread; each region passes num_threads(max_threads())
// instead. optkern/threads.py sets it when optkern is imported (OMP_NUM_THREADS or the CPUs of
// the process's affinity mask): the ICV read here first is the calling thread's, which
// torch.set_num_threads and the like change.
// The most threads set_num_threads takes (optkern.threads.MAX_THREADS: tests/test_hunt48c_native_bounds.py
// holds them equal): OpenMP creates a
// team only at the next parallel region, and one it cannot create ends the process there -- the
// native set_num_threads(100000) took the count, and the next kernel segfaulted.
constexpr int kMaxThreads = 4096;

inline std::atomic<int>& thread_setting() {
#ifdef _OPENMP
  static std::atomic<int> n{omp_get_max_threads()};
#else
  static std::atomic<int> n{1};
#endif
  return n;
}

inline int max_threads() { return thread_setting().load(std::memory_order_relaxed); }

// The calling thread's index in the current parallel region (0 outside one): for per-thread
// scratch sized max_threads().
inline int thread_index() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

// Scratch of `each` values per thread for the parallel regions of one call; mine() is the calling
// thread's (too large for a worker thread's stack, and one allocation for all threads). Each
// thread's part starts on a 64-byte line: `new T[]` of this size came from mmap at 16 bytes past a
// page, and the vector loads of such scratch straddled two lines every other 32 bytes (every load
// of 64) -- the L-BFGS push's cached pair is read once per history row pair.
template <class T> class PerThread {
  static constexpr size_t kLine = 64;
  static_assert(kLine % sizeof(T) == 0 && std::is_trivially_copyable<T>::value, "PerThread: plain values only");
  struct Free {
    void operator()(T* p) const { ::operator delete[](p, std::align_val_t(kLine)); }
  };

 public:
  explicit PerThread(int64_t each)
      : each_((size_t(each) + kLine / sizeof(T) - 1) / (kLine / sizeof(T)) * (kLine / sizeof(T))),
        buf_(static_cast<T*>(::operator new[](each_ * size_t(max_threads()) * sizeof(T), std::align_val_t(kLine)))) {}
  T* mine() const { return buf_.get() + each_ * size_t(thread_index()); }

 private:
  size_t each_;  // values per thread, rounded up to whole lines
  std::unique_ptr<T, Free> buf_;
};

// When a parallel region pays off: `work` below serial_below(threads) runs on the calling thread
// (parallel_cost.cpp says what `work` counts and how the bound is measured).
int64_t serial_below(int threads);

// f(const Chunk&) for every chunk, in one parallel region. Each thread takes
// a contiguous run of chunks holding about 1 / threads of the elements, so
// uneven array sizes still balance and each thread streams through adjacent
// memory. Which thread runs a chunk never changes what the chunk computes.
// `work` (elements times the arrays each one streams: p.Ap counts 2 per element,
// an Adam step 4, a transcendental function about 4 more) only decides whether a
// parallel region pays off (serial_below); the split is by elements.
template <class F>
void for_each_chunk(const std::vector<Chunk>& chunks, int64_t work, F&& f) {
  const int64_t n = int64_t(chunks.size());
#ifdef _OPENMP
  const int threads = max_threads();
  if (n > 1 && threads > 1 && work >= serial_below(threads)) {
    std::vector<int64_t> offset(size_t(n) + 1, 0);  // elements before chunk i
    for (int64_t i = 0; i < n; ++i) offset[size_t(i) + 1] = offset[size_t(i)] + chunks[size_t(i)].len;
    // Split the elements, not `work`: callers weight `work` by a per-element cost, and
    // splitting that scale would leave every chunk to thread 0.
    const int64_t total = offset[size_t(n)];
#pragma omp parallel num_threads(threads)
    {
      const int64_t T = omp_get_num_threads(), t = omp_get_thread_num();
      // Chunk i belongs to thread floor(offset[i] * T / total).
      const auto first_of = [&](int64_t k) {
        const int64_t bound = (k * total + T - 1) / T;  // smallest offset owned by thread k
        return int64_t(std::lower_bound(offset.begin(), offset.end() - 1, bound) - offset.begin());
      };
      const int64_t lo = first_of(t), hi = t + 1 == T ? n : first_of(t + 1);
      for (int64_t i = lo; i < hi; ++i) f(chunks[size_t(i)]);
    }
    return;
  }
#endif
  (void)work;
  for (int64_t i = 0; i < n; ++i) f(chunks[size_t(i)]);
}

// f(step, chunk, state) for every chunk, step by step (0, 1, ...), in ONE parallel region: each
// thread keeps the chunks for_each_chunk would give it in every step (its part of the vectors stays
// in its cache). Between steps, when every chunk has finished the step, every thread calls
// after(step, state) on its own State (value-initialized per thread): it must only read what the
// step wrote (which no later step may write: a thread can be in the next step while another is
// still in after) and its own state, so that every thread reaches the same answer -- whether the
// next step runs -- and the same state, which the next step's f reads. Returns the state (the
// calling thread's). One barrier per step boundary and none after the last step: with a `single` for
// after() each boundary cost two, and under OMP_WAIT_POLICY=PASSIVE a thread arriving first at a
// barrier sleeps and is woken through the hypervisor (tens of us each on a VM).
// Odd steps run a thread's chunks backwards: a step starts on the chunks the previous one ended
// on, still in the core's cache (each chunk's result is its own, so the order changes no bits).
// hessian.cg's iteration is three such steps: one region instead of three (each wakes the
// sleeping workers, 10-100+ us on a VM) and one call from Python instead of three.
template <class State, class F, class After>
State for_each_chunk_steps(const std::vector<Chunk>& chunks, int64_t work, int steps, F&& f, After&& after) {
  const int64_t n = int64_t(chunks.size());
  State out{};
#ifdef _OPENMP
  const int threads = max_threads();
  if (n > 1 && threads > 1 && work >= serial_below(threads)) {
    std::vector<int64_t> offset(size_t(n) + 1, 0);
    for (int64_t i = 0; i < n; ++i) offset[size_t(i) + 1] = offset[size_t(i)] + chunks[size_t(i)].len;
    const int64_t total = offset[size_t(n)];
#pragma omp parallel num_threads(threads)
    {
      const int64_t T = omp_get_num_threads(), t = omp_get_thread_num();
      const auto first_of = [&](int64_t k) {  // (as in for_each_chunk)
        const int64_t bound = (k * total + T - 1) / T;
        return int64_t(std::lower_bound(offset.begin(), offset.end() - 1, bound) - offset.begin());
      };
      const int64_t lo = first_of(t), hi = t + 1 == T ? n : first_of(t + 1);
      State st{};
      for (int s = 0; s < steps; ++s) {
        for (int64_t k = lo; k < hi; ++k) f(s, chunks[size_t(s % 2 ? lo + hi - 1 - k : k)], st);
        if (s + 1 == steps) break;
#pragma omp barrier
        if (!after(s, st)) break;
      }
      if (t == 0) out = st;
    }
    return out;
  }
#endif
  (void)work;
  for (int s = 0; s < steps; ++s) {
    for (int64_t k = 0; k < n; ++k) f(s, chunks[size_t(s % 2 ? n - 1 - k : k)], out);
    if (s + 1 == steps || !after(s, out)) break;
  }
  return out;
}

// One value per chunk from f(chunk), in chunk order: the blocking never depends on the thread
// count, so neither does any value.
template <class F>
std::vector<double> chunk_values(const std::vector<Chunk>& chunks, int64_t total, F&& f) {
  std::vector<double> part(chunks.size());
  for_each_chunk(chunks, total, [&](const Chunk& c) { part[size_t(&c - chunks.data())] = f(c); });
  return part;
}

// The chunk values folded in chunk order with op.
template <class F, class Op>
double fold_chunks(const std::vector<Chunk>& chunks, int64_t total, double init, F&& f, Op&& op) {
  double s = init;
  for (double p : chunk_values(chunks, total, f)) s = op(s, p);
  return s;
}

// 0 + v[0] + v[1] + ... in that order: reduce_chunks' fold, which a distributed norm repeats on
// the partial sums every rank gathered (cpp/reduce.cpp's grad_norm_finish).
inline double sum_in_order(const double* v, size_t n) {
  double s = 0.0;
  for (size_t i = 0; i < n; ++i) s += v[i];
  return s;
}

// Deterministic sum over chunks of f(chunk) -> double.
template <class F>
double reduce_chunks(const std::vector<Chunk>& chunks, int64_t total, F&& f) {
  const std::vector<double> v = chunk_values(chunks, total, f);
  return sum_in_order(v.data(), v.size());
}

}  // namespace optkern
