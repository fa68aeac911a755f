// Turning Python lists of CuPy arrays into device pointers, after checking
// dtype, contiguity, size and device. Failures raise Python exceptions naming
// the argument and index, before any kernel is launched. Work goes to CuPy's
// current stream.
//
// Attribute access is the per-array cost of every call (a step over 1000
// arrays with 4 lists inspects 4000 arrays), so the checks read CuPy's
// Cython attributes directly (`size`, `_c_contiguous`, `dtype`,
// `data.ptr`, `data.device_id`) through interned names, and remember the
// array type and dtype objects already accepted.
#pragma once
#include <cuda_runtime.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "optkern/call_args.hpp"

namespace optkern {
namespace py = pybind11;

// Float storage types first (kernels dispatch on them); int64 labels, uint8
// masks and codes, and uint16 half bits (lowp_step) are only checked.
enum class DType { f16, bf16, f32, f64, i64, u8, u16 };

inline const char* dtype_str(DType d) {
  switch (d) {
    case DType::f16: return "float16";
    case DType::bf16: return "bfloat16";
    case DType::f32: return "float32";
    case DType::f64: return "float64";
    case DType::i64: return "int64";
    case DType::u16: return "uint16";
    default: return "uint8";
  }
}

inline size_t dtype_size(DType d) {
  switch (d) {
    case DType::f64: case DType::i64: return 8;
    case DType::f32: return 4;
    case DType::u8: return 1;
    default: return 2;
  }
}

// A list's device pointers, with references to the arrays they point into (owners: those of
// gather_device). A sequence may make its items on lookup (a view or a copy per __getitem__, an
// object converted from __cuda_array_interface__ / DLPack): held only by the lookup, such an item
// was freed as soon as the next was looked up, and CuPy's pool handed its block to the next array
// of that size -- a read list's items all read the last one's values, and a written list's items
// "shared memory". The owners keep them for the life of the list, which ends with the call, after
// the launch: the kernel is then still queued on CuPy's current stream, and an item freed meanwhile
// goes back to CuPy's pool, which reuses a block only on the stream it was allocated on, after the
// work queued there -- CuPy's own kernels rely on the same ordering. (An item allocated on another
// stream and freed with nothing else holding it is the caller's to keep, as for CuPy's kernels.)
// Lists of pointers made here from other arrays (cut from x, a buffer) have no owners: the
// binding's arguments hold those for the call.
struct DeviceList {
  std::vector<char*> data;
  std::vector<int64_t> size;
  int device = -1;
  std::vector<py::object> owners;
  size_t count() const { return data.size(); }
  template <class T> T* ptr(size_t i) const { return reinterpret_cast<T*>(data[i]); }
};

namespace detail {
// getattr with a name interned once; throws on failure like py::getattr.
inline py::object attr(py::handle h, const char* name, PyObject*& cache) {
  if (!cache) cache = PyUnicode_InternFromString(name);
  PyObject* r = PyObject_GetAttr(h.ptr(), cache);
  if (!r) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(r);
}
#define OK_ATTR(h, name) ([&]() { static PyObject* s_ = nullptr; return detail::attr(h, name, s_); }())
}  // namespace detail

// True for cupy.ndarray (checked by module and name, so no import of CuPy is
// needed to reject a NumPy array). The last accepted type is remembered.
inline bool is_cupy(py::handle h) {
  static PyTypeObject* known = nullptr;
  PyTypeObject* t = Py_TYPE(h.ptr());
  if (t == known) return true;
  auto ty = py::type::of(h);
  const bool ok = py::str(ty.attr("__module__")).cast<std::string>().rfind("cupy", 0) == 0 &&
                  py::str(ty.attr("__name__")).cast<std::string>() == "ndarray";
  if (ok) known = t;  // type objects of extension classes live for the process
  return ok;
}

// dtype of a CuPy array by name ("float32", ...).
inline std::string cupy_dtype(py::handle a) {
  return py::str(OK_ATTR(a, "dtype").attr("name")).cast<std::string>();
}

// Whether `a` has dtype `dt`; NumPy dtype objects of builtin types are
// singletons, so after one name comparison an identity test suffices.
inline bool has_dtype(py::handle a, DType dt) {
  static PyObject* seen[7] = {nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr};
  py::object d = OK_ATTR(a, "dtype");
  PyObject*& s = seen[int(dt)];
  if (s && d.ptr() == s) return true;
  if (py::str(d.attr("name")).cast<std::string>() != dtype_str(dt)) return false;
  if (!s) s = d.inc_ref().ptr();  // keep the dtype alive: the identity test relies on it
  return true;
}

inline bool c_contiguous(py::handle a) {
  static PyObject* name = PyUnicode_InternFromString("_c_contiguous");
  PyObject* r = PyObject_GetAttr(a.ptr(), name);
  if (r) return py::reinterpret_steal<py::object>(r).cast<bool>();
  PyErr_Clear();  // not CuPy's Cython class: use the public flags
  return OK_ATTR(a, "flags").attr("c_contiguous").cast<bool>();
}

// One CuPy array; returns its device pointer (and its element count in `size`, when
// given: callers that need it read it once). `what()` names it in errors (built only on
// failure: this runs for every array of every step).
template <class Name>
inline char* check_device_array_named(py::handle h, const Name& what, DType dt, int64_t expect_size, int& device,
                                      int64_t* size = nullptr) {
  if (!is_cupy(h))
    throw py::type_error(what() + ": expected a cupy.ndarray, got " + type_name(h));
  if (!has_dtype(h, dt))
    throw py::type_error(what() + ": expected " + std::string(dtype_str(dt)) + ", got " + cupy_dtype(h));
  if (!c_contiguous(h)) throw py::value_error(what() + ": array must be C-contiguous");
  const int64_t n = py::cast<int64_t>(OK_ATTR(h, "size"));
  if (expect_size >= 0 && n != expect_size) check_size(what(), expect_size, n);
  if (size) *size = n;
  py::object mem = OK_ATTR(h, "data");
  const int dev = py::cast<int>(OK_ATTR(mem, "device_id"));
  if (device < 0) device = dev;
  else if (dev != device)
    throw py::value_error(what() + ": is on device " + std::to_string(dev) + " but other arrays are on device " +
                          std::to_string(device));
  const auto ptr = py::cast<uintptr_t>(OK_ATTR(mem, "ptr"));
  if (ptr % dtype_size(dt) != 0) throw py::value_error(what() + ": array data is misaligned");
  return reinterpret_cast<char*>(ptr);
}

// One CuPy array; returns its device pointer. `device` < 0 means "any", and
// is set from the first array seen.
inline char* check_device_array(py::handle h, const std::string& what, DType dt, bool writable,
                                int64_t expect_size, int& device) {
  (void)writable;  // CuPy arrays have no read-only flag.
  return check_device_array_named(h, [&] { return what; }, dt, expect_size, device);
}

inline DeviceList gather_device(py::handle seq, const char* name, DType dt, bool writable, int& device,
                                const std::vector<int64_t>* sizes = nullptr) {
  (void)writable;  // CuPy arrays have no read-only flag.
  require_list(seq, name);
  auto s = py::reinterpret_borrow<py::sequence>(seq);
  const size_t n = size_t(py::len(s));
  if (sizes && n != sizes->size())
    throw py::value_error(std::string(name) + ": expected " + counted(int64_t(sizes->size()), "array") + ", got " +
                          std::to_string(n));
  DeviceList out;
  out.data.reserve(n);
  out.size.reserve(n);
  out.owners.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    py::object a = s[i];
    int64_t n = 0;
    out.data.push_back(
        check_device_array_named(a, [&] { return item_name(name, i); }, dt, sizes ? (*sizes)[i] : -1, device, &n));
    out.size.push_back(n);
    out.owners.push_back(std::move(a));  // (see DeviceList)
  }
  out.device = device;
  return out;
}

