"""SAM defects (41st hunt, e)."""

import numpy as np
import pytest

from optkern.optim import SAM, SGD


@pytest.mark.parametrize("at", ["w", "ascent"])
def test_step_names_the_closure_for_a_non_contiguous_gradient(at):
    # The native ascent step (at w) and the wrapped optimizer (at the ascent point) refused it as
    # "grads[1]: array must be C-contiguous": SAM.step has no grads argument, its closure returned them.
    x, y = np.ones(6), np.ones(3)
    opt = SAM(SGD([x, y], lr=0.1), rho=0.5)
    calls = []

    def closure():
        calls.append(1)
        g = np.arange(6.0)[::2] if at == "w" or len(calls) == 2 else np.ones(3)
        return 1.0, [np.ones(6), g]

    with pytest.raises(ValueError, match=r"^closure: grads\[1\]: array must be C-contiguous"):
        opt.step(closure)
    np.testing.assert_array_equal(x, np.ones(6))
    np.testing.assert_array_equal(y, np.ones(3))
    assert not opt._perturbed


def test_first_and_second_step_name_grads():
    x = np.ones(6)
    opt = SAM(SGD([x], lr=0.1), rho=0.5)
    with pytest.raises(ValueError, match=r"^grads\[0\]: array must be C-contiguous"):
        opt.first_step([np.ones(12)[::2]])
    opt.first_step([np.ones(6)])
    with pytest.raises(ValueError, match=r"^grads\[0\]: array must be C-contiguous"):
        opt.second_step([np.ones(12)[::2]])
    opt.second_step([np.ones(6)])
    assert not opt._perturbed
