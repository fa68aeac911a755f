"""GradScaler on the GPU: _cuda.amp_unscale_ / amp_update_scale_ (cuda/amp.cu) against their CPU
twins bit for bit, and amp.GradScaler on CuPy grads against the same on NumPy grads, with the
scale, tracker and found-inf flag kept on the device; a low-precision optimizer on CuPy skips a
non-finite step on the device.

Skipped without CuPy or without a visible GPU.
"""

from __future__ import annotations

import numpy as np
import pytest

from gpu import raised, require_gpu, same_bits
from optkern import _backend, optim
from optkern.amp import GradScaler

cp, _cuda = require_gpu()
_cpu = _backend.cpu
SIZES = [0, 1, 7, 1023, 70_001]


def flag(xp, v=0.0):
    return xp.full(1, v, xp.float32)


@pytest.mark.parametrize("scale", [1024.0, 3.0, 1e-3, 65504.0 * 3])
@pytest.mark.parametrize("bad", [None, np.inf, -np.inf, np.nan])
@pytest.mark.parametrize("preset", [0.0, 1.0])
def test_unscale_equals_the_cpu_bit_for_bit(scale, bad, preset):
    rng = np.random.default_rng(401)
    gs = [(rng.standard_normal(n) * scale).astype(np.float32) for n in SIZES]
    if bad is not None:
        gs[4][rng.integers(70_001)] = bad
    dgs = [cp.asarray(g) for g in gs]
    hs, ds = np.full(1, scale, np.float32), cp.full(1, scale, cp.float32)
    hf, df = flag(np, preset), flag(cp, preset)
    _cpu.amp_unscale_(gs, hs, hf)
    _cuda.amp_unscale_(dgs, ds, df)
    for i, (d, h) in enumerate(zip(dgs, gs)):
        same_bits(cp.asnumpy(d), h, f"grads[{i}]")
    assert cp.asnumpy(df)[0] == hf[0] == (1.0 if bad is not None or preset else 0.0)


def test_update_scale_sequence_equals_the_cpu():
    rng = np.random.default_rng(402)
    h = (np.full(1, 2.0**120, np.float32), np.zeros(1, np.int64))  # grows into overflow: kept
    d = (cp.asarray(h[0]), cp.asarray(h[1]))
    for bad in rng.random(60) < 0.2:
        f = 1.0 if bad else 0.0
        _cpu.amp_update_scale_(h[0], h[1], flag(np, f), 2.0, 0.5, 3)
        _cuda.amp_update_scale_(d[0], d[1], flag(cp, f), 2.0, 0.5, 3)
        assert cp.asnumpy(d[0])[0] == h[0][0] and cp.asnumpy(d[1])[0] == h[1][0]


@pytest.mark.parametrize(
    "case",
    ["scale_float64", "flag_size", "grads_float64", "flag_is_scale", "tracker_int32", "bad_growth", "inf_growth"],
)
def test_bad_input_raises_the_cpu_error(case):
    def call(mod, xp):
        g = [xp.ones(4, xp.float32)]
        s, f, t = xp.ones(1, xp.float32), xp.zeros(1, xp.float32), xp.zeros(1, xp.int64)
        if case == "scale_float64":
            return mod.amp_unscale_(g, xp.ones(1), f)
        if case == "flag_size":
            return mod.amp_unscale_(g, s, xp.zeros(2, xp.float32))
        if case == "grads_float64":
            return mod.amp_unscale_([xp.ones(4)], s, f)
        if case == "flag_is_scale":
            return mod.amp_update_scale_(s, t, s, 2.0, 0.5, 3)
        if case == "tracker_int32":
            return mod.amp_update_scale_(s, xp.zeros(1, xp.int32), f, 2.0, 0.5, 3)
        if case == "inf_growth":
            return mod.amp_update_scale_(s, t, f, float("inf"), 0.5, 3)
        return mod.amp_update_scale_(s, t, f, 1.0, 0.5, 3)

    assert raised(lambda: call(_cuda, cp)) == raised(lambda: call(_cpu, np))


