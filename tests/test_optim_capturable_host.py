"""Capturable mode's bookkeeping, run without a GPU: a host stand-in for CuPy.

The stand-in "device" arrays are NumPy arrays that look like cupy.ndarray to
optkern, and the native calls go to optkern._cpu, whose ``<rule>_capturable``
functions do on the host what the CUDA ones do on the device: read the step
counters and a device lr from float64 arrays, compute the step scalars with the
same ``Rule::at`` (rules/optim.hpp) and advance the counters after the update.
So these tests check, on any machine: capturable steps against plain ones
(bitwise), the device counters, the state dict (live device ``step`` /
``mu_product``, NumPy <-> "CuPy" loads), switching modes, the capture guard, a
refused step leaving the counters alone, and that a step's device work is all
in its launches (a recorded "graph" replays like eager steps). The real thing
runs in test_cuda_capturable.py on a GPU.
"""

from __future__ import annotations

import contextlib
import sys
import types

import numpy as np
import pytest

from optim_registry import OPTIMIZERS, case_id
from optkern import _backend
from optkern import optim as O

# list arguments before the hyper-parameters
_LISTS = {"sgd": 3, "adagrad": 3, "rmsprop": 5, "adadelta": 4, "adam": 5, "nadam": 4}


class ndarray(np.ndarray):  # noqa: N801 - named like CuPy's: _backend.is_cupy accepts it
    @property
    def data(self):
        return types.SimpleNamespace(ptr=self.__array_interface__["data"][0])

    @property
    def device(self):
        return types.SimpleNamespace(id=0)

    def get(self):
        return np.array(self)


ndarray.__module__ = "cupy._host_stand_in"


def dev(a):
    return np.array(a, order="C").view(ndarray)


class Device:
    """Host stand-in: capture state and launch record."""

    def __init__(self):
        self.capturing = False
        self.recorded = []

    def record_or_run(self, fn):
        def call(*args):
            if self.capturing:
                self.recorded.append(lambda: fn(*args))
                return None
            return fn(*args)

        return call

    def replay(self, ops):
        for op in ops:
            op()


def _host(x):
    if isinstance(x, list):
        return [np.asarray(a) if isinstance(a, ndarray) else a for a in x]
    return np.asarray(x) if isinstance(x, ndarray) else x


def _native(rule, device):
    plain = getattr(_backend.cpu, rule + "_")
    capturable = getattr(_backend.cpu, rule + "_capturable")

    def checked(args):  # the checks of cuda_arrays.hpp that these tests reach
        dtype = args[0][0].dtype if args[0] else None
        for j, x in enumerate(args[: _LISTS[rule]]):
            name = ("params", "grads")[j] if j < 2 else f"state{j}"
            for i, a in enumerate(x or []):
                if not isinstance(a, ndarray):
                    raise TypeError(f"{name}[{i}]: expected a cupy.ndarray, got {type(a).__module__}.ndarray")
                if a.dtype != dtype:
                    raise TypeError(f"{name}[{i}]: expected {dtype}, got {a.dtype}")
        return [_host(x) for x in args]

    def run_plain(*args):
        return plain(*checked(args))

    def run_capturable(*args):
        capturable(*checked(args))

    def call_capturable(*args):
        checked(args[:-2])  # the native checks come first, at call time
        for buf in args[-2:]:
            assert buf is None or isinstance(buf, ndarray), "a device buffer on the host"
        device.record_or_run(run_capturable)(*args)

    return device.record_or_run(run_plain), call_capturable


@pytest.fixture
def device(monkeypatch):
    device = Device()
    cupy = types.ModuleType("cupy")
    cupy.ndarray = ndarray
    cupy.zeros_like = lambda p, **k: dev(np.zeros_like(np.asarray(p), **k))
    cupy.full_like = lambda p, v, **k: dev(np.full_like(np.asarray(p), v, **k))
    cupy.zeros = lambda *a, **k: dev(np.zeros(*a, **k))
    cupy.full = lambda *a, **k: dev(np.full(*a, **k))
    cupy.array = lambda x, dtype=None, copy=True, order="K": dev(np.array(np.asarray(x), dtype=dtype, order=order))
    cuda = types.ModuleType("cupy.cuda")
    cuda.Device = lambda i=0: contextlib.nullcontext()
    cuda.get_current_stream = lambda: types.SimpleNamespace(is_capturing=lambda: device.capturing)
    cupy.cuda = cuda
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    monkeypatch.setitem(sys.modules, "cupy.cuda", cuda)
    native = types.SimpleNamespace()
    for rule in _LISTS:
        p, c = _native(rule, device)
        setattr(native, rule + "_", p)
        setattr(native, rule + "_capturable", c)
    monkeypatch.setattr(_backend, "cuda_module", lambda: native)
    return device


