"""hessian.cg's per-iteration costs (issue 17: a CG iteration within 10 % of one curvature product).

The fused iteration's thread choice (cpp/cg_threads.hpp) replayed on known timings through
``_cpu.cg_thread_choice_trace``: it compared the path it runs, timed at every call (its last five),
with the other's last five re-timings, spread over up to 5 x 1024 calls. Timings taken at other
times: when the load rose, the fresh times of the right path lost to the stale quiet ones of the
wrong path (three calls of it in a row, each milliseconds under load); when the first timings were
disturbed, the wrong choice stood for 112 calls (three re-timings 16, 32 and 64 calls apart had to
outvote them).

Then the Gauss-Newton operator of ``from_mlp`` telling ``p.G p`` with its product, and cg skipping
its curvature pass for it (``cg_iteration_known_``): the same solve to rounding, the same bits as
``cg_iteration_`` given the same curvature."""

import numpy as np
import pytest

from optkern import _cpu, hessian
from optkern.nn import MLP

EXPLORE = 6  # the first calls: each path timed three times, in turn


def _trace(serial, parallel):
    return _cpu.cg_thread_choice_trace(serial, parallel)


def _runs(choice, value):
    """The lengths of the runs of consecutive calls that chose ``value``."""
    out, k = [], 0
    for c in choice + [not value]:
        if c == value:
            k += 1
        elif k:
            out.append(k)
            k = 0
    return out


def test_a_load_rise_does_not_switch_to_the_stale_faster_path():
    # quiet: one thread 100 us, two 140; then loaded: one thread 200, two 2000 (a worker descheduled)
    calls = 400
    serial = [100e3] * 20 + [200e3] * (calls - 20)
    parallel = [140e3] * 20 + [2000e3] * (calls - 20)
    choice = _trace(serial, parallel)
    assert choice[EXPLORE : EXPLORE + 14] == [False] * 14
    # after the exploration the other path only runs alone, once per re-timing
    assert _runs(choice[EXPLORE:], True) == [1] * sum(choice[EXPLORE:])
    assert sum(choice[EXPLORE:]) <= 6


def test_a_disturbed_first_timing_is_corrected_at_the_first_re_timing():
    # the one-thread path timed while something else ran (300 us), then 100 us; two threads 140 throughout
    calls = 300
    serial = [300e3] * EXPLORE + [100e3] * (calls - EXPLORE)
    parallel = [140e3] * calls
    choice = _trace(serial, parallel)
    assert choice[EXPLORE] is True  # (chosen on the disturbed timings)
    # the re-timing of one thread 16 calls later shows it faster: both timed afresh, in turn, and
    # one thread chosen; from then on two threads only at the re-timings
    assert sum(choice[40:]) <= 5
    assert _runs(choice[40:], True) == [1] * sum(choice[40:])


@pytest.mark.parametrize("faster", [False, True])
def test_the_faster_path_is_kept(faster):
    calls = 600
    fast, slow = [100e3] * calls, [150e3] * calls
    choice = _trace(slow if faster else fast, fast if faster else slow)
    rest = choice[EXPLORE:]
    # the slower path re-timed alone after 16, 32, ... calls: log2(600 / 16) + 1 times at most
    assert sum(c != faster for c in rest) <= 6
    assert _runs(rest, not faster) == [1] * sum(c != faster for c in rest)


def test_trace_refuses_unequal_lengths():
    with pytest.raises(ValueError, match="serial_ns, parallel_ns"):
        _trace([1.0, 2.0], [1.0])


# ---- the Gauss-Newton operator's curvature without the curvature pass (cg_iteration_known_) ----


def _mlp(loss="cross_entropy", batch=96, seed=0):
    model = MLP([20, 16, 5], activation="tanh", dtype=np.float32, loss=loss)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, 20)).astype(np.float32)
    y = rng.integers(0, 5, batch) if loss == "cross_entropy" else rng.standard_normal((batch, 5)).astype(np.float32)
    return model, model.init_params(seed), x, y


def _counting(monkeypatch, names):
    calls = dict.fromkeys(names, 0)
    for name in names:
        fn = getattr(_cpu, name)
        monkeypatch.setattr(_cpu, name, lambda *a, _f=fn, _n=name: (calls.__setitem__(_n, calls[_n] + 1), _f(*a))[1])
    return calls


