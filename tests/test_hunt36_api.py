"""Arguments of the wrong kind named as given: a bool for SWALP's ``bits`` (an int, or a dict of
ints, is wanted), and a dict where a list of arrays is wanted (its keys were taken for the arrays,
and the error named ``params[0]`` / ``grads[0]`` as a str)."""

import numpy as np
import pytest

from optkern import amp, clip, optim, swa, swalp


def _params():
    return [np.ones(4, np.float32), np.ones(3, np.float32)]


@pytest.mark.parametrize("bits", [True, False, 8.0, "8", None])
def test_swalp_bits_of_the_wrong_type_names_bits(bits):
    with pytest.raises(TypeError, match=r"^bits: expected an int .*or a dict") as e:
        swalp.SWALP(_params(), 0.1, bits=bits)
    assert "bits[" not in str(e.value)  # (not one of the dict's keys: none was given)


def test_swalp_bits_dict_entry_still_named_by_key():
    with pytest.raises(TypeError, match=r"^bits\['grad'\]: expected an integer, got bool"):
        swalp.SWALP(_params(), 0.1, bits={"weight": 8, "grad": True, "momentum": 8})


def test_swalp_bits_int_and_dict_still_taken():
    assert swalp.SWALP(_params(), 0.1, bits=6).bits == {"weight": 6, "grad": 6, "momentum": 6}


def test_averaged_params_of_a_dict_names_params():
    params = {"a": np.zeros(3, np.float32)}
    with pytest.raises(TypeError, match=r"^params: expected an array or a list of arrays, got dict"):
        swa.AveragedParams(params)


@pytest.mark.parametrize("make", [lambda p: optim.SGD(p, lr=0.1), lambda p: optim.Adam(p, lr=0.1)])
def test_optimizer_step_with_a_dict_of_grads_names_grads_and_writes_nothing(make):
    p = _params()
    before = [a.copy() for a in p]
    opt = make(p)
    grads = {"w": np.ones(4, np.float32), "b": np.ones(3, np.float32)}
    with pytest.raises(TypeError, match=r"^grads: expected an array or a list of arrays, got dict"):
        opt.step(grads)
    for a, b in zip(p, before):
        np.testing.assert_array_equal(a, b)


def test_dict_of_grads_named_elsewhere_too():
    p = _params()
    grads = {"w": np.ones(4, np.float32), "b": np.ones(3, np.float32)}
    with pytest.raises(TypeError, match=r"^grads: .*got dict"):
        swalp.SWALP(p, 0.1).step(grads)
    with pytest.raises(TypeError, match=r"^grads: .*got dict"):
        clip.clip_grad_norm_(grads, 1.0)
    with pytest.raises(TypeError, match=r"^grads: .*got dict"):
        amp.GradScaler().unscale_(optim.SGD(p, lr=0.1), grads)


def test_lists_tuples_and_generators_still_taken():
    p = _params()
    opt = optim.SGD(p, lr=0.5)
    opt.step(tuple(np.ones_like(a) for a in p))
    opt.step(np.ones_like(a) for a in p)
    np.testing.assert_array_equal(p[0], np.zeros(4, np.float32))