# named picks for the tests of one mechanism; the plain-vs-capturable test runs every registered variant
CONFIGS = {
    "sgd": (O.SGD, dict(lr=0.1)),
    "sgd_momentum": (O.SGD, dict(lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01)),
    "sgd_nesterov_textbook": (O.SGD, dict(lr=0.1, momentum=0.9, nesterov=True, momentum_form="textbook")),
    "adagrad": (O.Adagrad, dict(lr=0.1, lr_decay=0.01, weight_decay=0.1, initial_accumulator_value=0.1)),
    "rmsprop_centered_nesterov": (O.RMSprop, dict(lr=0.01, centered=True, momentum=0.5, nesterov=True)),
    "adadelta": (O.Adadelta, dict(lr=0.5, weight_decay=0.1)),
    "adam": (O.Adam, dict(lr=0.01, weight_decay=0.1)),
    "amsgrad_max": (O.Adam, dict(lr=0.01, amsgrad=True, maximize=True)),
    "adamw": (O.AdamW, dict(lr=0.01)),
    "nadam": (O.NAdam, dict(lr=0.01, weight_decay=0.1)),
    "nadamw": (O.NAdam, dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
}


def _probe_params():
    return [np.zeros(1)]


ALL = {case_id(info.name, hp): (info.cls, hp) for info in OPTIMIZERS if info.capturable for hp in info.valid}
SIZES = [5, 1, 33, 0]


def _params(dtype, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(n).astype(dtype) for n in SIZES]


def _grads(rng, dtype):
    return [rng.standard_normal(n).astype(dtype) for n in SIZES]


def _host_state(opt):
    return {
        (i, k): np.array(v.get() if isinstance(v, ndarray) else v)
        for i, e in opt.state_dict()["state"].items()
        for k, v in e.items()
    }


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=str(k))


def _same_params(xs, ys):
    for x, y in zip(xs, ys):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(ALL))
def test_capturable_equals_plain_and_state_dicts_round_trip(device, name, dtype):
    cls, kw = ALL[name]
    base_lr = kw.get("lr", cls(_probe_params(), **kw).defaults["lr"])
    host = _params(dtype)
    pa, pb = [h.copy() for h in host], [dev(h) for h in host]
    a, b = cls(pa, **kw), cls(pb, capturable=True, **kw)
    rng = np.random.default_rng(1)
    for t in range(20):
        g = _grads(rng, dtype)
        for o in (a, b):
            o.param_groups[0]["lr"] = base_lr * (1 - 0.02 * t)
        a.step(g)
        b.step([dev(x) for x in g])
    _same_params(pa, pb)
    _same(_host_state(a), _host_state(b))
    sb = b.state_dict()
    for e in sb["state"].values():
        assert all(isinstance(v, ndarray) for v in e.values())
        if "step" in e:
            assert e["step"].shape == () and e["step"].dtype == np.float64 and float(e["step"]) == 20
    # device state into capturable and plain optimizers, host state into a capturable one
    c = cls([dev(np.asarray(p)) for p in pb], capturable=True, **kw)
    c.load_state_dict(sb)
    d = cls([np.array(p) for p in pb], **kw)
    d.load_state_dict(sb)
    e = cls([dev(p) for p in pa], capturable=True, **kw)
    e.load_state_dict(a.state_dict())
    assert e.param_groups[0]["capturable"] is True and d.param_groups[0]["capturable"] is False
    assert all(not isinstance(v, ndarray) for entry in d.state_dict()["state"].values() for v in entry.values())
    for _ in range(3):
        g = _grads(rng, dtype)
        a.step(g)
        d.step(g)
        for o in (b, c, e):
            o.step([dev(x) for x in g])
    for o in (b, c, d, e):
        _same_params(pa, o.param_groups[0]["params"])
        _same(_host_state(a), _host_state(o))