// A 1-element float64 device array (norm results, b^2, hyper-parameters).
inline DeviceList gather_scalar_buffer(py::handle h, const char* name, int& device, int64_t n = 1) {
  DeviceList out;
  out.data.push_back(check_device_array(h, name, DType::f64, true, n, device));
  out.size.push_back(n);
  out.device = device;
  return out;
}

using NamedDeviceList = NamedArrays<DeviceList>;

// (A non-template entry point: braced lists of NamedDeviceList convert to its argument.)
inline void check_no_overlap(const std::vector<NamedDeviceList>& lists, size_t itemsize) {
  check_overlaps(lists, itemsize);
}

// CuPy arrays for the shared collector (optkern/call_args.hpp).
struct DeviceArrays {
  using DType = optkern::DType;
  using List = DeviceList;
  static constexpr const char* kTypeName = "cupy.ndarray";
  static bool is_array(py::handle h) { return is_cupy(h); }
  static std::string dtype_name(py::handle h) { return cupy_dtype(h); }
  static DType dtype_named(const std::string& n) {
    for (DType d : {DType::f16, DType::bf16, DType::f32, DType::f64, DType::i64, DType::u8, DType::u16})
      if (n == dtype_str(d)) return d;
    throw std::logic_error("DeviceArrays: unknown dtype " + n);
  }
  // Element by element: a cast to std::vector needs pybind11/stl.h, and a header that casts
  // through it in some translation units only is an ODR violation (the linker keeps either copy).
  static std::vector<int64_t> shape(py::handle h) {
    std::vector<int64_t> s;
    for (py::handle d : h.attr("shape")) s.push_back(d.cast<int64_t>());
    return s;
  }
  static void* check(py::handle h, const char* what, DType dt, int64_t size, bool written, int& device,
                     uint64_t& bytes) {
    (void)written;  // CuPy arrays have no read-only flag.
    int64_t n = 0;
    char* p = check_device_array_named(h, [&] { return std::string(what); }, dt, size, device, &n);
    bytes = uint64_t(n) * dtype_size(dt);
    return p;
  }
  static DeviceList gather(py::handle seq, const char* name, DType dt, bool written, int& device,
                           const std::vector<int64_t>* sizes) {
    return gather_device(seq, name, dt, written, device, sizes);
  }
  static uint64_t itemsize(DType dt) { return dtype_size(dt); }
};

