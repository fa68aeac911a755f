"""Defects found by the 41st session's optimizer hunt (optkern.optim): each test failed before its fix."""

from __future__ import annotations

import numpy as np
import pytest

import optkern.optim as oo


@pytest.mark.parametrize("cls", [oo.Adam, oo.AdamW, oo.NAdam])
@pytest.mark.parametrize(
    "betas",
    [{0.999, 0.9}, frozenset({0.999, 0.9}), {0.999: 0, 0.9: 1}, {0.9: 0, 0.999: 1}.keys()],
    ids=["set", "frozenset", "dict", "keys"],
)
def test_betas_without_an_order_refused(cls, betas):
    """A set (or a dict) has no order of its own: ``betas={0.999, 0.9}`` unpacked as beta1 = 0.999,
    beta2 = 0.9 (the set's iteration order), swapping them silently. torch's ``betas[0]`` refuses it."""
    with pytest.raises(TypeError, match=r"betas: expected a sequence \(beta1, beta2\)"):
        cls([np.ones(3)], betas=betas)
    opt = cls([np.ones(3)])
    opt.param_groups[0]["betas"] = betas
    p = opt.param_groups[0]["params"][0].copy()
    with pytest.raises(TypeError, match=r"param_groups\[0\]\['betas'\]: expected a sequence"):
        opt.step([np.ones(3)])
    np.testing.assert_array_equal(opt.param_groups[0]["params"][0], p)


def test_betas_functional_and_sequences_still_taken():
    """Tuples, lists and a two-element array stay accepted, in their order."""
    for betas in ((0.5, 0.75), [0.5, 0.75], np.array([0.5, 0.75])):
        hp = oo.Adam([np.ones(2)], betas=betas)._check({**oo.Adam([np.ones(2)]).defaults, "betas": betas}, "")
        assert (hp.beta1, hp.beta2) == (0.5, 0.75)


@pytest.mark.parametrize("cls, kw", [(oo.Adam, {}), (oo.SGD, {"momentum": 0.9}), (oo.Adagrad, {})])
def test_replaced_param_of_another_shape_than_its_state_refused(cls, kw):
    """A param replaced in its group's list by an array of its size but another shape stepped with
    the old state (sizes compared only), and the optimizer's own state_dict() then failed to load
    back (state shape (6,) against param (2, 3)): refused at the step, before anything is written."""
    ps = [np.ones(6), np.ones(3)]
    opt = cls(ps, lr=0.1, **kw)
    opt.step([np.ones(6), np.ones(3)])
    new = np.zeros((2, 3))
    opt.param_groups[0]["params"][0] = new
    before = [s.copy() for s in opt.state_dict()["state"][0].values() if isinstance(s, np.ndarray)]
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['params'\]\[0\]: expected shape \(6,\)"):
        opt.step([np.ones((2, 3)), np.ones(3)])
    np.testing.assert_array_equal(new, 0.0)
    after = [s for s in opt.state_dict()["state"][0].values() if isinstance(s, np.ndarray)]
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)
    opt.param_groups[0]["params"][0] = np.ones(6)  # its shape again: steps, and round-trips
    opt.step([np.ones(6), np.ones(3)])
    opt.load_state_dict(opt.state_dict())


def test_replaced_param_of_another_shape_before_any_state_taken():
    """Before a param has state (no step yet) any array of the optimizer's kind may replace it."""
    opt = oo.Adam([np.ones(6)], lr=0.1)
    opt.param_groups[0]["params"][0] = np.ones((2, 3))
    opt.step([np.ones((2, 3))])
    opt.load_state_dict(opt.state_dict())


@pytest.mark.parametrize("cls", [oo.SGD, oo.Adam, oo.NAdam, oo.AdagradNorm])
def test_group_of_two_dtypes_refused_when_added(cls):
    """One native call steps a group's params in one dtype: a group of float64 and float32 params was
    taken by the constructor and then every step raised "params[1]: expected float64, got float32"
    (the optimizer could never step). Refused where the group is added, naming the param."""
    with pytest.raises(TypeError, match=r"param_groups\[0\]\['params'\]\[1\]: float32, where the group's"):
        cls([np.ones(3), np.ones(3, np.float32)], lr=0.1)
    opt = cls([np.ones(3)], lr=0.1)
    with pytest.raises(TypeError, match=r"param_groups\[1\]\['params'\]\[1\]: float64, where the group's"):
        opt.add_param_group({"params": [np.ones(2, np.float32), np.ones(2)]})
    assert len(opt.param_groups) == 1
    opt.add_param_group({"params": [np.ones(2, np.float32)]})  # a group of its own: steps
    opt.step([np.ones(3), np.ones(2, np.float32)])


