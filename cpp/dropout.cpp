// optkern._cpu.dropout_: out = x * keep / (1 - p) (rules::dropout: a dropped NaN
// or inf gives NaN), keep regenerated from the Philox stream (seed, offset)
// (philox::keep), so backward is the same call on dy and no mask needs to be
// stored. Optionally writes the uint8 mask.
#include <pybind11/pybind11.h>

#include <type_traits>

#include "half_stage.hpp"
#include "optkern/dropout_args.hpp"
#include "optkern/rules/norm.hpp"
#include "optkern/signatures_random.hpp"
#include "philox_cpu.hpp"
#include "py_arrays.hpp"

namespace optkern {
namespace py = pybind11;

void register_random(py::module_& m);  // random.cpp

namespace {

// T: float, double or a half storage type (half::Half16: loaded to float32, the product rounded to
// nearest even on store, as cuda/dropout.cu does).
template <class T>
void dropout_loop(const T* x, T* y, uint8_t* mask, int64_t n, double p_in, uint64_t seed, uint64_t offset) {
  using C = typename half::Compute<T>::type;
  const philox::DropoutThreshold th = philox::dropout_threshold(p_in);  // the mask's
  const C scale = philox::dropout_scale<C>(p_in);
  // Captures copied to locals and x read unconditionally: the loops then vectorize (a store
  // through y or the mask could otherwise alias a captured value, and a conditional load blocks
  // if-conversion).
  philox::parallel_words(n, offset, seed, 0, 1, [&](int64_t a, const uint32_t* w, int64_t m) {
    const philox::DropoutThreshold k = th;
    const C s = scale;
    const T* xa = x + a;
    T* ya = y + a;
    if constexpr (std::is_same_v<T, C>) {
      for (int64_t j = 0; j < m; ++j) ya[j] = rules::dropout(xa[j], philox::kept(w[j], k), s);
    } else {  // half storage: the batch in float32 (a per-element conversion did not vectorize: 4x slower)
      alignas(64) float b[philox::kFillMax];
      half::load_n(xa, b, m);
      for (int64_t j = 0; j < m; ++j) b[j] = rules::dropout(b[j], philox::kept(w[j], k), s);
      half::store_n(b, ya, m);
    }
    if (uint8_t* const ma = mask ? mask + a : nullptr)
      for (int64_t j = 0; j < m; ++j) ma[j] = uint8_t(philox::kept(w[j], k));
  });
}

void dropout_(py::handle x_h, py::handle out_h, double p, uint64_t seed, uint64_t offset, py::object mask_h) {
  sig::check_dropout_p(p);
  if (!py::isinstance<py::array>(x_h)) throw py::type_error("x: expected a numpy.ndarray");
  const py::dtype dt = float_dtype<HostArrays>(x_h, "x", true);
  const bool f32 = dt.itemsize() == 4, f16 = half::is_half(dt) && !half::is_bf16(dt), bf16 = half::is_bf16(dt);
  py::array x = check_array(x_h, "x", dt, false);
  py::array y = check_array(out_h, "out", dt, true);
  check_size("out", int64_t(x.size()), int64_t(y.size()));
  uint8_t* mask = nullptr;
  if (!mask_h.is_none()) {
    py::array m = check_array(mask_h, "mask", py::dtype::of<uint8_t>(), true);
    check_size("mask", int64_t(x.size()), int64_t(m.size()));
    mask = static_cast<uint8_t*>(m.mutable_data());
  }
  const int64_t n = int64_t(x.size());
  dropout_args::check_overlap(x.data(), y.data(), uint64_t(x.nbytes()), mask, mask ? uint64_t(n) : 0);
  check_philox_counter(n, offset);
  const void* xp = x.data();
  void* yp = y.mutable_data();
  py::gil_scoped_release nogil;
  using F16 = half::Half16<false>;
  using BF16 = half::Half16<true>;
  if (f16) dropout_loop(static_cast<const F16*>(xp), static_cast<F16*>(yp), mask, n, p, seed, offset);
  else if (bf16) dropout_loop(static_cast<const BF16*>(xp), static_cast<BF16*>(yp), mask, n, p, seed, offset);
  else if (f32) dropout_loop(static_cast<const float*>(xp), static_cast<float*>(yp), mask, n, p, seed, offset);
  else dropout_loop(static_cast<const double*>(xp), static_cast<double*>(yp), mask, n, p, seed, offset);
}

}  // namespace

void register_dropout(py::module_& m) {
  sig::dropout(m, &dropout_);
  register_random(m);
}

}  // namespace optkern
