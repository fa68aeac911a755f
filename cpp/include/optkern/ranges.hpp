// A real argument's range, and the tests of a value against it, in code both native modules and
// CUDA device code can run: the host checks (scalar_checks.hpp) raise with these tests' verdicts,
// and a capturable CUDA step's device guard (rules/step_inputs.hpp) refuses with the same ones.
// Comparisons only (no isfinite): the same in host code, device code and the emulator.
#pragma once
#include <limits>

#include "optkern/common.hpp"

namespace optkern {
namespace checks {

inline constexpr double kInf = std::numeric_limits<double>::infinity();

// A real argument's range: finite, and in [lo, hi], an end open where asked (an infinite end is
// always open: infinities are never allowed).
struct Range {
  double lo = -kInf, hi = kInf;
  bool lo_open = true, hi_open = true;
};
inline constexpr Range kFinite{};                           // any finite value
inline constexpr Range kNonnegative{0.0, kInf, false, true};  // [0, inf)
inline constexpr Range kPositive{0.0, kInf, true, true};      // (0, inf)
inline constexpr Range kUnit{0.0, 1.0, false, false};         // [0, 1]
inline constexpr Range kBelowOne{0.0, 1.0, false, true};      // [0, 1): a beta
inline constexpr Range kAboveZeroToOne{0.0, 1.0, true, false};  // (0, 1]: a 1 - beta, a bias correction
// The entry of a bool argument in a table of ranges (bools are checked by `flag`).
inline constexpr Range kFlag{};

// Neither NaN nor an infinity.
OK_HD bool finite(double v) { return v >= -1.7976931348623157e308 && v <= 1.7976931348623157e308; }

// Finite once rounded to float32 (f32) or kept as a double: a double above float32's max by more
// than half an ulp rounds to inf there (1e39).
OK_HD bool finite_in(double v, bool f32) {
  return f32 ? finite(double(static_cast<float>(v))) : finite(v);
}

OK_HD bool within(double v, const Range& r) {
  return finite(v) && !(v < r.lo || (r.lo_open && v == r.lo) || v > r.hi || (r.hi_open && v == r.hi));
}

// A step count as the rules take it (a double): an integer from 1 to 2**53, where doubles stop
// counting exactly (the Python layer's bound, optim/_state_checks._MAX_STEP). Step 0 made every
// bias correction 1 - beta^0 = 0, and the step divided by it. (The cast is exact in that range.)
OK_HD bool is_step(double t) {
  return t >= 1.0 && t <= 9007199254740992.0 && double(static_cast<long long>(t)) == t;
}

}  // namespace checks
}  // namespace optkern
