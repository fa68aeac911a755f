// optkern._cpu.swa_lerp_: avg <- lerp(avg, p, w) over lists of float32 arrays
// in one pass (SWA: w = 1 / (n + 1); EMA: w = 1 - decay), with the rule's
// two-sided lerp (rules/optim.hpp), which is torch._foreach_lerp_'s formula.
#include <pybind11/pybind11.h>

#include "multi_tensor.hpp"
#include "optkern/rules/optim.hpp"

namespace optkern {
namespace py = pybind11;

namespace {

void swa_lerp(py::handle avgs, py::handle params, double w) {
  const ArrayList A = gather(avgs, "averages", py::dtype::of<float>(), true);
  const ArrayList P = gather(params, "params", py::dtype::of<float>(), false, &A.size);
  check_no_overlap({{"averages", &A, true}, {"params", &P, false}}, 4);
  const float wf = float(w);
  const auto chunks = make_chunks(A.size);
  py::gil_scoped_release nogil;
  for_each_chunk(chunks, total_size(A.size), [&](const Chunk& c) {
    float* a = A.ptr<float>(size_t(c.tensor)) + c.start;
    const float* p = P.ptr<float>(size_t(c.tensor)) + c.start;
#pragma omp simd
    for (int64_t i = 0; i < c.len; ++i) a[i] = rules::lerp(a[i], p[i], wf);
  });
}

}  // namespace

void register_swa(py::module_& m) {
  m.def("swa_lerp_", &swa_lerp, py::arg("averages"), py::arg("params"), py::arg("weight"),
        "averages[i] <- lerp(averages[i], params[i], weight), float32, one pass.");
}

}  // namespace optkern
