// optkern._cpu.swa_lerp_: avg <- lerp(avg, p, w) over lists of float32 arrays
// in one pass (SWA: w = 1 / (n + 1); EMA: w = 1 - decay), with the rule's
// two-sided lerp (rules/optim.hpp), which is torch._foreach_lerp_'s formula. The
// signature and checks are optkern/swa_args.hpp's, shared with cuda/swa.cu.
#include <pybind11/pybind11.h>

#include "multi_tensor.hpp"
#include "optkern/rules/optim.hpp"
#include "optkern/swa_args.hpp"

namespace optkern {
namespace py = pybind11;

namespace {

void swa_lerp(py::handle avgs, py::handle params, double w) {
  swa::LerpCall<HostArrays> call;
  swa::gather_lerp(call, avgs, params);
  const ArrayList& A = call.avgs;
  const ArrayList& P = call.params;
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
  sig::swa(m, &swa_lerp);
}

}  // namespace optkern
