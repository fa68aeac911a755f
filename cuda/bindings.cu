// The optkern._cuda module. Each feature file registers its own functions
// (same names and signatures as optkern._cpu, on CuPy arrays).
#include <cuda_runtime.h>
#include <pybind11/pybind11.h>

namespace py = pybind11;

namespace optkern {
void register_optim(py::module_& m);       // optim.cu
void register_reduce(py::module_& m);      // reduce.cu
void register_norm(py::module_& m);        // norm.cu
void register_dropout(py::module_& m);     // dropout.cu
void register_nn(py::module_& m);          // nn.cu
void register_linalg(py::module_& m);      // linalg.cu
void register_regularize(py::module_& m);  // regularize.cu
void register_lbfgs(py::module_& m);       // lbfgs.cu
void register_sam(py::module_& m);         // sam.cu
void register_cg(py::module_& m);          // cg.cu
void register_lowp_step(py::module_& m);   // lowp_step.cu
void register_lowp(py::module_& m);        // lowp.cu
void register_swa(py::module_& m);         // swa.cu
void register_amp(py::module_& m);         // amp.cu
void register_step_checks(py::module_& m); // step_checks.cu
}  // namespace optkern

static int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // no driver or no device: report zero
    return 0;
  }
  return n;
}

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "optkern CUDA kernels";
  m.def("device_count", &device_count, "Number of visible CUDA devices (0 without a driver).");
  m.def("runtime_version", [] { int v = 0; cudaRuntimeGetVersion(&v); return v; });
  optkern::register_optim(m);
  optkern::register_reduce(m);
  optkern::register_norm(m);
  optkern::register_dropout(m);
  optkern::register_nn(m);
  optkern::register_linalg(m);
  optkern::register_regularize(m);
  optkern::register_lbfgs(m);
  optkern::register_sam(m);
  optkern::register_cg(m);
  optkern::register_lowp_step(m);
  optkern::register_lowp(m);
  optkern::register_swa(m);
  optkern::register_amp(m);
  optkern::register_step_checks(m);
}
