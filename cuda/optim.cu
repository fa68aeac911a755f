// Placeholder: filled in by the issue that owns this feature.
#include <pybind11/pybind11.h>

namespace optkern {
void register_optim(pybind11::module_&) {}
}  // namespace optkern
