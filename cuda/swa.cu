// optkern._cuda.swa_lerp_: averages <- lerp(averages, params, weight) over lists of float32 or
// float64 CuPy arrays, through the multi-tensor kernel (multi_tensor.cuh) with the CPU's rule
// (rules::lerp, cpp/swa.cpp) and the CPU's checks (optkern/swa_args.hpp). rules::lerp rounds
// through explicit fmas only, so the GPU's bits are the CPU's whatever either compiler fuses (and
// neither fuses on its own: cuda/CMakeLists.txt passes --fmad=false, the CPU -ffp-contract=off).
#include <pybind11/pybind11.h>

#include "cuda_arrays.hpp"
#include "multi_tensor.cuh"
#include "optkern/rules/optim.hpp"
#include "optkern/swa_args.hpp"

namespace optkern {
namespace {

// v[0]: the average (written), v[1]: the param.
// (T: float or double; the weight rounded to T, as on the CPU)
template <class T> struct LerpOp {
  static constexpr int kDepth = 2;
  static constexpr unsigned kWritten = 1u;
  T w;
  __device__ LerpOp load() const { return *this; }
  __device__ void operator()(T* v) const { v[0] = rules::lerp(v[0], v[1], w); }
};

void swa_lerp(py::handle averages, py::handle params, double w) {
  const DType dt = float_dtype_of(averages, "averages");
  swa::LerpCall<DeviceArrays> c{dt};
  swa::gather_lerp(c, averages, params, w);
  int64_t n = 0;
  for (int64_t k : c.avgs.size) n += k;
  if (n == 0) return;  // nothing to launch: needs neither CuPy's stream nor a device
  require_current_device(c.args.device, "averages");
  const cudaStream_t s = current_stream();
  const mt::Lists<2> lists{&c.avgs, &c.params};
  py::gil_scoped_release nogil;
  if (dt == DType::f64)
    mt::launch_apply<double>(LerpOp<double>{w}, lists, s);
  else
    mt::launch_apply<float>(LerpOp<float>{float(w)}, lists, s);
}

}  // namespace

void register_swa(py::module_& m) { sig::swa(m, &swa_lerp); }

}  // namespace optkern
