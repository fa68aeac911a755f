// optkern._cpu.swa_lerp_: avg <- lerp(avg, p, w) over lists of float32 or float64 arrays
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

// The weight rounded to T, as torch's _foreach_lerp_ takes a Python float weight for a tensor of T.
template <class T> void lerp_lists(const ArrayList& A, const ArrayList& P, double w) {
  const T wt = T(w);
  const auto chunks = make_chunks(A.size);
  py::gil_scoped_release nogil;
  const auto lerp = [wt](T a, T p) { return rules::lerp(a, p, wt); };
  // (compiled per ISA level; work: the average and the param, parallel.hpp)
  for_each_chunk(chunks, 2 * total_size(A.size), [&](const Chunk& c) {
    zip_loop<T>(lerp, A.ptr<T>(size_t(c.tensor)) + c.start, P.ptr<T>(size_t(c.tensor)) + c.start, c.len);
  });
}

void swa_lerp(py::handle avgs, py::handle params, double w) {
  const py::dtype dt = list_dtype(avgs, "averages");
  swa::LerpCall<HostArrays> call{dt};
  swa::gather_lerp(call, avgs, params, w);
  if (dt.equal(py::dtype::of<double>()))
    lerp_lists<double>(call.avgs, call.params, w);
  else
    lerp_lists<float>(call.avgs, call.params, w);
}

}  // namespace

void register_swa(py::module_& m) {
  sig::swa(m, &swa_lerp);
}

}  // namespace optkern