using DeviceArgs = Args<DeviceArrays>;

// The dtype of a list's first array (float32 / float64 only); float32 for an empty list.
inline DType float_dtype_of(py::handle seq, const char* name) { return list_float_dtype<DeviceArrays>(seq, name); }

// Raise RuntimeError for a failed CUDA runtime call.
inline void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear a non-sticky error so later calls start clean
    throw std::runtime_error(std::string(what) + ": CUDA error: " + cudaGetErrorString(e));
  }
}

// The arrays must live on the current device: that is where CuPy's current
// stream is and where the kernel runs. Every entry point refuses, none switches: the norm and
// dropout calls once made the arrays' device current for the call, which ran them on that
// device's stream rather than the caller's, and, where cudaSetDevice failed (unchecked), launched
// on the current device with the other device's pointers.
inline void require_current_device(int device, const char* first_name) {
  int cur = -1;
  check_cuda(cudaGetDevice(&cur), "optkern._cuda (no usable CUDA device)");
  if (device >= 0 && cur != device)
    throw py::value_error(std::string(first_name) + ": arrays are on device " + std::to_string(device) +
                          " but the current CUDA device is " + std::to_string(cur) +
                          " (use `with cupy.cuda.Device(" + std::to_string(device) + "):`)");
}

// CuPy's current stream on the current device.
inline cudaStream_t current_stream() {
  static PyObject* get = nullptr;  // leaked on purpose: no decref after interpreter shutdown
  if (!get) {
    try {
      get = py::object(py::module_::import("cupy.cuda").attr("get_current_stream")).release().ptr();
    } catch (py::error_already_set& e) {
      throw std::runtime_error(std::string("optkern._cuda needs CuPy (pip install \"optkern[cuda]\"): ") +
                               e.what());
    }
  }
  static PyObject* ptr_name = nullptr;
  py::object st = py::reinterpret_borrow<py::object>(get)();
  return reinterpret_cast<cudaStream_t>(detail::attr(st, "ptr", ptr_name).cast<uintptr_t>());
}

// Raise a Python RuntimeError if the last launch failed.
inline void check_launch(const char* what) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess)
    throw std::runtime_error(std::string(what) + ": CUDA error: " + cudaGetErrorString(e));
}

// Stream-ordered scratch memory (reduction partials, temporaries), freed on
// its stream when it goes out of scope. It comes from a pool owned by
// optkern, one per device, that keeps its memory between calls: allocation
// and free are enqueued on the stream, never synchronize, and become graph
// memory nodes under stream capture. Devices without memory pools fall back
// to cudaMalloc / cudaFree (which synchronize).
class ScratchBuffer {
 public:
  ScratchBuffer(size_t bytes, cudaStream_t s, int device = -1) : s_(s) {
    if (bytes == 0) return;
    if (device < 0) check_cuda(cudaGetDevice(&device), "scratch device");
    pool_ = pool(device);
    if (pool_) check_cuda(cudaMallocFromPoolAsync(&p_, bytes, pool_, s), "scratch allocation");
    else check_cuda(cudaMalloc(&p_, bytes), "scratch allocation");
  }
  ~ScratchBuffer() {
    if (!p_) return;
    if (pool_) cudaFreeAsync(p_, s_);
    else cudaFree(p_);
  }
  ScratchBuffer(const ScratchBuffer&) = delete;
  ScratchBuffer& operator=(const ScratchBuffer&) = delete;
  template <class P> P* as() const { return static_cast<P*>(p_); }

 private:
  static cudaMemPool_t pool(int device) {
    struct Slot {
      bool init = false;
      cudaMemPool_t pool = nullptr;
    };
    static std::mutex mu;
    static std::deque<Slot> slots;  // growing a deque keeps references to its elements valid
    std::lock_guard<std::mutex> lock(mu);
    if (size_t(device) >= slots.size()) slots.resize(size_t(device) + 1);
    Slot& slot = slots[size_t(device)];
    if (!slot.init) {
      int supported = 0;
      cudaDeviceGetAttribute(&supported, cudaDevAttrMemoryPoolsSupported, device);
      cudaGetLastError();
      if (supported) {
        cudaMemPoolProps props = {};
        props.allocType = cudaMemAllocationTypePinned;
        props.location.type = cudaMemLocationTypeDevice;
        props.location.id = device;
        check_cuda(cudaMemPoolCreate(&slot.pool, &props), "scratch pool");
        uint64_t keep = UINT64_MAX;  // never trim: partials are small and reused every step
        cudaMemPoolSetAttribute(slot.pool, cudaMemPoolAttrReleaseThreshold, &keep);
      }
      slot.init = true;
    }
    return slot.pool;
  }

  void* p_ = nullptr;
  cudaMemPool_t pool_ = nullptr;
  cudaStream_t s_;
};

}  // namespace optkern
