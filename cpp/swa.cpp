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
  swa::gather_lerp(call, avgs, params, w);
  const ArrayList& A = call.avgs;
  const ArrayList& P = call.params;
  const float wf = float(w);
  const auto chunks = make_chunks(A.size);
  py::gil_scoped_release nogil;
  const auto lerp = [wf](float a, float p) { return rules::lerp(a, p, wf); };
  // (compiled per ISA level; work: the average and the param, parallel.hpp)
  for_each_chunk(chunks, 2 * total_size(A.size), [&](const Chunk& c) {
    zip_loop<float>(lerp, A.ptr<float>(size_t(c.tensor)) + c.start, P.ptr<float>(size_t(c.tensor)) + c.start, c.len);
  });
}

}  // namespace

void register_swa(py::module_& m) {
  sig::swa(m, &swa_lerp);
}

}  // namespace optkern