def test_switching_modes_keeps_the_counters(device):
    host = _params(np.float64)
    pa, pb = [h.copy() for h in host], [dev(h) for h in host]
    a, b = O.NAdam(pa, lr=0.01), O.NAdam(pb, lr=0.01, capturable=True)
    rng = np.random.default_rng(2)
    for t in range(9):
        b.param_groups[0]["capturable"] = t not in (3, 4, 5)
        g = _grads(rng, np.float64)
        a.step(g)
        b.step([dev(x) for x in g])
    _same_params(pa, pb)
    _same(_host_state(a), _host_state(b))


@pytest.mark.parametrize(
    "name", ["sgd_momentum", "adagrad", "rmsprop_centered_nesterov", "adadelta", "amsgrad_max", "nadamw"]
)
def test_recorded_step_replays_like_eager_steps(device, name):
    """Everything a step does on the device is in its launches: a step recorded once
    and replayed with new static gradients equals eager steps (host state untouched)."""
    cls, kw = CONFIGS[name]
    host = _params(np.float32, seed=3)
    pe, pg = [dev(h) for h in host], [dev(h) for h in host]
    eager, graphed = cls(pe, capturable=True, **kw), cls(pg, capturable=True, **kw)
    rng = np.random.default_rng(4)
    static = [dev(x) for x in _grads(rng, np.float32)]
    eager.step([dev(x) for x in static])
    graphed.step(static)
    device.capturing = True
    graphed.step(static)
    device.capturing = False
    graph, device.recorded = device.recorded, []
    assert graph
    for _ in range(5):
        g = _grads(rng, np.float32)
        for buf, x in zip(static, g):
            np.copyto(np.asarray(buf), x)
        device.replay(graph)
        eager.step([dev(x) for x in g])
    _same_params(pe, pg)
    _same(_host_state(eager), _host_state(graphed))


def test_device_lr_is_read_at_every_step(device):
    host = _params(np.float32)
    pa, pb = [h.copy() for h in host], [dev(h) for h in host]
    lr = dev(np.full((), 0.01))
    a, b = O.AdamW(pa, lr=0.01), O.AdamW(pb, lr=lr, capturable=True)
    rng = np.random.default_rng(5)
    static = [dev(x) for x in _grads(rng, np.float32)]
    a.step([np.array(x) for x in static])
    b.step(static)
    device.capturing = True
    b.step(static)
    device.capturing = False
    graph, device.recorded = device.recorded, []
    for t in range(1, 6):
        g = _grads(rng, np.float32)
        for buf, x in zip(static, g):
            np.copyto(np.asarray(buf), x)
        lr[...] = a.param_groups[0]["lr"] = 0.01 * (1 - 0.1 * t)
        device.replay(graph)
        a.step(g)
    _same_params(pa, pb)


def test_a_step_that_would_create_state_refuses_to_be_captured(device):
    params = [dev(h) for h in _params(np.float32)]
    opt = O.Adam(params, capturable=True)
    device.capturing = True
    with pytest.raises(RuntimeError, match="take one eager step before capturing"):
        opt.step([dev(x) for x in _grads(np.random.default_rng(6), np.float32)])
    assert device.recorded == [] and opt.state_dict()["state"] == {}


@pytest.mark.parametrize("name", ["nadam", "adam", "adagrad", "sgd_momentum"])
def test_a_refused_step_leaves_the_counters_alone(device, name):
    cls, kw = CONFIGS[name]
    params = [dev(h) for h in _params(np.float32)]
    opt = cls(params, capturable=True, **kw)
    rng = np.random.default_rng(7)
    for _ in range(2):
        opt.step([dev(x) for x in _grads(rng, np.float32)])
    before = _host_state(opt)
    p_before = [np.array(p) for p in params]
    bad = [dev(x) for x in _grads(rng, np.float32)]
    bad[2] = dev(bad[2].astype(np.float64))
    with pytest.raises(TypeError, match=r"grads\[2\]: expected float32, got float64"):
        opt.step(bad)
    _same(before, _host_state(opt))
    _same_params(p_before, params)
