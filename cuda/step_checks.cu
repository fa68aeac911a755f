// precheck_step_ on CuPy arrays (the checks and the aliasing test: optkern/step_checks.hpp):
// each array checked as the native calls check it (cuda_arrays.hpp: dtype, layout, one device,
// alignment, in their wording; CuPy arrays have no read-only flag), one native pass where the
// same checks in Python cost ~5 us an array on a GPU machine (clip_grad_norm_ over 200 arrays).
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "cuda_arrays.hpp"
#include "optkern/signatures_reduce.hpp"
#include "optkern/step_checks.hpp"

namespace optkern {
namespace {
using step_checks::Span;

// CuPy arrays for step_checks::precheck_runs; `device`: that of the first array.
struct DeviceKind {
  int device = -1;

  template <class Name> DType run(py::handle dtype, const Name& name) const {
    const std::string n = py::str(dtype).cast<std::string>();
    for (DType d : {DType::f16, DType::bf16, DType::f32, DType::f64, DType::i64, DType::u8, DType::u16})
      if (n == dtype_str(d)) return d;
    throw py::type_error(name() + ": no CUDA kernel takes " + n + " arrays");
  }
  template <class Name> Span written(py::handle h, const Name& name, DType dt, size_t run, size_t i) {
    int64_t n = 0;
    char* data = check_device_array_named(h, name, dt, -1, device, &n);  // (sets n: not in span's arguments)
    return span(data, n, dt, run, i);
  }
  template <class Name> Span read(py::handle g, py::handle p, const Name& name, DType dt, size_t run, size_t i) {
    int64_t n = 0;
    if (!is_cupy(p))  // (as the CPU module's: its shape is read from it)
      throw py::type_error(name() + ": its param is not a cupy.ndarray (got " + type_name(p) + ")");
    char* data = check_device_array_named(g, name, dt, -1, device, &n);
    const auto want = DeviceArrays::shape(p), got = DeviceArrays::shape(g);
    if (got != want) throw py::value_error(name() + ": expected shape " + shape_str(want) + ", got " + shape_str(got));
    return span(data, n, dt, run, i);
  }

 private:
  static Span span(char* data, int64_t n, DType dt, size_t run, size_t i) {
    const auto lo = reinterpret_cast<uintptr_t>(data);
    return {lo, lo + uintptr_t(n) * dtype_size(dt), run, i};
  }
};

void precheck_step(py::list runs) {
  DeviceKind kind;
  step_checks::precheck_runs(runs, kind);
}

}  // namespace

void register_step_checks(py::module_& m) {
  sig::step_prechecks(m, &precheck_step);
}

}  // namespace optkern
