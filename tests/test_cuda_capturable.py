"""Optimizers on CuPy arrays: capturable mode against the plain step, steps
captured in a CUDA graph and replayed, and the GPU state dict (CuPy arrays,
loading NumPy or CuPy state onto the parameters' device).

Capturable and plain steps give the same bits, except that Adam's and NAdam's
bias corrections use the device's float64 ``pow`` in capturable mode (the
host's in the plain step); the two may differ in the last bit of a float64, so
float64 Adam/NAdam parameters are compared with a tight tolerance (rtol 1e-12)
and everything else bitwise. A graph replay and an eager capturable step run
the same kernels on the same values: always bitwise.

Skipped without CuPy or without a visible GPU.
"""

from __future__ import annotations

import numpy as np
import pytest

from gpu import require_gpu
from optim_registry import OPTIMIZERS, case_id
from optkern import optim as O

cp, _cuda = require_gpu()

SIZES = [1, 7, 1023, 4097, 0, 33]
STEPS = 20
# named picks for the tests of one mechanism; the plain-vs-capturable test runs every registered variant
CONFIGS = {
    "sgd": (O.SGD, dict(lr=0.1)),
    "sgd_momentum": (O.SGD, dict(lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01)),
    "sgd_nesterov": (O.SGD, dict(lr=0.1, momentum=0.9, nesterov=True, maximize=True)),
    "sgd_textbook": (O.SGD, dict(lr=0.1, momentum=0.9, momentum_form="textbook")),
    "adagrad": (O.Adagrad, dict(lr=0.1, lr_decay=0.01, weight_decay=0.1, initial_accumulator_value=0.1)),
    "rmsprop": (O.RMSprop, dict(lr=0.01, weight_decay=0.01)),
    "rmsprop_centered_nesterov": (O.RMSprop, dict(lr=0.01, centered=True, momentum=0.5, nesterov=True)),
    "adadelta": (O.Adadelta, dict(lr=0.5, weight_decay=0.1)),
    "adam": (O.Adam, dict(lr=0.01, weight_decay=0.1)),
    "amsgrad": (O.Adam, dict(lr=0.01, amsgrad=True, maximize=True)),
    "adamw": (O.AdamW, dict(lr=0.01)),
    "nadam": (O.NAdam, dict(lr=0.01, weight_decay=0.1)),
    "nadamw": (O.NAdam, dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
}


def _probe_params():
    return [np.zeros(1)]


ALL = {case_id(info.name, hp): (info.cls, hp) for info in OPTIMIZERS if info.capturable for hp in info.valid}
USES_POW = (O.Adam, O.NAdam)  # AdamW is an Adam


def _host_params(dtype, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(n).astype(dtype) for n in SIZES]


def _grads(rng, dtype):
    return [rng.standard_normal(n).astype(dtype) for n in SIZES]


def _to_dev(arrays):
    return [cp.asarray(a) for a in arrays]


def _state_arrays(opt):
    """{(param index, name): host copy} for every state array, and the scalars as floats."""
    out = {}
    for i, entry in opt.state_dict()["state"].items():
        for k, v in entry.items():
            out[i, k] = v.get() if isinstance(v, cp.ndarray) else np.asarray(v)
    return out


def _compare(a, b, exact, what=""):
    for x, y in zip(a, b):
        x = x.get() if isinstance(x, cp.ndarray) else x
        y = y.get() if isinstance(y, cp.ndarray) else y
        if exact:
            np.testing.assert_array_equal(x, y, err_msg=what)
        else:
            np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-14, err_msg=what)


def _lr_at(base, t):
    return base * (1.0 - 0.02 * t)  # a schedule: changes every step


