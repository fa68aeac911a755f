// A caching allocator for the NumPy arrays optkern's Python code creates (optkern/_pool.py).
//
// The MLP's products and training steps are NumPy expressions whose temporaries (one per layer
// activation, 0.5-4 MB each) are freed and allocated again every call. glibc returns such blocks
// to the system (mmap'd above its threshold, or trimmed from the top of the heap), so every call
// page-faults them in again: 934 faults and 1.3-2.6 ms of a 4-7 ms Gauss-Newton product
// (MLP 784-256-10, batch 512, this 2-vCPU VM), 750 faults and 1.7 ms of a 4.8 ms loss_and_grad.
// CuPy keeps freed device memory in a pool for the same reason; this is that pool for the host,
// installed as NumPy's data allocator (PyDataMem_SetHandler, NumPy >= 1.22) only inside optkern's
// calls. The handler lives in a context variable, so other threads and code outside those calls
// keep NumPy's own; an array made inside keeps this handler until it is freed, wherever that is.
//
// Blocks of kMinPooled bytes or more are rounded up to whole pages and, when freed, kept in a
// free list per size (up to `limit` bytes in all, OPTKERN_POOL_BYTES; 0 turns the caching off),
// handed out again for the same rounded size. Smaller blocks go to malloc, which serves them
// from its heap without system calls. Every block carries a 64-byte header with its capacity
// (NumPy's free passes a size, but realloc does not), which keeps the data 64-byte aligned.
#define NPY_NO_DEPRECATED_API NPY_1_22_API_VERSION
#define NPY_TARGET_VERSION NPY_1_22_API_VERSION
#include <Python.h>
#include <numpy/arrayobject.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "optkern/call_args.hpp"
#include "optkern/named_reals.hpp"

namespace py = pybind11;

namespace optkern {
namespace {

constexpr size_t kHeader = 64;           // capacity, then padding: keeps the data 64-byte aligned
constexpr size_t kMinPooled = 1 << 16;   // below this, malloc's own heap does as well
constexpr size_t kPage = 4096;
constexpr size_t kHugeFrom = size_t(1) << 22;  // NumPy asks for transparent huge pages from 4 MiB

struct Pool {
  std::mutex m;
  std::unordered_map<size_t, std::vector<char*>> free;  // capacity -> blocks (header addresses)
  size_t cached = 0;     // bytes held in `free`
  size_t limit = 0;      // the most bytes `free` may hold
  uint64_t hits = 0;     // pooled-size allocations served from `free`
  uint64_t misses = 0;   // pooled-size allocations that went to the system
};

Pool& pool() {
  static Pool* p = new Pool;  // never destroyed: arrays using it may outlive module teardown
  return *p;
}

size_t capacity_for(size_t size) { return size < kMinPooled ? size : (size + kPage - 1) / kPage * kPage; }

size_t& capacity_of(char* block) { return *reinterpret_cast<size_t*>(block); }

char* system_block(size_t cap) {
  const size_t total = (kHeader + cap + 63) / 64 * 64;  // aligned_alloc wants a multiple of the alignment
  char* b = static_cast<char*>(std::aligned_alloc(64, total));
  if (b == nullptr) return nullptr;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (cap >= kHugeFrom) {  // as NumPy's default allocator does for large arrays
    const uintptr_t lo = (reinterpret_cast<uintptr_t>(b) + kPage - 1) / kPage * kPage;
    const uintptr_t hi = (reinterpret_cast<uintptr_t>(b) + total) / kPage * kPage;
    if (hi > lo) madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_HUGEPAGE);
  }
#endif
  capacity_of(b) = cap;
  return b;
}

void* pool_malloc(void*, size_t size) {
  const size_t cap = capacity_for(size);
  if (cap >= kMinPooled) {
    Pool& p = pool();
    std::lock_guard<std::mutex> lock(p.m);
    auto it = p.free.find(cap);
    if (it != p.free.end() && !it->second.empty()) {
      char* b = it->second.back();
      it->second.pop_back();
      p.cached -= cap;
      ++p.hits;
      return b + kHeader;
    }
    ++p.misses;
  }
  char* b = system_block(cap);
  return b == nullptr ? nullptr : b + kHeader;
}

void* pool_calloc(void* ctx, size_t nelem, size_t elsize) {
  if (elsize != 0 && nelem > SIZE_MAX / elsize) return nullptr;
  void* d = pool_malloc(ctx, nelem * elsize);
  if (d != nullptr) std::memset(d, 0, nelem * elsize);  // a reused block holds old data
  return d;
}

void pool_free(void*, void* ptr, size_t) {
  if (ptr == nullptr) return;
  char* b = static_cast<char*>(ptr) - kHeader;
  const size_t cap = capacity_of(b);
  if (cap >= kMinPooled) {
    Pool& p = pool();
    std::lock_guard<std::mutex> lock(p.m);
    if (p.cached + cap <= p.limit) {
      p.free[cap].push_back(b);
      p.cached += cap;
      return;
    }
  }
  std::free(b);
}

void* pool_realloc(void* ctx, void* ptr, size_t size) {
  if (ptr == nullptr) return pool_malloc(ctx, size);
  const size_t cap = capacity_of(static_cast<char*>(ptr) - kHeader);
  if (size <= cap) return ptr;  // (NumPy shrinks arrays in place too)
  void* d = pool_malloc(ctx, size);
  if (d == nullptr) return nullptr;  // the old block stays valid, as realloc's contract says
  std::memcpy(d, ptr, cap);
  pool_free(ctx, ptr, cap);
  return d;
}

// Frees every cached block.
void release() {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.m);
  for (auto& [cap, blocks] : p.free)
    for (char* b : blocks) std::free(b);
  p.free.clear();
  p.cached = 0;
}