def test_scaler_on_cupy_equals_numpy():
    rng = np.random.default_rng(403)
    kw = dict(init_scale=2.0**8, growth_interval=3)
    host, dev = GradScaler(**kw), GradScaler(**kw)
    hp = [rng.standard_normal(n).astype(np.float32) for n in (5, 300)]
    dp = [cp.asarray(p) for p in hp]
    ho, do = optim.SGD(hp, lr=0.1, momentum=0.9), optim.SGD(dp, lr=0.1, momentum=0.9)
    for bad in rng.random(30) < 0.25:
        g = [rng.standard_normal(p.size).astype(np.float32) * np.float32(host.get_scale()) for p in hp]
        if bad:
            g[1][rng.integers(300)] = np.inf
        dg = [cp.asarray(x) for x in g]
        found = dev.unscale_(dg)
        assert _backend.is_cupy(found)  # the device flag, not a host bool
        host.step(ho, g)
        dev.step(do, dg)
        host.update()
        dev.update()
        assert dev.get_scale() == host.get_scale()
        for d, h in zip(dp, hp):
            np.testing.assert_allclose(cp.asnumpy(d), h, rtol=2e-5, atol=2e-6)
    assert dev.state_dict() == host.state_dict()
    assert _backend.is_cupy(dev._scale) and _backend.is_cupy(dev._growth_tracker)


def test_two_optimizers_on_cupy_equal_numpy():
    """Two optimizers under one scaler on the device, each unscaled and skipped on its own grads'
    flag: a float32 SGD (its flag read on the host) and a float16 master-weights Adam (its flag
    skips it on the device); update() combines both flags on the device. The NumPy run's scales,
    params and bits, with an inf in one optimizer's grads, then the other's, then both."""
    rng = np.random.default_rng(408)
    kw = dict(init_scale=2.0**10, growth_interval=2)
    hs, ds = GradScaler(**kw), GradScaler(**kw)
    h1 = [rng.standard_normal(n).astype(np.float32) for n in (5, 300)]
    h2 = [rng.standard_normal(n).astype(np.float16) for n in (7, 1023)]
    d1, d2 = [cp.asarray(p) for p in h1], [cp.asarray(p) for p in h2]
    ho1, do1 = (optim.SGD(x, lr=0.1, momentum=0.9) for x in (h1, d1))
    ho2, do2 = (optim.Adam(x, lr=1e-3, master_weights=True) for x in (h2, d2))
    for it in range(8):
        scale = np.float32(hs.get_scale())
        g1 = [rng.standard_normal(p.size).astype(np.float32) * scale for p in h1]
        g2 = [(rng.standard_normal(p.size) * 1e-2 * scale).astype(np.float16) for p in h2]
        if it in (2, 5):
            g2[1][rng.integers(1023)] = np.inf
        if it in (4, 5):
            g1[0][rng.integers(5)] = np.inf
        dg1, dg2 = [cp.asarray(x) for x in g1], [cp.asarray(x) for x in g2]  # (before g1 is unscaled)
        hs.step(ho1, g1)
        hs.step(ho2, g2)
        ds.step(do1, dg1)
        ds.step(do2, dg2)
        flags = [e[1] for e in ds._iteration.states.values()]
        assert len(flags) == 2 and all(_backend.is_cupy(f) for f in flags)  # one device flag each
        hs.update()
        ds.update()
        assert ds.get_scale() == hs.get_scale(), it
        for d, h in zip(d1, h1):
            np.testing.assert_allclose(cp.asnumpy(d), h, rtol=2e-5, atol=2e-6)
        for d, h in zip(d2, h2):
            np.testing.assert_array_equal(cp.asnumpy(d).view(np.uint16), h.view(np.uint16))
    assert ds.state_dict() == hs.state_dict()


def test_scaled_cupy_loss_uses_the_device_scale():
    s = GradScaler(init_scale=8.0)
    out = s.scale(cp.full((), 3.0, cp.float32))
    assert _backend.is_cupy(out) and out.shape == () and float(out) == 24.0


def test_lowp_optimizer_skips_a_non_finite_step_on_the_device():
    """float32 params with 8-bit states: the scaler hands its device flag to the step's kernel."""
    rng = np.random.default_rng(404)
    hp = [rng.standard_normal(n).astype(np.float32) for n in (7, 3000)]
    ps = [cp.asarray(p) for p in hp]
    opt = optim.Adam(ps, lr=1e-2, state_dtype="int8")
    hopt = optim.Adam(hp, lr=1e-2, state_dtype="int8")
    s, hs = GradScaler(init_scale=2.0**10), GradScaler(init_scale=2.0**10)
    good = [(rng.standard_normal(p.size) * 2.0**10).astype(np.float32) for p in hp]
    s.step(opt, [cp.asarray(g) for g in good])
    hs.step(hopt, good)
    s.update()
    hs.update()
    for p, h in zip(ps, hp):  # a clean step: the NumPy optimizer's bits
        np.testing.assert_array_equal(cp.asnumpy(p), h)
    before = [cp.asnumpy(p).copy() for p in ps]
    st = opt.state_dict()["state"]
    state_before = {k: {n: cp.asnumpy(v).copy() for n, v in e.items() if _backend.is_cupy(v)} for k, e in st.items()}
    bad = [cp.asarray(g) for g in good]
    bad[1][17] = cp.nan
    s.step(opt, bad)
    s.update()
    for p, b in zip(ps, before):
        np.testing.assert_array_equal(cp.asnumpy(p), b)
    for k, e in opt.state_dict()["state"].items():
        for n, v in state_before[k].items():
            np.testing.assert_array_equal(cp.asnumpy(e[n]), v, err_msg=f"state[{k}][{n!r}]")
    assert s.get_scale() == 2.0**9