# ---- capturable vs plain ------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(ALL))
def test_capturable_step_matches_the_plain_step(name, dtype):
    cls, kw = ALL[name]
    base_lr = kw.get("lr", cls(_probe_params(), **kw).defaults["lr"])
    host = _host_params(dtype)
    pp, pc = _to_dev(host), _to_dev(host)
    plain, capt = cls(pp, **kw), cls(pc, capturable=True, **kw)
    rng = np.random.default_rng(1)
    for t in range(STEPS):
        g = _grads(rng, dtype)
        for opt in (plain, capt):
            opt.param_groups[0]["lr"] = _lr_at(base_lr, t)
        plain.step(_to_dev(g))
        capt.step(_to_dev(g))
    exact = dtype == np.float32 or not issubclass(cls, USES_POW)
    _compare(pp, pc, exact, name)
    sp, sc = _state_arrays(plain), _state_arrays(capt)
    assert sp.keys() == sc.keys()
    for key in sp:
        if key[1] == "mu_product":  # float64 on both sides: the device pow's last bit may show
            np.testing.assert_allclose(sc[key], sp[key], rtol=1e-14)
        else:
            _compare([sp[key]], [sc[key]], exact, f"{name} {key}")
    if cls is not O.SGD:
        step = capt.state_dict()["state"][0]["step"]
        assert isinstance(step, cp.ndarray) and step.shape == () and step.dtype == np.float64
        assert float(step.get()) == STEPS
        assert plain.state_dict()["state"][0]["step"] == STEPS


def test_switching_capturable_off_and_on_keeps_the_step_count():
    host = _host_params(np.float32)
    pp, pc = _to_dev(host), _to_dev(host)
    plain, capt = O.NAdam(pp, lr=0.01), O.NAdam(pc, lr=0.01, capturable=True)
    rng = np.random.default_rng(2)
    for t in range(9):
        capt.param_groups[0]["capturable"] = t not in (3, 4, 5)
        g = _grads(rng, np.float32)
        plain.step(_to_dev(g))
        capt.step(_to_dev(g))
    _compare(pp, pc, True)
    assert float(capt.state_dict()["state"][0]["step"].get()) == 9
    assert (
        abs(float(capt.state_dict()["state"][0]["mu_product"].get()) - plain.state_dict()["state"][0]["mu_product"])
        <= 1e-15
    )


# ---- CUDA graphs -----------------------------------------------------------------------


def _capture_stream():
    s = cp.cuda.Stream(non_blocking=True)
    if not hasattr(s, "begin_capture"):
        pytest.skip("this CuPy has no stream capture")
    return s