def test_replaced_param_of_another_dtype_than_its_group_named():
    """A param replaced in place by one of another dtype: named as the group's entry at the step,
    before anything is written (was "params[1]: expected float32, got float64": the other param)."""
    ps = [np.ones(3), np.ones(3)]
    opt = oo.Adam(ps, lr=0.1)
    new = np.ones(3, np.float32)
    opt.param_groups[0]["params"][0] = new
    with pytest.raises(TypeError, match=r"param_groups\[0\]\['params'\]\[0\]: float32, where the group's"):
        opt.step([np.ones(3, np.float32), np.ones(3)])
    np.testing.assert_array_equal(new, 1.0)
    np.testing.assert_array_equal(ps[1], 1.0)


def test_half_params_of_both_kinds_still_share_a_group():
    """With master_weights the step computes in float32 for float16 and bfloat16 params alike."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    a, b = np.ones(3, np.float16), np.ones(3, ml_dtypes.bfloat16)
    opt = oo.Adam([a, b], lr=0.1, master_weights=True)
    opt.step([np.ones(3, np.float16), np.ones(3, ml_dtypes.bfloat16)])
    assert (a < 1).all() and (b < 1).all()


def test_params_in_a_set_refused():
    """Torch tensors are hashable: a set of them was taken as the params in the set's iteration order
    (by hash, another at each run), and grads are matched to params by position. torch refuses a set
    ("organized in ordered collections"); so does optkern, naming the argument."""
    torch = pytest.importorskip("torch")
    a, b = torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    with pytest.raises(TypeError, match=r"params: .*set.*ordered"):
        oo.SGD({a, b}, lr=0.1)
    with pytest.raises(TypeError, match=r"param_groups\[0\]\['params'\]: .*frozenset.*ordered"):
        oo.SGD([{"params": frozenset({a, b})}], lr=0.1)
    opt = oo.SGD([a], lr=0.1)
    with pytest.raises(TypeError, match=r"param_groups\[1\]\['params'\]: .*set.*ordered"):
        opt.add_param_group({"params": {b}})
    assert len(opt.param_groups) == 1


@pytest.mark.parametrize(
    "lowp", [{"state_dtype": "int8"}, {"state_dtype": "bfloat16"}, {"master_weights": True}], ids=str
)
def test_capturable_with_low_precision_refused_however_asked(lowp):
    """Low-precision steps have no capturable variant: the constructor refused ``capturable=True`` only
    when it was that very object, so ``np.True_``, a group's ``"capturable": True`` or one set between
    steps reached the capturable path, whose low-precision step ignores the device counters (CuPy:
    the counters never advanced, and leaving capturable mode reset the step count to them). Refused
    in the group check, for every way of asking (NumPy params show the same message)."""
    dt = np.float16 if lowp.get("master_weights") else np.float32
    msg = r"capturable'?\]?: not supported with master_weights or a compact state_dtype"
    with pytest.raises(ValueError, match=msg):
        oo.Adam([np.ones(3, dt)], capturable=True, **lowp)
    with pytest.raises(ValueError, match=msg):
        oo.Adam([np.ones(3, dt)], capturable=np.True_, **lowp)
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['capturable'\]: not supported with master"):
        oo.Adam([{"params": [np.ones(3, dt)], "capturable": True}], **lowp)
    opt = oo.SGD([np.ones(3, dt)], lr=0.1, momentum=0.9, **lowp)
    opt.step([np.ones(3, dt)])
    opt.param_groups[0]["capturable"] = True
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['capturable'\]: not supported with master"):
        opt.step([np.ones(3, dt)])


@pytest.mark.parametrize("params", [None, 3, 2.5], ids=["None", "int", "float"])
def test_params_not_iterable_named(params):
    """``SGD(None)`` raised Python's "'NoneType' object is not iterable", naming no argument."""
    with pytest.raises(TypeError, match=r"^params: expected a list of arrays or a list of dicts, got"):
        oo.SGD(params, lr=0.1)