def test_capturable_optimizer_skips_on_the_device_and_keeps_its_counters():
    rng = np.random.default_rng(405)
    hp = [rng.standard_normal(n).astype(np.float32) for n in (7, 3000)]
    ps = [cp.asarray(p) for p in hp]
    opt, ref = optim.Adam(ps, lr=1e-2, capturable=True), optim.Adam(hp, lr=1e-2)
    s, hs = GradScaler(init_scale=2.0**10), GradScaler(init_scale=2.0**10)
    for bad in [False, True, False]:
        g = [(rng.standard_normal(p.size) * 2.0**10).astype(np.float32) for p in hp]
        if bad:
            g[0][3] = np.inf
        s.step(opt, [cp.asarray(x) for x in g])
        hs.step(ref, g)
        s.update()
        hs.update()
        for p, h in zip(ps, hp):  # a skipped step wrote nothing; the next one counts from the same step
            np.testing.assert_allclose(cp.asnumpy(p), h, rtol=2e-5, atol=2e-6)
        assert float(opt.state_dict()["state"][0]["step"]) == ref.state_dict()["state"][0]["step"]
    assert s.get_scale() == hs.get_scale()


@pytest.mark.parametrize("scale", [1000.0, 2.0**10])
def test_half_grads_unscaled_in_the_step_equal_the_cpu(scale):
    """float16 params with fp32 masters: the scaler only checks the grads (amp_check_) and the
    step's kernel unscales them by the device scale (lowp_step's grad_scale): the NumPy run's bits;
    a non-finite grad then skips the step on the device."""
    rng = np.random.default_rng(406)
    hp = [rng.standard_normal(n).astype(np.float16) for n in (1, 7, 1023, 70_001)]
    dp = [cp.asarray(p) for p in hp]
    ho, do = (optim.Adam(x, lr=1e-3, master_weights=True) for x in (hp, dp))
    hs, ds = GradScaler(init_scale=scale), GradScaler(init_scale=scale)
    for _ in range(3):
        g = [(rng.standard_normal(p.size) * 1e-2 * scale).astype(np.float16) for p in hp]
        hs.step(ho, g)
        ds.step(do, [cp.asarray(x) for x in g])
        hs.update()
        ds.update()
        assert ds.get_scale() == hs.get_scale()
        for d, h in zip(dp, hp):
            np.testing.assert_array_equal(cp.asnumpy(d).view(np.uint16), h.view(np.uint16))
    before = [cp.asnumpy(p).copy() for p in dp]
    masters = {k: cp.asnumpy(e["master_param"]).copy() for k, e in do.state_dict()["state"].items()}
    g = [cp.asarray((rng.standard_normal(p.size)).astype(np.float16)) for p in hp]
    g[3][12345] = cp.inf
    ds.step(do, g)
    assert float(ds._found_inf[0]) == 1.0
    ds.update()
    assert ds.get_scale() == hs.get_scale() / 2
    for d, b in zip(dp, before):
        np.testing.assert_array_equal(cp.asnumpy(d).view(np.uint16), b.view(np.uint16))
    for k, e in do.state_dict()["state"].items():
        np.testing.assert_array_equal(cp.asnumpy(e["master_param"]), masters[k])


@pytest.mark.parametrize("fmt", ["float32", "float16"])
def test_amp_check_equals_the_cpu(fmt):
    rng = np.random.default_rng(407)
    dt = np.float32 if fmt == "float32" else np.float16
    hs = [rng.standard_normal(n).astype(dt) for n in SIZES]
    for bad in (None, np.inf, np.nan):
        if bad is not None:
            hs[4][rng.integers(70_001)] = bad
        raw = [h if fmt == "float32" else h.view(np.uint16) for h in hs]
        hf, df = flag(np), flag(cp)
        _cpu.amp_check_(raw, fmt, hf)
        ds = [cp.asarray(r) for r in raw]
        _cuda.amp_check_(ds, fmt, df)
        assert float(df[0]) == hf[0] == (0.0 if bad is None else 1.0)
        for d, r in zip(ds, raw):  # read only
            np.testing.assert_array_equal(cp.asnumpy(d), r)
