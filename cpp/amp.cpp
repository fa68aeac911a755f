// optkern._cpu's GradScaler kernels (rules/amp.hpp), the twins of cuda/amp.cu (signatures and
// checks in optkern/amp_args.hpp): amp_unscale_ writes found_inf into a 1-element array (and
// amp_check_ likewise, for grads of any format, without writing them);
// amp_update_scale_ updates the scale and growth tracker held in 1-element arrays.
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "multi_tensor.hpp"
#include "optkern/amp_args.hpp"
#include "optkern/rules/amp.hpp"
#include "py_arrays.hpp"

namespace optkern {
namespace py = pybind11;

namespace {

// g <- g * c for every array, and whether any element (before scaling) is inf or NaN: one
// pass (torch's _amp_foreach_non_finite_check_and_unscale_), compiled per ISA level.
bool unscale_lists(const ArrayList& G, float c) {
  const auto chunks = make_chunks(G.size);
  std::vector<int> bad(chunks.size(), 0);
  {
    py::gil_scoped_release nogil;
    for_each_chunk(chunks, total_size(G.size), [&](const Chunk& ch) {
      const auto scale = [c](float g) { return rules::unscale(g, c); };
      const auto nonfinite = [](float g) { return rules::nonfinite(g); };
      bad[size_t(&ch - chunks.data())] =
          map_check_loop<float>(scale, nonfinite, G.ptr<float>(size_t(ch.tensor)) + ch.start, ch.len) ? 1 : 0;
    });
  }
  for (int b : bad)
    if (b) return true;
  return false;
}

// Whether any element of the grads (format F, stored as T: float32, or a half's bits) is inf or
// NaN, read only: the count through the module's one deterministic reduction (sum_lists).
template <lowp::Fmt F, class T> bool any_nonfinite(const ArrayList& G) {
  return sum_lists<T>([](T v, T) { return rules::nonfinite(lowp::load<F>(&v, 0)) ? 1.0 : 0.0; }, G, G) != 0.0;
}

void amp_check(py::handle grads, const std::string& grad_dtype, py::handle found_inf) {
  amp::CheckCall<HostArrays> c;
  amp::gather_check(c, grads, grad_dtype, found_inf);
  const bool bad = c.fmt == lowp::Fmt::f32    ? any_nonfinite<lowp::Fmt::f32, float>(c.grads)
                   : c.fmt == lowp::Fmt::bf16 ? any_nonfinite<lowp::Fmt::bf16, uint16_t>(c.grads)
                                              : any_nonfinite<lowp::Fmt::f16, uint16_t>(c.grads);
  if (bad) c.found_inf[0] = 1.0f;
}

void amp_unscale(py::handle grads, py::handle scale, py::handle found_inf) {
  amp::UnscaleCall<HostArrays> c;
  amp::gather_unscale(c, grads, scale, found_inf);
  if (unscale_lists(c.grads, rules::inv_scale(c.scale[0]))) c.found_inf[0] = 1.0f;
}

void amp_update_scale(py::handle scale, py::handle tracker, py::handle found_inf, double growth, double backoff,
                      int64_t interval) {
  amp::UpdateCall<HostArrays> c;
  amp::gather_update(c, scale, tracker, found_inf, growth, backoff, interval);
  rules::update_scale(*c.scale, *c.tracker, c.found_inf[0] != 0.0f, growth, backoff, interval);
}

}  // namespace

void register_amp(py::module_& m) {
  sig::amp(m, &amp_unscale, &amp_check, &amp_update_scale);
}

}  // namespace optkern
