// The bandwidth probes the benchmarks compare kernels with -- in-place read-modify-write (an
// optimizer step's traffic) and read-only streams (what L-BFGS's history passes mostly do) --
// and the OpenMP thread count every kernel uses.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <atomic>
#include <stdexcept>
#include <vector>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>

#include "optkern/named_reals.hpp"
#endif

#include "lane_sums.hpp"
#include "multi_tensor.hpp"

namespace optkern {
namespace py = pybind11;
using py::arg;

namespace {

// W arrays read and written in place plus one read-only array: the memory
// traffic of an optimizer step with W - 1 state arrays, and no arithmetic to
// speak of (c = 0 leaves the values as they were).
template <class T, int W>
OK_CLONES void rmw_loop(T* const* OK_RESTRICT w, const T* OK_RESTRICT r, T c, int64_t n) {
  T* OK_RESTRICT w0 = w[0];
  T* OK_RESTRICT w1 = W > 1 ? w[1] : nullptr;
  T* OK_RESTRICT w2 = W > 2 ? w[2] : nullptr;
  T* OK_RESTRICT w3 = W > 3 ? w[3] : nullptr;
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const T d = c * r[i];
    w0[i] += d;
    if constexpr (W > 1) w1[i] += d;
    if constexpr (W > 2) w2[i] += d;
    if constexpr (W > 3) w3[i] += d;
  }
}

template <class T, int W>
void rmw(const ArrayList& written, const ArrayList& read, double c) {
  const auto chunks = make_chunks(read.size);
  const int64_t total = total_size(read.size);
  py::gil_scoped_release nogil;
  for_each_chunk(chunks, total * (W + 1), [&](const Chunk& ch) {  // (work: the kernels' measure, parallel.hpp)
    T* w[4] = {};
    for (int k = 0; k < W; ++k) w[k] = written.ptr<T>(size_t(k)) + ch.start;
    rmw_loop<T, W>(w, read.ptr<T>(0) + ch.start, T(c), ch.len);
  });
}

void probe_rmw(py::handle written, py::handle read, double c) {
  const py::dtype dt = list_dtype(read, "read");
  const ArrayList r = gather(read, "read", dt, false);
  if (r.count() != 1) throw py::value_error("read: expected exactly 1 array");
  const std::vector<int64_t> sizes(size_t(py::len(written)), r.size[0]);
  const ArrayList w = gather(written, "written", dt, true, &sizes);
  if (w.count() < 1 || w.count() > 4) throw py::value_error("written: expected 1 to 4 arrays");
  check_no_overlap({{"written", &w, true}, {"read", &r, false}}, size_t(dt.itemsize()));
  // The chunk table runs over `read` (one array); the written arrays share its offsets.
  dispatch_float(dt, [&](auto t) {
    using T = decltype(t);
    switch (w.count()) {
      case 1: rmw<T, 1>(w, r, c); break;
      case 2: rmw<T, 2>(w, r, c); break;
      case 3: rmw<T, 3>(w, r, c); break;
      default: rmw<T, 4>(w, r, c); break;
    }
  });
}

// Every array read once, chunk by chunk (all arrays' chunk c, then chunk c + 1: as many streams
// as arrays, like a pass over a history of rows), into independent lane sums: no write traffic.
template <class T>
OK_CLONES double read_chunk(const ArrayList& a, int64_t start, int64_t len) {
  double s = 0.0;
  for (size_t k = 0; k < a.count(); ++k) {
    const T* OK_RESTRICT x = a.ptr<T>(k) + start;
    s += double(lane_sum<T>(len, [&](int64_t i) { return x[i]; }));
  }
  return s;
}

double probe_read(py::handle arrays) {
  const py::dtype dt = list_dtype(arrays, "arrays");
  const ArrayList first = gather(arrays, "arrays", dt, false);
  if (first.count() < 1) throw py::value_error("arrays: expected at least 1 array");
  const std::vector<int64_t> sizes(first.count(), first.size[0]);
  const ArrayList a = gather(arrays, "arrays", dt, false, &sizes);  // all of one size
  const auto chunks = make_chunks({a.size[0]});
  std::vector<double> part(chunks.size(), 0.0);
  dispatch_float(dt, [&](auto t) {
    using T = decltype(t);
    py::gil_scoped_release nogil;
    for_each_chunk(chunks, a.size[0] * int64_t(a.count()), [&](const Chunk& ch) {
      part[size_t(&ch - chunks.data())] = read_chunk<T>(a, ch.start, ch.len);
    });
  });
  double s = 0.0;
  for (double v : part) s += v;
  return s;
}

void set_num_threads(int n) {
  if (n < 1 || n > kMaxThreads)
    throw py::value_error("n: must be in [1, " + std::to_string(kMaxThreads) + "], got " + std::to_string(n));
  thread_setting().store(n, std::memory_order_relaxed);
}

// Whether this process is a child forked after the module loaded (for threads.py's warning).
std::atomic<bool> forked{false};

// GNU libgomp's pool does not survive fork: a child's first region of more than one thread waits
// for workers that exist only in the parent, forever. optkern/threads.py puts a child on one thread
// from an os.register_at_fork hook, which runs for os.fork and multiprocessing's "fork" alone; a
// fork() called from C (a C extension, a launcher library, ctypes) ran no hook, and the child's first
// parallel kernel hung. pthread_atfork's child handler runs for every fork(): one thread there too.
void in_forked_child() {
  thread_setting().store(1, std::memory_order_relaxed);
  forked.store(true, std::memory_order_relaxed);
}

// Which thread ran each chunk of arrays of `sizes` under for_each_chunk with a cost of `work`:
// the split every parallel kernel gets, observable from the tests.
std::vector<int> chunk_threads(const std::vector<int64_t>& sizes, int64_t work) {
  // (sizes are only counted, no arrays: a chunk list past memory -- sizes [2**62] -- hung the call)
  constexpr int64_t kMaxChunks = int64_t(1) << 20;
  int64_t chunks_in_all = 0;
  for (int64_t s : sizes) {
    if (s < 0) throw py::value_error("sizes: must be >= 0");
    chunks_in_all += s / kChunk + (s % kChunk != 0);  // (make_chunks' count; no overflow: each is < 2**48)
    if (chunks_in_all > kMaxChunks)
      throw py::value_error("sizes: at most " + std::to_string(kMaxChunks) + " chunks of " + std::to_string(kChunk) +
                            " elements in all");
  }
  if (work < 0) throw py::value_error("work: must be >= 0");
  const auto chunks = make_chunks(sizes);
  std::vector<int> owner(chunks.size(), -1);
  py::gil_scoped_release nogil;
  for_each_chunk(chunks, work, [&](const Chunk& c) {
#ifdef _OPENMP
    owner[size_t(&c - chunks.data())] = omp_get_thread_num();
#else
    owner[size_t(&c - chunks.data())] = 0;
#endif
  });
  return owner;
}

}  // namespace

