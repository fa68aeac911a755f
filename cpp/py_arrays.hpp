// Turning Python lists of NumPy arrays into raw pointers, after checking
// everything a kernel relies on. Every failure raises a Python exception that
// names the argument and the list index, before any array is written.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "optkern/call_args.hpp"

namespace optkern {
namespace py = pybind11;

struct ArrayList {
  std::vector<char*> data;
  std::vector<int64_t> size;
  // References that keep the arrays alive while a kernel runs without the GIL
  // (another thread could drop them from the caller's list meanwhile).
  std::vector<py::object> owners;
  size_t count() const { return data.size(); }
  template <class T> T* ptr(size_t i) const { return reinterpret_cast<T*>(data[i]); }
};

inline std::string dtype_name(const py::dtype& dt) { return py::str(dt).cast<std::string>(); }

// What is wrong with h as a C-contiguous, aligned `dt` array (writable if
// asked). Runs for every array of every optimizer step, so it reads the
// array struct directly and builds no strings unless something is wrong.
enum class Fault { none, not_array, dtype, layout, readonly, misaligned };

inline Fault array_fault(py::handle h, const py::dtype& dt, size_t itemsize, bool writable) {
  namespace d = py::detail;
  if (!py::isinstance<py::array>(h)) return Fault::not_array;
  const d::PyArray_Proxy* a = d::array_proxy(h.ptr());
  if (a->descr != dt.ptr() && !d::npy_api::get().PyArray_EquivTypes_(a->descr, dt.ptr())) return Fault::dtype;
  if (!(a->flags & d::npy_api::NPY_ARRAY_C_CONTIGUOUS_)) return Fault::layout;
  if (writable && !(a->flags & d::npy_api::NPY_ARRAY_WRITEABLE_)) return Fault::readonly;
  if (reinterpret_cast<uintptr_t>(a->data) % uintptr_t(itemsize) != 0) return Fault::misaligned;
  return Fault::none;
}

[[noreturn]] inline void raise_fault(Fault f, py::handle h, const std::string& what, const py::dtype& dt) {
  switch (f) {
    case Fault::not_array: throw py::type_error(what + ": expected a numpy.ndarray, got " + type_name(h));
    case Fault::dtype:
      throw py::type_error(what + ": expected " + dtype_name(dt) + ", got " +
                           dtype_name(py::reinterpret_borrow<py::array>(h).dtype()));
    case Fault::layout: throw py::value_error(what + ": array must be C-contiguous");
    case Fault::readonly: throw py::value_error(what + ": array is read-only");
    default: throw py::value_error(what + ": array data is misaligned");
  }
}

// One array: NumPy ndarray, dtype `dt`, C-contiguous, aligned, writable if asked.
inline py::array check_array(py::handle h, const std::string& what, const py::dtype& dt, bool writable) {
  const Fault f = array_fault(h, dt, size_t(dt.itemsize()), writable);
  if (f != Fault::none) raise_fault(f, h, what, dt);
  return py::reinterpret_borrow<py::array>(h);
}

// DLPack's ABI (dlpack.h, unversioned "dltensor" capsules): what a read-only list item
// may be instead of an ndarray. The torch adapter hands its fresh gradients over this way:
// torch.utils.dlpack.to_dlpack costs half of Tensor.numpy() per tensor, and the capsule
// carries everything checked below. Capsules are read, not consumed: their producer's
// destructor frees them when the caller's list goes (or once read: held_capsules below).
namespace dlpack {
struct Device {
  int32_t device_type;  // 1: kDLCPU
  int32_t device_id;
};
struct DataType {
  uint8_t code;  // 2: kDLFloat
  uint8_t bits;
  uint16_t lanes;
};
struct Tensor {
  void* data;
  Device device;
  int32_t ndim;
  DataType dtype;
  int64_t* shape;
  int64_t* strides;  // in elements; null: C-contiguous
  uint64_t byte_offset;
};
struct Managed {
  Tensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(Managed*);
};
}  // namespace dlpack

// The data and element count of DLPack tensor `t` (list item `h`): a C-contiguous, aligned host
// array of dtype `dt`; a TypeError/ValueError naming it `what()` otherwise. (The name is made only
// then: a string a tensor cost ~0.1 us each, 200 a step.)
template <class Name>
inline std::pair<char*, int64_t> read_dl(const dlpack::Tensor& t, py::handle h, const Name& what,
                                         const py::dtype& dt, size_t itemsize) {
  if (t.device.device_type != 1) throw py::type_error(what() + ": DLPack tensor is not in host memory");
  if (t.dtype.code != 2 || t.dtype.lanes != 1 || size_t(t.dtype.bits) != 8 * itemsize)
    throw py::type_error(what() + ": expected " + dtype_name(dt) + ", got DLPack dtype code " +
                         std::to_string(t.dtype.code) + " bits " + std::to_string(t.dtype.bits));
  int64_t size = 1;
  for (int k = 0; k < t.ndim; ++k) size *= t.shape[k];
  if (t.strides && size > 0) {  // row-major, dimensions of extent 1 aside (their stride is free)
    int64_t expect = 1;
    for (int k = t.ndim - 1; k >= 0; --k) {
      if (t.shape[k] != 1 && t.strides[k] != expect) raise_fault(Fault::layout, h, what(), dt);
      expect *= t.shape[k];
    }
  }
  char* data = static_cast<char*>(t.data) + t.byte_offset;
  if (reinterpret_cast<uintptr_t>(data) % uintptr_t(itemsize) != 0) raise_fault(Fault::misaligned, h, what(), dt);
  return {data, size};
}

// The tensor of a "dltensor" capsule (read_dl checks it); a TypeError unless `h` is an unused one.
template <class Name>
inline const dlpack::Tensor& capsule_tensor(py::handle h, const Name& what) {
  if (!PyCapsule_IsValid(h.ptr(), "dltensor"))
    throw py::type_error(what() + ": expected a numpy.ndarray or an unused DLPack capsule");
  return static_cast<const dlpack::Managed*>(PyCapsule_GetPointer(h.ptr(), "dltensor"))->dl_tensor;
}

// The data and element count of a "dltensor" capsule (capsule_tensor, read_dl).
inline std::pair<char*, int64_t> read_capsule(py::handle h, const std::string& what, const py::dtype& dt,
                                              size_t itemsize) {
  const auto name = [&] { return what; };
  return read_dl(capsule_tensor(h, name), h, name, dt, itemsize);
}

// DLPack's exchange API (dlpack.h >= 1.2, ``type.__dlpack_c_exchange_api__``, a "dlpack_exchange_api"
// capsule): a C function that describes a framework's tensor object in a caller's DLTensor, without
// allocating (torch >= 2.10). The torch adapter's grads go to a HeldCapsules list with ``api`` set
// as the tensors themselves: no capsule made per tensor in Python (to_dlpack: ~0.15 us each idle,
// ~0.4 us after a large step's memory traffic). Only the fields up to that function are read.
struct ExchangeAPI {
  uint32_t major, minor;
  void* prev_api;
  void* managed_tensor_allocator;
  void* managed_tensor_from_py_object_no_sync;
  void* managed_tensor_to_py_object_no_sync;
  int (*dltensor_from_py_object_no_sync)(void* py_object, dlpack::Tensor* out);
};

// The exchange API of tensor type `type` when this module can use it (major version 1, the
// function present), else nullptr. The last type asked is remembered (the module holds it).
inline const ExchangeAPI* exchange_api(py::handle type) {
  static PyObject* last_type = nullptr;
  static const ExchangeAPI* last_api = nullptr;
  if (type.ptr() == last_type) return last_api;
  if (!PyType_Check(type.ptr())) return nullptr;
  PyObject* cap = PyObject_GetAttrString(type.ptr(), "__dlpack_c_exchange_api__");
  if (cap == nullptr) {
    PyErr_Clear();
    return nullptr;
  }
  const ExchangeAPI* api = nullptr;
  if (PyCapsule_IsValid(cap, "dlpack_exchange_api"))
    api = static_cast<const ExchangeAPI*>(PyCapsule_GetPointer(cap, "dlpack_exchange_api"));
  Py_DECREF(cap);  // (the framework keeps the table for the life of the process)
  if (api != nullptr && (api->major != 1 || api->dltensor_from_py_object_no_sync == nullptr)) api = nullptr;
  Py_XDECREF(last_type);
  last_type = type.inc_ref().ptr();
  last_api = api;
  return api;
}

// The DLPack tensor of list item `h`, an instance of `type` (a HeldCapsules list's ``api``), as its
// exchange API describes it (valid while `h` lives and nothing else runs); a named TypeError else.
template <class Name>
inline dlpack::Tensor api_tensor(const ExchangeAPI* api, py::handle type, py::handle h, const Name& what) {
  if (!PyObject_TypeCheck(h.ptr(), reinterpret_cast<PyTypeObject*>(type.ptr())))
    throw py::type_error(what() + ": expected a " + py::str(type.attr("__name__")).cast<std::string>() + ", got " +
                         type_name(h));
  dlpack::Tensor t{};
  if (api->dltensor_from_py_object_no_sync(h.ptr(), &t) != 0) {
    py::error_already_set e;
    throw py::type_error(what() + ": " + e.what());
  }
  return t;
}

// optkern._cpu.HeldCapsules (made in bindings.cpp): a list subclass of DLPack capsules whose
// tensors its `tensors` attribute holds for as long as the list lives -- optkern.torch's grads.
// gather() empties it once every item has been read and checked, so the capsules, and torch's
// wrappers they own, are freed while they are still in cache. Freed after the kernel, as any
// list's items are, they cost ~0.75 us each: the kernel has streamed the arrays through every
// cache level meanwhile (150 us of a 200-tensor torch Adam step). The list itself stays an owner
// for the call, and with it the tensors.
inline PyObject*& held_capsules_type() {
  static PyObject* type = nullptr;
  return type;
}

inline bool held_capsules(py::handle seq) {
  const PyObject* t = held_capsules_type();
  return t && reinterpret_cast<const PyObject*>(Py_TYPE(seq.ptr())) == t && py::hasattr(seq, "tensors");
}

// The flat int64 array (each item's ndim, then its dims) that a held capsule list's `shapes`
// attribute holds, as (data, length); (nullptr, 0) when it has none. optkern.torch sets it to its
// params' shapes: its grads' shapes are compared here, on the capsules just made (in cache), not
// on 200 torch.Size objects a step (~30 us after a large step's memory traffic).
inline std::pair<const int64_t*, size_t> held_shapes(py::handle seq, py::object& keep) {
  if (!PyObject_HasAttrString(seq.ptr(), "shapes")) return {nullptr, 0};
  keep = seq.attr("shapes");
  const py::dtype i64 = py::dtype::of<int64_t>();
  if (array_fault(keep, i64, sizeof(int64_t), false) != Fault::none)
    throw py::type_error("HeldCapsules.shapes: expected a C-contiguous int64 numpy.ndarray");
  const auto* a = py::detail::array_proxy(keep.ptr());
  return {reinterpret_cast<const int64_t*>(a->data), size_t(a->nd == 1 ? a->dimensions[0] : 0)};
}

// ValueError naming item `what` (DLPack tensor `t`) unless its shape is the one at `pos` of
// `shapes` (ndim, then the dims); `pos` moves past it.
template <class Name>
inline void check_dl_shape(const dlpack::Tensor& t, const Name& what, const int64_t* shapes, size_t n, size_t& pos) {
  bool same = pos < n && shapes[pos] == t.ndim && pos + 1 + size_t(t.ndim) <= n;
  for (int k = 0; same && k < t.ndim; ++k) same = shapes[pos + 1 + size_t(k)] == t.shape[k];
  if (!same) throw py::value_error(what() + ": shape is not its param's");
  pos += 1 + size_t(t.ndim);
}

// The exchange API of a held list's ``api`` (a tensor type: its items are tensors of it), nullptr
// where it has none; a TypeError where this module cannot use that type's. `keep` holds the type.
inline const ExchangeAPI* held_api(py::handle seq, py::object& keep) {
  if (!PyObject_HasAttrString(seq.ptr(), "api")) return nullptr;
  keep = seq.attr("api");
  const ExchangeAPI* api = exchange_api(keep);
  if (api == nullptr) throw py::type_error("HeldCapsules.api: expected a tensor type with a usable DLPack exchange API");
  return api;
}

// A list of arrays. `sizes`, when given, fixes the element count of each. Lists the
// kernel only reads may hold DLPack capsules too (read_capsule), a HeldCapsules list with ``api``
// the tensors themselves (api_tensor).
inline ArrayList gather(py::handle seq, const char* name, const py::dtype& dt, bool writable,
                        const std::vector<int64_t>* sizes = nullptr) {
  require_list(seq, name);
  auto s = py::reinterpret_borrow<py::sequence>(seq);
  const size_t n = size_t(py::len(s));
  if (sizes && n != sizes->size())
    throw py::value_error(std::string(name) + ": expected " + counted(int64_t(sizes->size()), "array") + ", got " +
                          std::to_string(n));
  const size_t itemsize = size_t(dt.itemsize());
  const bool held = !writable && held_capsules(seq);
  py::object shapes_obj;
  const auto shapes = held ? held_shapes(seq, shapes_obj) : std::pair<const int64_t*, size_t>{nullptr, 0};
  py::object api_type;
  const ExchangeAPI* api = held ? held_api(seq, api_type) : nullptr;
  size_t shape_pos = 0;
  ArrayList out;
  out.data.reserve(n);
  out.size.reserve(n);
  out.owners.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    py::object item = s[i];
    char* data = nullptr;
    int64_t sz = 1;
    const Fault f = array_fault(item, dt, itemsize, writable);
    const auto what = [&] { return item_name(name, i); };
    if (f == Fault::not_array && api != nullptr) {  // (a tensor: described in place, nothing made)
      const dlpack::Tensor t = api_tensor(api, api_type, item, what);
      std::tie(data, sz) = read_dl(t, item, what, dt, itemsize);
      if (shapes.first) check_dl_shape(t, what, shapes.first, shapes.second, shape_pos);
    } else if (f == Fault::not_array && !writable && PyCapsule_CheckExact(item.ptr())) {
      const dlpack::Tensor& t = capsule_tensor(item, what);
      std::tie(data, sz) = read_dl(t, item, what, dt, itemsize);
      if (shapes.first) check_dl_shape(t, what, shapes.first, shapes.second, shape_pos);
    } else {
      if (f != Fault::none) raise_fault(f, item, item_name(name, i), dt);
      const auto* a = py::detail::array_proxy(item.ptr());
      for (int k = 0; k < a->nd; ++k) sz *= int64_t(a->dimensions[k]);
      data = a->data;
    }
    if (sizes) check_size(item_name(name, i), (*sizes)[i], sz);
    out.data.push_back(data);
    out.size.push_back(sz);
    out.owners.push_back(std::move(item));
  }
  if (held) {
    out.owners.clear();
    out.owners.push_back(py::reinterpret_borrow<py::object>(seq));
    if (PyList_SetSlice(seq.ptr(), 0, PY_SSIZE_T_MAX, nullptr) != 0) throw py::error_already_set();
  }
  return out;
}

