// The p-norm (sum |x|^p)^(1/p) of grad_norm for p not in {1, 2, inf} (cpp/reduce.cpp,
// cuda/reduce.cu): the terms taken as |x| 2^-e with 2^e <= max |x| < 2^(e+1) (exact: a power of two),
// the root scaled back by 2^e. Unscaled, 1 / p rounded to double moved pow(sum, 1 / p) by
// ln(sum) / p of its rounding (gradients of 1e+-30: 20-35 ulps off the exact norm) and the sum
// over- or underflowed (float64 gradients past 1e102 at p = 3: an inf norm, clipping zeroed them).
// Scaled, the sum lies in [1, n 2^p]: the norm is off by the terms' and the sum's rounding only.
#pragma once
#include <cmath>

#include "optkern/common.hpp"
#include "optkern/rules/norm.hpp"

namespace optkern {
namespace rules {

// e from max |x| (0 where it is 0, inf or NaN: the unscaled terms give that norm, 0, inf or NaN).
OK_HD int pnorm_exp(double amax) { return finite_(amax) && amax > 0.0 ? scale_exp(amax) : 0; }

// 2^-e as two factors, each in double's range for every e of a finite nonzero max (2^1074 is not):
// x c1 c2 = x 2^-e, exact (a multiply each: ldexp per term cost 40 % more than the pow sum).
struct PnormScale {
  double c1, c2;
};
OK_HD PnormScale pnorm_scale(int e) { return {scale2(1.0, -e / 2), scale2(1.0, -e - (-e / 2))}; }

// |x| 2^-e to the p. p = 3 and 4 by products (two roundings a term: the norm stays within the
// tests' 2 ulps of the exact one): pow cost ~13 ns a term, the p = 3 norm 40x the p = 2 one.
OK_HD double pnorm_term(double x, PnormScale c, double p) {
#if defined(__CUDACC__)
  const double y = fabs((x * c.c1) * c.c2);
#else
  const double y = std::fabs((x * c.c1) * c.c2);
#endif
  const double y2 = y * y;
  if (p == 3.0) return y2 * y;
  if (p == 4.0) return y2 * y2;
#if defined(__CUDACC__)
  return pow(y, p);
#else
  return std::pow(y, p);
#endif
}

// s^(1/p) 2^e with 1 / p = q + ql (q rounded, ql = (1 - p q) / p from an exact fma): s^q s^ql =
// pow(s, q) (1 + ql ln s), the rounding of 1 / p no longer moved by ln s (it was 2.6 ulps at p = 1.5
// for the scaled sum of a thousand terms). 0, inf, NaN sums: pow alone.
OK_HD double pnorm_root(double s, int e, double p) {
#if defined(__CUDACC__)
  const double q = 1.0 / p, t = pow(s, q);
  if (!(s > 0.0) || !finite_(s)) return scale2(t, e);
  return scale2(fma(t, (fma(-p, q, 1.0) / p) * log(s), t), e);
#else
  const double q = 1.0 / p, t = std::pow(s, q);
  if (!(s > 0.0) || !finite_(s)) return scale2(t, e);
  return scale2(std::fma(t, (std::fma(-p, q, 1.0) / p) * std::log(s), t), e);
#endif
}

}  // namespace rules
}  // namespace optkern