void register_probe_threads(py::module_& m) {
  def_named(m, "probe_rmw_", &probe_rmw,
        "Bandwidth probe: written[k] += c * read[0] for every element (all arrays one flat size), moving the "
        "bytes of an in-place optimizer step with len(written) - 1 state arrays.",
        arg("written"), arg("read"), arg("c") = 0.0);
  m.def("probe_read", &probe_read,
        "Bandwidth probe: reads every element of `arrays` (float32/float64, all one size) once, chunk by chunk "
        "across the arrays (as many streams as arrays), and returns their sum (no writes).",
        arg("arrays"));
  def_named(m, "set_num_threads", &set_num_threads,
        "OpenMP threads of every following optkern call, from any Python thread (process-wide).", arg("n"));
  m.def("get_num_threads", &max_threads, "OpenMP threads the next parallel region will use.");
  m.def(
      "forked", [] { return forked.load(std::memory_order_relaxed); },
      "Whether this process was forked (by any fork(), Python's or C's) after the module was loaded.");
#if defined(__unix__) || defined(__APPLE__)
  // (once: the module is initialized once per process, and never unloaded, so the handler stays valid)
  if (pthread_atfork(nullptr, nullptr, &in_forked_child) != 0) throw std::runtime_error("pthread_atfork failed");
#endif
  def_named(m, "chunk_threads", &chunk_threads,
        "The thread (0-based) that ran each chunk of arrays of these sizes in a parallel pass costing `work` "
        "(the split of every multi-array kernel; for tests).",
        arg("sizes"), arg("work"));
}

}  // namespace optkern
