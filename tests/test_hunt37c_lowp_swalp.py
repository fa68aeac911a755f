"""SWALP's ``bits`` assigned between steps in the constructor's int form (hunt 37c)."""

from __future__ import annotations

import numpy as np


def _run(bits):
    from optkern.swalp import SWALP

    return SWALP([np.linspace(-1, 1, 7, dtype=np.float32)], 0.1, momentum=0.5, bits=bits, seed=3)


def test_swalp_bits_assigned_an_int_between_steps_quantizes_every_word_at_it():
    # The attributes are assignable and checked by the constructor's rules, which take an int
    # (every quantizer's word length): bits = 6 passed that check, then the step raised the
    # unnamed "TypeError: 'int' object is not subscriptable" and state_dict() "'int' object is
    # not iterable". The int now steps as the dict of it does.
    g = np.linspace(0.3, -0.2, 7, dtype=np.float32)
    a, b = _run(8), _run(8)
    for run in (a, b):
        run.step([g])
    a.bits = 6
    b.bits = {"weight": 6, "grad": 6, "momentum": 6}
    for run in (a, b):
        run.step([g])
        run.step([g])
    np.testing.assert_array_equal(a.params[0], b.params[0])
    np.testing.assert_array_equal(a.buffers[0], b.buffers[0])
    assert a.state_dict()["bits"] == b.state_dict()["bits"] == {"weight": 6, "grad": 6, "momentum": 6}


def test_swalp_state_dict_right_after_an_int_bits_is_assigned_loads_back():
    # state_dict() before the next step (no step has normalized the attribute yet) raised
    # "'int' object is not iterable"; its bits load back as the constructor's int form.
    a = _run(8)
    a.step([np.ones(7, np.float32)])
    a.bits = 5
    sd = a.state_dict()
    b = _run(8)
    b.params[0][...] = a.params[0]  # (the params are saved beside the state dict)
    b.load_state_dict(sd)
    a.step([np.ones(7, np.float32)])
    b.step([np.ones(7, np.float32)])
    np.testing.assert_array_equal(a.params[0], b.params[0])
    assert b.state_dict()["bits"] == {"weight": 5, "grad": 5, "momentum": 5}