using NamedList = NamedArrays<ArrayList>;

// (A non-template entry point: braced lists of NamedList convert to its argument.)
inline void check_no_overlap(const std::vector<NamedList>& lists, size_t itemsize) { check_overlaps(lists, itemsize); }

// NumPy arrays for the shared collector (optkern/call_args.hpp).
struct HostArrays {
  using DType = py::dtype;
  using List = ArrayList;
  static constexpr const char* kTypeName = "numpy.ndarray";
  static bool is_array(py::handle h) { return py::isinstance<py::array>(h); }
  // (float32 / float64 answered without NumPy's dtype.__str__, which runs Python code: ~4 us a call)
  static std::string dtype_name(py::handle h) {
    const py::dtype dt = py::reinterpret_borrow<py::array>(h).dtype();
    if (dt.equal(py::dtype::of<float>())) return "float32";
    if (dt.equal(py::dtype::of<double>())) return "float64";
    return optkern::dtype_name(dt);
  }
  static DType dtype_named(const std::string& n) {
    if (n == "float32") return py::dtype::of<float>();
    if (n == "float64") return py::dtype::of<double>();
    return py::dtype(n);
  }
  static std::vector<int64_t> shape(py::handle h) {
    const auto a = py::reinterpret_borrow<py::array>(h);
    return std::vector<int64_t>(a.shape(), a.shape() + a.ndim());
  }
  static void* check(py::handle h, const char* what, const DType& dt, int64_t size, bool written, int& /*device*/,
                     uint64_t& bytes) {
    py::array a = check_array(h, what, dt, written);
    if (size >= 0) check_size(what, size, int64_t(a.size()));
    bytes = uint64_t(a.nbytes());
    return const_cast<void*>(a.data());
  }
  static ArrayList gather(py::handle seq, const char* name, const DType& dt, bool written, int& /*device*/,
                          const std::vector<int64_t>* sizes) {
    return optkern::gather(seq, name, dt, written, sizes);
  }
  static uint64_t itemsize(const DType& dt) { return uint64_t(dt.itemsize()); }
};

using HostArgs = Args<HostArrays>;

// f(T{}) with T the C++ type of dt.
template <class F>
void dispatch_float(const py::dtype& dt, F&& f) {
  if (dt.itemsize() == 4)
    f(float{});
  else
    f(double{});
}

}  // namespace optkern
