"""Bad input raises a clear TypeError/ValueError naming the argument, and changes nothing."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

import optkern.functional as F
import optkern.optim as O
from optim_registry import BY_NAME, OPTIMIZERS


def _setup(dtype=np.float32, shapes=(3, 1000, 7)):
    rng = np.random.default_rng(0)
    params = [rng.standard_normal(n).astype(dtype) for n in shapes]
    grads = [rng.standard_normal(n).astype(dtype) for n in shapes]
    return params, grads


def _snapshot(params, opt=None):
    return pickle.dumps(([p.copy() for p in params], opt.state_dict() if opt else None))


@pytest.fixture
def adam():
    params, grads = _setup()
    opt = O.Adam(params, lr=0.01)
    opt.step(grads)  # state exists, so a failed step must leave it alone too
    return params, grads, opt


@pytest.mark.parametrize(
    "mutate,exc,msg",
    [
        (lambda g, p: g[:-1], ValueError, r"grads: expected 3 arrays \(one per parameter\), got 2"),
        (lambda g, p: g[:1] + [g[1][:999]] + g[2:], ValueError, r"grads\[1\]: expected 1000 elements, got 999"),
        (lambda g, p: g[:2] + [g[2].astype(np.float64)], TypeError, r"grads\[2\]: expected float32, got float64"),
        (lambda g, p: g[:1] + [np.repeat(g[1], 2)[::2]] + g[2:], ValueError, r"grads\[1\]: array must be C-contiguous"),
        (lambda g, p: [p[0]] + g[1:], ValueError, r"grads\[0\] shares memory with params\[0\]"),
        (lambda g, p: g[:1] + [list(g[1])] + g[2:], TypeError, r"grads\[1\]: expected a numpy.ndarray, got list"),
        (lambda g, p: g[:2] + [g[2].astype(np.int32)], TypeError, r"grads\[2\]: expected float32, got int32"),
        (
            lambda g, p: g[:1] + [g[1].reshape(10, 100)] + g[2:],
            ValueError,
            r"grads\[1\]: expected shape \(1000,\), got \(10, 100\)",
        ),
    ],
)
def test_bad_grads(adam, mutate, exc, msg):
    params, grads, opt = adam
    before = _snapshot(params, opt)
    with pytest.raises(exc, match=msg):
        opt.step(mutate(grads, params))
    assert _snapshot(params, opt) == before


def test_misaligned_grad():
    params, grads = _setup()
    buf = np.zeros(1000 * 4 + 1, np.uint8)
    bad = np.frombuffer(buf.data, dtype=np.float32, count=1000, offset=1)
    opt = O.SGD(params, lr=0.1)
    before = _snapshot(params)
    with pytest.raises(ValueError, match=r"grads\[1\]: array data is misaligned"):
        opt.step([grads[0], bad, grads[2]])
    assert _snapshot(params) == before


@pytest.mark.parametrize("groups", [1, 2], ids=["one_native_call", "two_native_calls"])
def test_grad_of_another_shape(groups):
    p = np.ones((2, 3))
    params = [p] if groups == 1 else [np.ones(4), p]
    opt = O.SGD(params if groups == 1 else [{"params": params[:1]}, {"params": params[1:]}], lr=0.1)
    i = groups - 1
    grads = [np.ones(4)] * i + [np.ones((3, 2))]
    with pytest.raises(ValueError, match=rf"^grads\[{i}\]: expected shape \(2, 3\), got \(3, 2\)$"):
        opt.step(grads)
    assert all((q == 1).all() for q in params)


def _misaligned(n, dtype=np.float32):
    size = np.dtype(dtype).itemsize
    return np.frombuffer(np.zeros(n * size + 1, np.uint8).data, dtype=dtype, count=n, offset=1)


@pytest.mark.parametrize(
    "spoil,msg",
    [
        (
            lambda opt, params: setattr(params[2].flags, "writeable", False),
            # (named by its group and place, as a param put into the list is: hunt 51f)
            r"^param_groups\[1\]\['params'\]\[1\]: array is read-only",
        ),
        (
            lambda opt, params: setattr(opt.state_dict()["state"][2]["exp_avg_sq"].flags, "writeable", False),
            r"^state\[2\]\['exp_avg_sq'\]: array is read-only",
        ),
        (
            lambda opt, params: opt.param_groups[1]["params"].__setitem__(1, _misaligned(7)),
            # (an array put into a group's list is named by its place there: hunt 50b)
            r"^param_groups\[1\]\['params'\]\[1\]: array data is misaligned",
        ),
    ],
)
def test_every_param_and_state_array_is_checked_before_any_write(spoil, msg):
    """Group 1's arrays are checked before group 0's native call writes (and creates state)."""
    params, grads = _setup()
    opt = O.Adam([{"params": params[:1]}, {"params": params[1:]}], lr=0.01)
    opt.step(grads)
    spoil(opt, params)
    before = _snapshot(params, opt)
    with pytest.raises(ValueError, match=msg):
        opt.step(grads)
    assert _snapshot(params, opt) == before


def test_read_only_param_of_a_later_group_creates_no_state():
    params, grads = _setup()
    opt = O.Adam([{"params": params[:2]}, {"params": params[2:]}], lr=0.01)
    params[2].flags.writeable = False
    before = _snapshot(params, opt)
    with pytest.raises(ValueError, match=r"^param_groups\[1\]\['params'\]\[0\]: array is read-only"):
        opt.step(grads)
    assert _snapshot(params, opt) == before
    assert opt.state_dict()["state"] == {}


def test_read_only_and_bad_params_rejected_at_construction():
    params, _ = _setup()
    params[1].flags.writeable = False
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['params'\]\[1\]: array is read-only"):
        O.Adam(params)
    with pytest.raises(TypeError, match=r"\['params'\]\[0\]: expected float32 or float64, got int64"):
        O.Adam([np.zeros(3, np.int64)])
    with pytest.raises(ValueError, match="C-contiguous"):
        O.Adam([np.zeros((4, 4))[:, 0]])
    with pytest.raises(ValueError, match=r"^param_groups\[1\]\['params'\]\[0\]: array data is misaligned"):
        O.Adam([{"params": params[:1]}, {"params": [_misaligned(4)]}])
    with pytest.raises(ValueError, match="empty parameter list"):
        O.Adam([])
    p = np.zeros(3)
    with pytest.raises(ValueError, match="more than one parameter group"):
        O.Adam([{"params": [p]}, {"params": [p]}])


BAD_HYPER = [(info.name, kw, msg) for info in OPTIMIZERS for kw, msg in info.invalid]


@pytest.mark.parametrize("name,kw,msg", BAD_HYPER, ids=[f"{n}-{kw}" for n, kw, _ in BAD_HYPER])
def test_bad_hyper_parameters_of_every_optimizer(name, kw, msg):
    params, _ = _setup()
    with pytest.raises((ValueError, TypeError), match=msg):
        BY_NAME[name].cls(params, **kw)


def test_bad_hyper_parameter_of_a_later_group_is_named():
    params, _ = _setup()
    with pytest.raises(ValueError, match=r"param_groups\[1\]\['lr'\]"):
        O.Adam([{"params": params[:1]}, {"params": params[1:], "lr": -2.0}])


def test_hyper_parameter_changed_to_bad_value_is_caught_at_step(adam):
    params, grads, opt = adam
    opt.param_groups[0]["betas"] = (0.9, 1.0)
    before = _snapshot(params, opt)
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['betas'\]\[1\]"):
        opt.step(grads)
    assert _snapshot(params, opt) == before


def test_every_group_is_checked_before_any_write():
    params, grads = _setup()
    opt = O.SGD([{"params": params[:2]}, {"params": params[2:]}], lr=0.1, momentum=0.9)
    opt.step(grads)
    before = _snapshot(params, opt)
    opt.param_groups[1]["lr"] = -1.0
    with pytest.raises(ValueError, match=r"param_groups\[1\]\['lr'\]"):
        opt.step(grads)
    opt.param_groups[1]["lr"] = 0.1
    with pytest.raises(TypeError, match=r"grads\[2\]: expected float32, got float64"):
        opt.step(grads[:2] + [grads[2].astype(np.float64)])
    with pytest.raises(ValueError, match=r"grads\[2\] shares memory"):
        opt.step(grads[:2] + [params[2]])
    with pytest.raises(ValueError, match=r"grads\[2\] shares memory"):
        opt.step(grads[:2] + [opt.state_dict()["state"][2]["momentum_buffer"]])
    with pytest.raises(ValueError, match=r"grads\[2\]: expected shape \(7,\), got \(1, 7\)"):
        opt.step(grads[:2] + [grads[2].reshape(1, 7)])
    # Across groups: a later group's grad aliasing an earlier group's param or state.
    with pytest.raises(ValueError, match=r"^grads\[2\] shares memory with param_groups\[0\]\['params'\]\[1\]"):
        opt.step(grads[:2] + [params[1][:7]])
    with pytest.raises(ValueError, match=r"^grads\[2\] shares memory with state\[1\]\['momentum_buffer'\]"):
        opt.step(grads[:2] + [opt.state_dict()["state"][1]["momentum_buffer"][:7]])
    with pytest.raises(ValueError, match=r"^grads\[2\]: array must be C-contiguous"):
        opt.step(grads[:2] + [np.ones(14, np.float32)[::2]])
    with pytest.raises(TypeError, match=r"^grads\[2\]: expected a numpy.ndarray, got list"):
        opt.step(grads[:2] + [[0.0] * 7])
    assert _snapshot(params, opt) == before


@pytest.mark.parametrize(
    "call,exc,msg",
    [
        (
            lambda p, g, s: F.adam_(p, g, s[0], s[0], step=1),
            ValueError,
            r"exp_avg_sqs\[\d\] shares memory with exp_avgs\[\d\]",
        ),
        (lambda p, g, s: F.adam_(p, g, s[0], s[1][:2], step=1), ValueError, r"exp_avg_sqs: expected 3 arrays, got 2"),
        (lambda p, g, s: F.adam_(p, g, s[0], s[1], step=0), ValueError, r"step: must be >= 1"),
        (
            lambda p, g, s: F.adam_(p, g, s[0], None, step=1),
            TypeError,
            r"exp_avg_sqs: expected a list of arrays, got None",
        ),
        (lambda p, g, s: F.sgd_(p, g, lr=0.1, momentum=0.9), ValueError, r"momentum_buffers: required"),
        (lambda p, g, s: F.rmsprop_(p, g, s[0], momentum=0.9), ValueError, r"momentum_buffers: required"),
        (lambda p, g, s: F.adagrad_norm_(p, g, np.ones(2)), ValueError, r"b_sq: expected 1 element, got 2"),
        (lambda p, g, s: F.adagrad_norm_(p, g, np.ones(1, np.float32)), TypeError, r"b_sq: expected float64"),
        (lambda p, g, s: F.adagrad_norm_(p, g, np.full(1, -1.0)), ValueError, r"^b_sq: must hold a finite b\^2 >= 0"),
        (lambda p, g, s: F.adagrad_norm_(p, g, np.full(1, np.nan)), ValueError, r"^b_sq: must hold a finite"),
        (lambda p, g, s: F.adagrad_norm_(p, g, np.full(1, np.inf)), ValueError, r"^b_sq: must hold a finite"),
        (lambda p, g, s: F.nadam_(p, g, s[0], s[1], step=1, mu_product=-0.5), ValueError, r"mu_product"),
        (lambda p, g, s: F.adam_(p, g, s[0], s[1], step=1, lr=-1.0), ValueError, r"^lr"),
        (lambda p, g, s: F.adam_(p, g, s[0], s[1], step=1, beta1=1.0), ValueError, r"^beta1: must be in \[0.0, 1.0\)"),
        (lambda p, g, s: F.adamw_(p, g, s[0], s[1], step=1, beta2=-0.1), ValueError, r"^beta2: must be in"),
        (lambda p, g, s: F.nadam_(p, g, s[0], s[1], step=1, beta1=1.0), ValueError, r"^beta1: must be in"),
        (lambda p, g, s: F.nadam_(p, g, s[0], s[1], step=1, beta2="x"), TypeError, r"^beta2: expected a real"),
        (
            lambda p, g, s: F.sgd_(p, g[:1] + [g[1].reshape(100, 10)] + g[2:], lr=0.1),
            ValueError,
            r"^grads\[1\]: expected shape \(1000,\), got \(100, 10\)",
        ),
        (
            lambda p, g, s: F.adam_(p, g[:2] + [g[2].reshape(7, 1)], s[0], s[1], step=1),
            ValueError,
            r"^grads\[2\]: expected shape \(7,\), got \(7, 1\)",
        ),
    ],
)
def test_functional_bad_input(call, exc, msg):
    params, grads = _setup()
    states = [[np.zeros_like(p) for p in params] for _ in range(2)]
    before = pickle.dumps((params, states))
    with pytest.raises(exc, match=msg):
        call(params, grads, states)
    assert pickle.dumps((params, states)) == before


def test_adagrad_norm_with_zero_gradients_and_zero_b_sq_takes_no_step():
    params, grads = _setup()
    before = [p.copy() for p in params]
    b_sq = np.zeros(1)
    F.adagrad_norm_(params, [np.zeros_like(g) for g in grads], b_sq, lr=0.1)  # b = 0: no step, not 0 / 0
    assert b_sq[0] == 0 and all(np.array_equal(p, q) for p, q in zip(params, before))
    F.adagrad_norm_(params, grads, b_sq, lr=0.1)  # then a normal step
    assert b_sq[0] > 0 and all(np.isfinite(p).all() for p in params)


def test_read_only_param_in_functional():
    params, grads = _setup()
    params[2].flags.writeable = False
    with pytest.raises(ValueError, match=r"params\[2\]: array is read-only"):
        F.sgd_(params, grads, lr=0.1)


# ---- capturable mode and CuPy arrays, checked without CuPy or a GPU ---------------------

CAPTURABLE = [info.cls for info in OPTIMIZERS if info.capturable]


class ndarray:  # noqa: N801 - a stand-in named like CuPy's array, so _backend.is_cupy accepts it
    __module__ = "cupy._stand_in"
    dtype = np.dtype(np.float32)
    size = 3


@pytest.mark.parametrize("cls", CAPTURABLE, ids=lambda c: c.__name__)
def test_capturable_needs_cupy_arrays(cls):
    params, _ = _setup()
    with pytest.raises(ValueError, match=r"^capturable: needs CuPy arrays"):
        cls(params, capturable=True)
    with pytest.raises(TypeError, match=r"^capturable: expected a bool, got str"):
        cls(params, capturable="yes")


def test_capturable_group_on_numpy_names_the_group():
    params, _ = _setup()
    with pytest.raises(ValueError, match=r"^param_groups\[1\]\['capturable'\]: needs CuPy arrays"):
        O.Adam([{"params": params[:1]}, {"params": params[1:], "capturable": True}])


def test_capturable_switched_on_for_numpy_is_caught_at_step(adam):
    params, grads, opt = adam
    opt.param_groups[0]["capturable"] = True
    before = _snapshot(params, opt)
    with pytest.raises(ValueError, match=r"^param_groups\[0\]\['capturable'\]: needs CuPy arrays"):
        opt.step(grads)
    assert _snapshot(params, opt) == before


def test_device_lr_needs_capturable_mode():
    params, _ = _setup()
    with pytest.raises(TypeError, match=r"^lr: a CuPy array is read on the device only in capturable mode"):
        O.Adam(params, lr=ndarray())


def test_load_state_dict_keeps_this_optimizers_capturable_flag(adam):
    params, grads, opt = adam
    sd = opt.state_dict()
    sd["param_groups"][0]["capturable"] = True  # e.g. a checkpoint from a GPU run
    sd["state"][1]["step"] = np.asarray(1.0)  # a 0-d array, like a device counter brought home
    opt.load_state_dict(sd)
    assert opt.param_groups[0]["capturable"] is False
    opt.step(grads)
    assert opt.state_dict()["state"][1]["step"] == 2


def test_numpy_optimizer_rejects_a_cupy_gradient():
    params, grads = _setup()
    opt = O.Adam(params)
    with pytest.raises(TypeError, match=r"grads\[1\]: expected a numpy.ndarray, got .*ndarray"):
        opt.step([grads[0], ndarray(), grads[2]])
    opt2 = O.Adam([{"params": params[:1]}, {"params": params[1:]}])  # several native calls: checked in Python
    with pytest.raises(TypeError, match=r"grads\[1\]: expected a numpy.ndarray, got cupy.ndarray"):
        opt2.step([grads[0], ndarray(), grads[2]])
    assert opt.state_dict()["state"] == opt2.state_dict()["state"] == {}


def test_mixed_numpy_and_cupy_params_are_rejected():
    params, _ = _setup()
    with pytest.raises(
        TypeError,
        match=r"param_groups\[0\]\['params'\]\[1\]: is a cupy array but "
        r"param_groups\[0\]\['params'\]\[0\] is a numpy array",
    ):
        O.Adam([params[0], ndarray()])


def test_cupy_params_without_the_cuda_module_raise_runtime_error(monkeypatch):
    import sys

    import optkern
    from optkern import _backend

    monkeypatch.setattr(_backend, "_cuda_module", None)
    monkeypatch.setattr(_backend, "_cuda_error", None)
    monkeypatch.delattr(optkern, "_cuda", raising=False)
    monkeypatch.setitem(sys.modules, "optkern._cuda", None)  # import fails, as when it was not built
    for cls in CAPTURABLE:
        with pytest.raises(RuntimeError, match="optkern was built without CUDA support"):
            cls([ndarray()])


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize(
    "make",
    [
        lambda v: O.SGD(_setup()[0], lr=v),
        lambda v: O.SGD(_setup()[0], lr=0.1, momentum=v),
        lambda v: O.Adam(_setup()[0], eps=v),
        lambda v: O.Adam(_setup()[0], betas=(v, 0.999)),
        lambda v: O.AdamW(_setup()[0], weight_decay=v),
        lambda v: O.RMSprop(_setup()[0], alpha=v),
        lambda v: O.Adagrad(_setup()[0], lr_decay=v),
        lambda v: O.Adadelta(_setup()[0], rho=v),
        lambda v: O.NAdam(_setup()[0], momentum_decay=v),
        lambda v: O.AdagradNorm(_setup()[0], b0=v),
    ],
)
def test_non_finite_hyper_parameters_are_rejected(make, bad):
    with pytest.raises(
        ValueError,
        match=r"^(lr|momentum|eps|betas\[0\]|weight_decay|alpha|lr_decay|rho|"
        r"momentum_decay|b0): must be",
    ):
        make(bad)


def test_range_messages_show_open_infinite_ends():
    with pytest.raises(ValueError, match=r"^lr: must be in \[0.0, inf\), got -1.0$"):
        O.SGD(_setup()[0], lr=-1.0)