PyDataMem_Handler handler = {
    "optkern_pool",
    1,
    {nullptr, pool_malloc, pool_calloc, pool_realloc, pool_free},
};

// The handler as NumPy takes it: a capsule named "mem_handler", alive for the process.
py::object handler_capsule() {
  static PyObject* cap = PyCapsule_New(&handler, "mem_handler", nullptr);
  if (cap == nullptr) throw py::error_already_set();
  return py::reinterpret_borrow<py::object>(cap);
}

// Makes the pool NumPy's allocator in the current context; returns the handler it replaces.
py::object install() {
  PyObject* prev = PyDataMem_SetHandler(handler_capsule().ptr());
  if (prev == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(prev);
}

// Puts back the handler `install` returned.
void restore(const py::object& prev) {
  // (NumPy's own refusal, "Capsule must be named 'mem_handler'", named no argument)
  if (!PyCapsule_IsValid(prev.ptr(), "mem_handler"))
    throw py::type_error("prev: expected the handler capsule pool_install returned, got " + type_name(prev));
  PyObject* mine = PyDataMem_SetHandler(prev.ptr());
  if (mine == nullptr) throw py::error_already_set();
  Py_DECREF(mine);
}

void set_limit(int64_t bytes) {
  if (bytes < 0) throw py::value_error("limit: expected a non-negative number of bytes, got " + std::to_string(bytes));
  Pool& p = pool();
  std::vector<char*> drop;
  {
    std::lock_guard<std::mutex> lock(p.m);
    p.limit = size_t(bytes);
    for (auto it = p.free.begin(); p.cached > p.limit && it != p.free.end(); ++it)
      while (p.cached > p.limit && !it->second.empty()) {
        drop.push_back(it->second.back());
        it->second.pop_back();
        p.cached -= it->first;
      }
  }
  for (char* b : drop) std::free(b);
}

py::dict stats() {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.m);
  py::dict d;
  d["limit"] = p.limit;
  d["cached"] = p.cached;
  d["hits"] = p.hits;
  d["misses"] = p.misses;
  return d;
}

}  // namespace

void register_pool(py::module_& m) {
  if (_import_array() < 0) throw py::error_already_set();
  m.def("pool_install", &install,
        "Make optkern's caching allocator NumPy's data allocator in the current context; returns the previous "
        "handler for pool_restore.");
  m.def("pool_restore", &restore, py::arg("prev"), "Put back the handler pool_install returned.");
  def_named(m, "pool_set_limit", &set_limit, py::arg("limit"),
        "The most bytes of freed blocks the pool keeps (0: none); frees what is over it.");
  m.def("pool_release", &release, "Free every block the pool holds.");
  m.def("pool_stats", &stats, "limit, cached bytes, hits and misses of the pool.");
}

}  // namespace optkern
