// The optkern._cpu module. Each feature file registers its own functions;
// this file only lists them and reports how the module was built.
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "cpu_avx2.hpp"
#include "optkern/common.hpp"
#include "parallel.hpp"
#include "py_arrays.hpp"

namespace py = pybind11;

namespace optkern {
void register_optim(py::module_& m);       // optim.cpp
void register_reduce(py::module_& m);      // reduce.cpp
void register_norm(py::module_& m);        // norm.cpp
void register_dropout(py::module_& m);     // dropout.cpp
void register_nn(py::module_& m);          // nn.cpp
void register_linalg(py::module_& m);      // linalg.cpp
void register_orthonormal(py::module_& m); // orthonormal.cpp
void register_combine(py::module_& m);     // combine.cpp
void register_regularize(py::module_& m);  // regularize.cpp
void register_step_checks(py::module_& m); // step_checks.cpp
void register_lbfgs(py::module_& m);       // lbfgs.cpp
void register_sam(py::module_& m);         // sam.cpp
void register_cg(py::module_& m);          // cg.cpp
void register_cg_slices(py::module_& m);   // cg_slices.cpp
void register_lowp(py::module_& m);        // lowp.cpp
void register_lowp_step(py::module_& m);   // lowp_step.cpp
void register_swa(py::module_& m);         // swa.cpp
void register_amp(py::module_& m);         // amp.cpp
void register_probe_threads(py::module_& m); // probe_threads.cpp
void register_pool(py::module_& m);        // pool.cpp
}  // namespace optkern

#ifndef OPTKERN_VERSION
#define OPTKERN_VERSION "dev"
#endif
#ifndef OPTKERN_COMPILER
#define OPTKERN_COMPILER "unknown"
#endif

// The ISA level the multi-versioned loops resolve to on this CPU.
static const char* simd_level() {
#if OK_HAVE_CLONES
  __builtin_cpu_init();
  if (__builtin_cpu_supports("x86-64-v4")) return "avx512 (x86-64-v4)";
  if (__builtin_cpu_supports("x86-64-v3")) return "avx2 (x86-64-v3)";
  return "sse2 (x86-64 baseline)";
#elif defined(OPTKERN_NATIVE)
  return "native (-march=native)";
#else
  return "compiler default";
#endif
}

// The hand-written 8-bit map and Philox loops this process runs (cpu_avx2.hpp's switches).
static const char* lowp_loops() {
#if defined(OPTKERN_X86_AVX2)
  if (optkern::use_avx512_vbmi()) return "avx512-vbmi";
  if (optkern::use_avx512()) return "avx512";
  if (optkern::use_avx2()) return "avx2";
#endif
  return "portable";
}

static py::dict build_info() {
  py::dict d;
  d["version"] = OPTKERN_VERSION;
  d["compiler"] = OPTKERN_COMPILER;
#ifdef _OPENMP
  d["openmp"] = true;
#else
  d["openmp"] = false;
#endif
  d["threads"] = optkern::max_threads();
  d["simd"] = simd_level();
  d["lowp_loops"] = lowp_loops();
  return d;
}

// optkern._cpu.HeldCapsules: the list type whose capsules gather() frees once read
// (py_arrays.hpp's held_capsules). Made here, not in Python, so that the module knows it by
// identity; the module keeps one reference to it for the life of the process.
static void register_held_capsules(py::module_& m) {
  const py::module_ builtins = py::module_::import("builtins");
  py::dict ns;
  ns["__slots__"] = py::make_tuple("tensors", "shapes", "api");
  ns["__module__"] = "optkern._cpu";
  ns["__doc__"] =
      "A list of DLPack capsules of host tensors that ``tensors`` (set before the call) holds: a native "
      "call that only reads them empties the list once it has read and checked every one (the capsules "
      "freed while in cache), and keeps the list, so the tensors, alive until it returns. ``shapes``, when "
      "set: a flat int64 array (each item's ndim, then its dims) that each capsule's shape must equal. ``api``, "
      "when set: a tensor type whose DLPack exchange API (``__dlpack_c_exchange_api__``) describes the items, "
      "then tensors of it instead of capsules (see ``dlpack_exchange_usable``).";
  py::object held = builtins.attr("type")("HeldCapsules", py::make_tuple(builtins.attr("list")), ns);
  m.attr("HeldCapsules") = held;
  optkern::held_capsules_type() = held.release().ptr();
}

