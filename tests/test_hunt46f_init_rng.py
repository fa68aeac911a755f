"""optkern.init.make_rng (public) checks ``xp`` as the return-new initializers do: TypeError naming xp
unless it is the numpy or cupy module. A string, None or another module raised an unnamed
AttributeError ('str' object has no attribute 'random') with a seed, and was accepted silently
with a Generator (which then served an array module it was never checked against)."""

import math

import numpy as np
import pytest

from optkern import init


@pytest.mark.parametrize("xp", ["numpy", None, math, np.random])
@pytest.mark.parametrize("rng", [0, None, "generator"])
def test_make_rng_refuses_what_is_no_array_module(xp, rng):
    if rng == "generator":
        rng = np.random.default_rng(0)
    with pytest.raises(TypeError, match=r"^xp: expected the numpy or cupy module, got "):
        init.make_rng(rng, xp)
    with pytest.raises(TypeError, match=r"^xp: expected the numpy or cupy module, got "):
        init.kaiming_uniform((2, 3), rng=rng, xp=xp)


def test_make_rng_still_makes_numpy_generators():
    a = init.make_rng(7, np).random(4)
    np.testing.assert_array_equal(a, np.random.default_rng(7).random(4))
    g = np.random.default_rng(1)
    assert init.make_rng(g, np) is g and init.make_rng(g) is g
    with pytest.raises(ValueError, match=r"^rng: must be >= 0"):
        init.make_rng(-1, np)
