"""optkern.optim's step(closure) passed positionally, as torch's is called."""

import numpy as np
import pytest

import optkern.optim as O


def test_a_closure_passed_as_grads_is_named_as_one():
    """torch's ``opt.step(closure)`` is positional; optkern's first argument is grads: the refusal
    said only "expected an array or a list of arrays, got function"."""
    opt = O.Adam([np.zeros(3)])
    with pytest.raises(TypeError, match=r"grads: got a function; pass a closure as step\(closure=f\)"):
        opt.step(lambda: (0.0, [np.zeros(3)]))
