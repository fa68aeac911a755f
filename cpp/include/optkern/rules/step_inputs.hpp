// What a capturable step's device-held inputs (its counters and lr_buffer) must be for its rule to
// write finite values, as predicates evaluated on both sides: the host checks raise with them,
// naming the argument (signatures_optim_checks.hpp: check_lr_buffer, check_counters,
// check_mu_product; the CPU reads these buffers), and a capturable CUDA step's kernels refuse with
// them (cuda/multi_tensor.cuh: DeviceStep), where no host reads the buffers (graph capture, no
// synchronization): the update and the counters' advance are skipped, as for GradScaler's found_inf.
#pragma once
#include <type_traits>

#include "optkern/common.hpp"
#include "optkern/ranges.hpp"
#include "optkern/rules/optim.hpp"

namespace optkern {
namespace rules {

// NAdam's mu_product: a product of momentum factors in [0, 1), 1 before the first step -- or up to a
// float32 ulp above 1 (signatures_optim_checks.hpp's check_mu_product says why).
OK_HD constexpr checks::Range mu_product_range() { return checks::Range{0.0, 1.0 + 0x1p-23, false, false}; }

// Whether mu_product can start step t of NAdam (hyper-parameters h): in its range and, above 1,
// only where the product this step makes, mu_product * mu_t, stays below 1 in float32.
OK_HD bool mu_product_starts(double mu_product, const NAdamHyper& h, double t) {
  return checks::within(mu_product, mu_product_range()) &&
         (mu_product <= 1.0 || static_cast<float>(mul_rn(mu_product, NAdam<double>::mu_at(h, t))) < 1.0f);
}

// What a capturable step checks of its device buffers, filled on the host from the step's
// description (signatures_optim.hpp): the range of the hyper-parameter lr_buffer replaces, whether
// its rule rounds that value to float32 (float32 arrays, float32_lr), and how many counters its
// rule reads (D::kCounters: 0 none, 1 the step, 2 the step and NAdam's mu_product).
struct BufferChecks {
  checks::Range lr_range;
  bool lr_f32;
  int counted;
};

// lr_buffer's value: in the range of the lr it replaces and finite in the dtype its rule rounds it to.
OK_HD bool lr_buffer_ok(double lr, const BufferChecks& c) {
  return checks::within(lr, c.lr_range) && checks::finite_in(lr, c.lr_f32);
}

// The device counters [steps taken(, mu_product)]: the step they make, counters[0] + 1, a step count,
// and NAdam's mu_product one that can start it.
template <class Hyper> OK_HD bool counters_ok(const double* counters, const BufferChecks& c, const Hyper& h) {
  const double t = counters[0] + 1.0;
  if (c.counted >= 1 && !checks::is_step(t)) return false;
  if constexpr (std::is_same_v<Hyper, NAdamHyper>) {
    if (c.counted == 2) return mu_product_starts(counters[1], h, t);
  }
  return true;
}

}  // namespace rules
}  // namespace optkern