@pytest.mark.parametrize(
    "name", ["sgd_momentum", "adagrad", "rmsprop_centered_nesterov", "adadelta", "amsgrad", "adamw", "nadam"]
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_graph_replay_equals_eager_steps(name, dtype):
    """One eager warm-up step, then step() captured once and replayed N times with new
    gradients copied into the captured (static) gradient arrays: the same bits as N + 1
    eager capturable steps, and the device step counter counts the replays."""
    cls, kw = CONFIGS[name]
    s = _capture_stream()
    host = _host_params(dtype, seed=3)
    rng = np.random.default_rng(4)
    n_replays = 6
    with s:
        pe, pg = _to_dev(host), _to_dev(host)
        eager, graphed = cls(pe, capturable=True, **kw), cls(pg, capturable=True, **kw)
        static = _to_dev(_grads(rng, dtype))
        g0 = [x.copy() for x in static]
        eager.step(g0)
        graphed.step(static)  # warm-up: state, device counters, kernels
        s.synchronize()
        s.begin_capture()
        graphed.step(static)
        graph = s.end_capture()
        for _ in range(n_replays):
            g = _grads(rng, dtype)
            for buf, h in zip(static, g):
                buf.set(h)  # on the current stream, before the replay
            graph.launch(stream=s)
            eager.step(_to_dev(g))
        s.synchronize()
    _compare(pe, pg, True, name)
    se, sg = _state_arrays(eager), _state_arrays(graphed)
    assert se.keys() == sg.keys()
    for key in se:
        _compare([se[key]], [sg[key]], True, f"{name} {key}")
    if cls is not O.SGD:
        assert float(graphed.state_dict()["state"][0]["step"].get()) == n_replays + 1


def test_graph_reads_a_device_learning_rate_at_every_replay():
    """group["lr"] as a 0-d float64 CuPy array: a schedule that needs no re-capture."""
    s = _capture_stream()
    host = _host_params(np.float32, seed=5)
    rng = np.random.default_rng(6)
    with s:
        pp, pg = _to_dev(host), _to_dev(host)
        lr = cp.full((), 0.01, dtype=cp.float64)
        plain = O.AdamW(pp, lr=0.01, weight_decay=0.1)
        graphed = O.AdamW(pg, lr=lr, weight_decay=0.1, capturable=True)
        static = _to_dev(_grads(rng, np.float32))
        plain.step([x.copy() for x in static])
        graphed.step(static)
        s.synchronize()
        s.begin_capture()
        graphed.step(static)
        graph = s.end_capture()
        for t in range(1, 8):
            g = _grads(rng, np.float32)
            for buf, h in zip(static, g):
                buf.set(h)
            lr.fill(_lr_at(0.01, t))
            graph.launch(stream=s)
            plain.param_groups[0]["lr"] = _lr_at(0.01, t)
            plain.step(_to_dev(g))
        s.synchronize()
    _compare(pp, pg, True)  # float32: the device pow's last float64 bit does not show


def test_capturing_the_first_step_raises_and_changes_nothing():
    s = _capture_stream()
    host = _host_params(np.float32)
    with s:
        params = _to_dev(host)
        grads = _to_dev(_grads(np.random.default_rng(7), np.float32))
        opt = O.Adam(params, capturable=True)
        marker = cp.zeros(1, cp.float32)
        marker += 1  # compiled before the capture; keeps the captured graph non-empty
        s.synchronize()
        s.begin_capture()
        try:
            with pytest.raises(RuntimeError, match="take one eager step before capturing"):
                opt.step(grads)
            marker += 1
        finally:
            s.end_capture()
        s.synchronize()
    assert opt.state_dict()["state"] == {}
    _compare(params, host, True)


# ---- state dict on the GPU ----------------------------------------------------------


@pytest.mark.parametrize("capturable", [False, True])
@pytest.mark.parametrize("name", ["amsgrad", "nadam", "sgd_momentum", "rmsprop_centered_nesterov"])
def test_gpu_state_dict_round_trip(name, capturable):
    cls, kw = CONFIGS[name]
    host = _host_params(np.float32, seed=8)
    rng = np.random.default_rng(9)
    pa = _to_dev(host)
    a = cls(pa, capturable=capturable, **kw)
    for _ in range(5):
        a.step(_to_dev(_grads(rng, np.float32)))
    sd = a.state_dict()
    for entry in sd["state"].values():
        for k, v in entry.items():
            if k in cls._state_names:
                assert isinstance(v, cp.ndarray) and v.device.id == pa[0].device.id
            elif capturable:  # step, mu_product: the live device scalars
                assert isinstance(v, cp.ndarray) and v.shape == () and v.dtype == np.float64
            else:
                assert not isinstance(v, cp.ndarray)
    # into a fresh optimizer of each mode: continues exactly like the original
    for cap_b in (False, True):
        pb = [p.copy() for p in pa]
        b = cls(pb, capturable=cap_b, **kw)
        b.load_state_dict(sd)
        assert b.param_groups[0]["capturable"] is cap_b
        for entry_b, entry_a in zip(b.state_dict()["state"].values(), sd["state"].values()):
            for k in cls._state_names:
                if k in entry_a:  # copies, not the same arrays
                    assert entry_b[k] is not entry_a[k] and isinstance(entry_b[k], cp.ndarray)
        a2 = cls([p.copy() for p in pa], capturable=capturable, **kw)
        a2.load_state_dict(sd)
        g = _grads(np.random.default_rng(10), np.float32)
        a2.step(_to_dev(g))
        b.step(_to_dev(g))
        _compare(a2.param_groups[0]["params"], pb, True, f"{name} {capturable}->{cap_b}")


@pytest.mark.parametrize("capturable", [False, True])
@pytest.mark.parametrize("name", ["adam", "nadamw", "adagrad", "sgd_momentum", "adadelta"])
def test_numpy_state_loads_onto_the_gpu_and_back(name, capturable):
    cls, kw = CONFIGS[name]
    host = _host_params(np.float64, seed=11)
    rng = np.random.default_rng(12)
    cpu = cls(host, **kw)
    for _ in range(3):
        cpu.step(_grads(rng, np.float64))
    params = _to_dev(host)
    gpu = cls(params, capturable=capturable, **kw)
    gpu.load_state_dict(cpu.state_dict())
    for entry in gpu.state_dict()["state"].values():
        for k in cls._state_names:
            if k in entry:
                assert isinstance(entry[k], cp.ndarray) and entry[k].device.id == params[0].device.id
    for _ in range(3):
        g = _grads(rng, np.float64)
        cpu.step(g)
        gpu.step(_to_dev(g))
    for h, d in zip(host, params):  # CPU and GPU run the same rule: float64 rounding apart
        np.testing.assert_allclose(d.get(), h, rtol=1e-11, atol=1e-13)
    back = cls([p.copy() for p in host], **kw)
    back.load_state_dict(gpu.state_dict())  # CuPy state (and a device step) into a NumPy optimizer
    for entry in back.state_dict()["state"].values():
        assert all(isinstance(v, (int, float, np.ndarray)) for v in entry.values())
        if "step" in entry:
            assert entry["step"] == 6


# ---- errors ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["adam", "nadam", "adagrad", "sgd_momentum"])
def test_a_refused_capturable_step_changes_nothing(name):
    """The native call checks its arguments before it launches anything, so a refused
    step leaves the device counters (step, mu_product) as they were."""
    cls, kw = CONFIGS[name]
    params = _to_dev(_host_params(np.float32))
    opt = cls(params, capturable=True, **kw)
    rng = np.random.default_rng(15)
    for _ in range(2):
        opt.step(_to_dev(_grads(rng, np.float32)))
    before = _state_arrays(opt)
    p_before = [p.get() for p in params]
    bad = _to_dev(_grads(rng, np.float32))
    bad[1] = bad[1].astype(cp.float64)
    with pytest.raises(TypeError, match=r"grads\[1\]: expected float32, got float64"):
        opt.step(bad)
    after = _state_arrays(opt)
    assert before.keys() == after.keys()
    for key in before:
        np.testing.assert_array_equal(before[key], after[key], err_msg=str(key))
    _compare(params, p_before, True)


@pytest.mark.parametrize("capturable", [False, True])
def test_mixing_numpy_and_cupy_names_the_argument(capturable):
    host = _host_params(np.float32)
    params = _to_dev(host)
    opt = O.Adam(params, capturable=capturable)
    grads = _to_dev(_grads(np.random.default_rng(13), np.float32))
    grads[2] = grads[2].get()
    with pytest.raises(TypeError, match=r"grads\[2\]: expected a cupy.ndarray, got numpy.ndarray"):
        opt.step(grads)
    assert opt.state_dict()["state"] == {}
    with pytest.raises(TypeError, match=r"grads\[0\]: expected a numpy.ndarray"):
        O.Adam([h.copy() for h in host], capturable=False).step(_to_dev(_grads(np.random.default_rng(0), np.float32)))
    with pytest.raises(TypeError, match=r"\['params'\]\[1\]: is a numpy array but .*\[0\] is a cupy array"):
        O.Adam([params[0], host[1]])


def test_device_lr_is_checked():
    params = _to_dev(_host_params(np.float32))
    with pytest.raises(TypeError, match=r"^lr: expected a float64 CuPy array of one element, got float32"):
        O.Adam(params, lr=cp.full((), 0.1, dtype=cp.float32), capturable=True)
    with pytest.raises(TypeError, match=r"^lr: a CuPy array is read on the device only in capturable mode"):
        O.Adam(params, lr=cp.full((), 0.1))


@pytest.mark.skipif(cp.cuda.runtime.getDeviceCount() < 2, reason="needs two GPUs")
def test_arrays_on_two_devices_are_rejected():
    p0 = _to_dev(_host_params(np.float32))
    with cp.cuda.Device(1):
        g1 = _to_dev(_grads(np.random.default_rng(14), np.float32))
    for capturable in (False, True):
        with pytest.raises(ValueError, match=r"grads\[0\]: is on device 1 but"):
            O.Adam(p0, capturable=capturable).step(g1)
