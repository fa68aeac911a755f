// The activations by number (rules/activation.hpp has their math): alone, so that the bindings'
// signatures (signatures.hpp, in most translation units) do not recompile with the math.
#pragma once

namespace optkern {
namespace rules {

enum class Act : int { identity = 0, tanh = 1, relu = 2, gelu = 3, sigmoid = 4, softplus = 5 };
constexpr int kNumAct = 6;

}  // namespace rules
}  // namespace optkern