@pytest.mark.parametrize("damping", [0.0, 1e-2])
@pytest.mark.parametrize("loss, fixed", [("cross_entropy", False), ("mse", False), ("cross_entropy", True)])
def test_mlp_ggn_cg_takes_the_products_curvature(monkeypatch, damping, loss, fixed):
    model, p, x, y = _mlp(loss)
    G = hessian.from_mlp(model, p, x, y, kind="ggn", fixed=fixed)
    # (on one batch cg's update runs inside the product, tests/test_hunt47g_cg_fused.py; this path is
    # the one of several batches)
    G._quad_then = None
    generic = hessian.from_hvp(G.matvec, G.shape[0], np.float32)  # (the same products, the pass kept)
    b = np.random.default_rng(3).standard_normal(G.shape[0]).astype(np.float32)
    calls = _counting(monkeypatch, ["cg_iteration_", "cg_iteration_known_"])
    res = hessian.cg(G, b, rtol=0.0, maxiter=15, damping=damping)
    assert calls == {"cg_iteration_": 0, "cg_iteration_known_": 15}
    assert res.num_matvecs == 15 and G.num_matvecs == 15
    ref = hessian.cg(generic, b, rtol=0.0, maxiter=15, damping=damping)
    assert calls["cg_iteration_"] == 15
    assert res.iterations == ref.iterations == 15 and ref.num_matvecs == 15
    np.testing.assert_allclose(res.x, ref.x, rtol=2e-3, atol=2e-3 * np.abs(ref.x).max())
    np.testing.assert_allclose(res.residual_norm, ref.residual_norm, rtol=2e-2)
    # the solution solves the damped system as well as the generic solve's does
    Ax = G.matvec(res.x) + damping * res.x
    assert np.linalg.norm(Ax - b) <= 1.02 * np.linalg.norm(G.matvec(ref.x) + damping * ref.x - b) + 1e-6


def test_mlp_ggn_quadratic_form_is_v_dot_gv():
    model, p, x, y = _mlp()
    v = np.random.default_rng(4).standard_normal(model.num_params).astype(np.float32)
    gv, q = model._ggn_vp_quad(p, x, y, v)
    np.testing.assert_array_equal(gv, model.ggn_vp(p, x, y, v))
    assert q == pytest.approx(float(np.dot(v.astype(np.float64), gv.astype(np.float64))), rel=1e-5)


def test_mlp_ggn_quadratic_form_over_weighted_batches():
    model, p, x, y = _mlp(batch=120)
    batches = [(x[:40], y[:40]), (x[40:], y[40:])]
    G = hessian.from_mlp(model, p, batches=batches, kind="ggn")
    v = np.random.default_rng(5).standard_normal(model.num_params).astype(np.float32)
    gv, q = G._quad(v)
    np.testing.assert_allclose(gv, G.matvec(v), rtol=1e-5, atol=1e-7)
    assert q == pytest.approx(float(np.dot(v.astype(np.float64), gv.astype(np.float64))), rel=1e-5)


def test_only_the_whole_ggn_operator_tells_its_curvature():
    model, p, x, y = _mlp()
    assert hessian.from_mlp(model, p, x, y, kind="ggn")._quad is not None
    assert hessian.from_mlp(model, p, x, y, kind="hessian")._quad is None
    assert hessian.from_mlp(model, p, x, y, kind="ggn", block="layer1")._quad is None
    assert hessian.from_mlp(model, p, x, y, kind="ggn", block=["layer1", "layer2"])._quad is None
    assert hessian.from_hvp(lambda v: 2.0 * v, 4, np.float32)._quad is None


@pytest.mark.parametrize("damping", [0.0, 0.25])
def test_cg_iteration_known_is_cg_iteration_given_its_curvature(damping):
    n = 70_001  # (chunks on two threads: the tests' OPTKERN_SERIAL_BELOW)
    rng = np.random.default_rng(6)
    r = rng.standard_normal(n).astype(np.float32)
    p = (r + 0.3 * rng.standard_normal(n)).astype(np.float32)
    y = (p * rng.uniform(0.5, 2.0, n)).astype(np.float32)
    x = rng.standard_normal(n).astype(np.float32)
    rz = _cpu.cg_curvature(r, r, 0.0)
    a = [v.copy() for v in (x, r, p)]
    pAp, rr = _cpu.cg_iteration_(*a, y, rz, damping, 0.0, True)
    assert pAp == _cpu.cg_curvature(p, y, damping)
    k = [v.copy() for v in (x, r, p)]
    rr_k, pp = _cpu.cg_iteration_known_(*k, y, pAp, rz, damping, 0.0, True)
    assert rr_k == rr
    for u, w in zip(a, k):
        np.testing.assert_array_equal(u, w)
    assert pp == (_cpu.cg_curvature(k[2], k[2], 0.0) if damping else 0.0)


def test_cg_iteration_known_writes_nothing_where_it_stops():
    rng = np.random.default_rng(7)
    x, r, p, y = (rng.standard_normal(1000).astype(np.float32) for _ in range(4))
    before = [v.copy() for v in (x, r, p)]
    rr, pp = _cpu.cg_iteration_known_(x, r, p, y, -1.0, 1.0, 0.1, 0.0, True)  # negative curvature
    assert np.isnan(rr) and np.isnan(pp)
    for u, w in zip(before, (x, r, p)):
        np.testing.assert_array_equal(u, w)
    rr, pp = _cpu.cg_iteration_known_(x, r, p, y, 2.0, 1.0, 0.1, 1e30, True)  # converged: p kept
    assert np.isfinite(rr) and np.isnan(pp)
    np.testing.assert_array_equal(p, before[2])
    with pytest.raises(ValueError, match="y"):
        _cpu.cg_iteration_known_(x, r, p, y[:-1], 2.0, 1.0, 0.1, 0.0, True)