// data_layouts (registered below): what its docstring says. Compared as bytes: each tensor's
// address, then its dtype, ndim, shape and strides (C order's where DLPack gives none), so that a
// tensor re-laid out at the same address (``p.data = p.data.t()``: the same shape, other strides)
// is not taken for the one a cached view was made of.
static py::bytes data_layouts(py::handle tensors, py::handle type) {
  const optkern::ExchangeAPI* api = optkern::exchange_api(type);
  if (api == nullptr) throw py::type_error("type: expected a tensor type with a usable DLPack exchange API");
  if (!PyList_Check(tensors.ptr())) throw py::type_error("tensors: expected a list");
  const Py_ssize_t n = PyList_GET_SIZE(tensors.ptr());
  std::vector<int64_t> out;
  out.reserve(size_t(n) * 7);  // (address, dtype, ndim, two dims: a 2-D tensor's)
  auto* tp = reinterpret_cast<PyTypeObject*>(type.ptr());
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject* h = PyList_GET_ITEM(tensors.ptr(), i);
    optkern::dlpack::Tensor t{};
    if (!PyObject_TypeCheck(h, tp) || api->dltensor_from_py_object_no_sync(h, &t) != 0) {
      if (PyErr_Occurred()) {
        py::error_already_set e;
        throw py::type_error("tensors[" + std::to_string(i) + "]: " + e.what());
      }
      throw py::type_error("tensors[" + std::to_string(i) + "]: expected a " +
                           py::str(type.attr("__name__")).cast<std::string>() + ", got " + optkern::type_name(h));
    }
    out.push_back(int64_t(reinterpret_cast<uintptr_t>(t.data) + uintptr_t(t.byte_offset)));
    out.push_back(int64_t(t.dtype.code) | int64_t(t.dtype.bits) << 8 | int64_t(t.dtype.lanes) << 16);
    out.push_back(t.ndim);
    out.insert(out.end(), t.shape, t.shape + t.ndim);
    int64_t step = 1;  // (no strides: C-contiguous, written as such)
    const size_t at = out.size();
    out.resize(at + size_t(t.ndim));
    for (int32_t d = t.ndim - 1; d >= 0; --d) {
      out[at + size_t(d)] = t.strides != nullptr ? t.strides[d] : step;
      step *= t.shape[d];
    }
  }
  return py::bytes(reinterpret_cast<const char*>(out.data()), out.size() * sizeof(int64_t));
}

PYBIND11_MODULE(_cpu, m) {
  m.doc() = "optkern C++/OpenMP kernels";
  m.def("build_info", &build_info, "How this module was built and what it runs on.");
  m.def(
      "serial_below", []() { return optkern::serial_below(optkern::max_threads()); },
      "The work (elements times arrays streamed) below which a kernel runs on one thread, for the current "
      "thread count: measured once per count from the wake-up time of a parallel region "
      "(cpp/parallel_cost.cpp), or OPTKERN_SERIAL_BELOW.");
  optkern::register_optim(m);
  optkern::register_reduce(m);
  optkern::register_norm(m);
  optkern::register_dropout(m);
  optkern::register_nn(m);
  optkern::register_linalg(m);
  optkern::register_orthonormal(m);
  optkern::register_combine(m);
  optkern::register_regularize(m);
  optkern::register_step_checks(m);
  optkern::register_lbfgs(m);
  optkern::register_sam(m);
  optkern::register_cg(m);
  optkern::register_cg_slices(m);
  optkern::register_lowp(m);
  optkern::register_lowp_step(m);
  optkern::register_swa(m);
  optkern::register_amp(m);
  optkern::register_probe_threads(m);
  optkern::register_pool(m);
  register_held_capsules(m);
  m.def(
      "dlpack_exchange_usable", [](py::handle type) { return optkern::exchange_api(type) != nullptr; },
      py::arg("type"),
      "Whether a tensor type's DLPack exchange API (``__dlpack_c_exchange_api__``, major version 1) can "
      "describe the items of a ``HeldCapsules`` list (its ``api``).");
  m.def("data_layouts", &data_layouts, py::arg("tensors"), py::arg("type"),
        "Where each tensor's elements are: the address of its first element (its data pointer), its dtype "
        "(DLPack code | bits << 8 | lanes << 16), ndim, shape and strides (in elements; C order's where DLPack "
        "gives none), as the native-endian int64s of one bytes object, read through the DLPack exchange API of "
        "``type`` (``dlpack_exchange_usable``); TypeError naming the first item that is not a ``type`` or that "
        "the API refuses. (optkern.torch's check that its cached views still view its params' memory as the "
        "params lay it out: one call, no int made per tensor.)");
}
