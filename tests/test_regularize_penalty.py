"""L1 / L2 penalty kernels: float64 reference, finite differences, determinism, bad input."""

import os
import subprocess
import sys

import numpy as np
import pytest

import exact_rounding
import optkern
from optkern import regularize as R

SIZES = [0, 1, 7, 1023, 70001]  # 70001 > one 64K chunk: several chunks, parallel path


def ref_grad(p, g, l1, l2):
    p64 = p.astype(np.float64)
    return g.astype(np.float64) + l2 * p64 + l1 * np.sign(p64)


def ref_value(ps, l1, l2):
    return sum(l1 * np.abs(p.astype(np.float64)).sum() + 0.5 * l2 * (p.astype(np.float64) ** 2).sum() for p in ps)


@pytest.mark.parametrize("dtype, rtol", [(np.float32, 1e-6), (np.float64, 1e-14)])
def test_penalty_grad_matches_float64_reference(dtype, rtol):
    rng = np.random.default_rng(1)
    ps = [rng.standard_normal(n).astype(dtype) for n in SIZES] + [rng.standard_normal((3, 5, 7)).astype(dtype)]
    ps[3][::5] = 0  # sign(0) = 0
    gs = [rng.standard_normal(p.shape).astype(dtype) for p in ps]
    want = [ref_grad(p, g, 0.03, 0.2) for p, g in zip(ps, gs)]
    g0 = [g.copy() for g in gs]
    val = R.add_penalty_grad_(ps, gs, l1=0.03, l2=0.2, return_value=True)
    for i, (g, w) in enumerate(zip(gs, want)):
        assert g.dtype == dtype
        np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol, err_msg=f"grads[{i}]")
        if g.size <= 1023:  # and exactly: g + l2 p as one fma (like weight decay), + l1 sign(p) rounded once
            p = ps[i]
            exact = exact_rounding.fma(dtype(0.2), p, g0[i]) + dtype(0.03) * np.sign(p)
            np.testing.assert_array_equal(g, exact, err_msg=f"grads[{i}]")
    assert val == pytest.approx(ref_value(ps, 0.03, 0.2), rel=1e-12)
    assert R.penalty(ps, 0.03, 0.2) == pytest.approx(ref_value(ps, 0.03, 0.2), rel=1e-12)


def test_single_array_and_empty_list():
    rng = np.random.default_rng(2)
    p = rng.standard_normal(7)
    g = rng.standard_normal(7)
    g0 = g.copy()
    assert R.add_penalty_grad_(p, g, l2=0.5) is None
    np.testing.assert_allclose(g, g0 + 0.5 * p, rtol=1e-15)
    assert R.penalty([], 1.0, 1.0) == 0.0


def test_gradient_matches_finite_differences():
    rng = np.random.default_rng(3)
    ps = [rng.standard_normal(5) + np.sign(rng.standard_normal(5)) * 0.5 for _ in range(2)]  # away from 0
    gs = [np.zeros_like(p) for p in ps]
    l1, l2, h = 0.07, 0.3, 1e-6
    R.add_penalty_grad_(ps, gs, l1, l2)
    for k, p in enumerate(ps):
        for i in range(p.size):
            old = p[i]
            p[i] = old + h
            up = R.penalty(ps, l1, l2)
            p[i] = old - h
            down = R.penalty(ps, l1, l2)
            p[i] = old
            assert gs[k][i] == pytest.approx((up - down) / (2 * h), rel=1e-6, abs=1e-8)


def test_value_bitwise_same_for_any_thread_count():
    code = (
        "import numpy as np, optkern.regularize as R;"
        "rng=np.random.default_rng(5);"
        "ps=[rng.standard_normal(n).astype(np.float32) for n in (300000, 7, 65537)];"
        "print(repr(R.penalty(ps, 0.1, 0.01)))"
    )
    outs = set()
    for threads in ("1", "2", "3"):
        env = dict(
            os.environ,
            OMP_NUM_THREADS=threads,
            PYTHONPATH=os.pathsep.join(
                [os.path.dirname(os.path.dirname(optkern.__file__)), os.environ.get("PYTHONPATH", "")]
            ),
        )
        outs.add(
            subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True).stdout
        )
    assert len(outs) == 1


def test_bad_inputs_raise_before_writing():
    rng = np.random.default_rng(4)
    ps = [rng.standard_normal(4).astype(np.float32) for _ in range(3)]
    gs = [rng.standard_normal(4).astype(np.float32) for _ in range(3)]
    before = [g.copy() for g in gs]
    with pytest.raises(TypeError, match=r"grads\[2\]: expected float32, got float64"):
        R.add_penalty_grad_(ps, gs[:2] + [gs[2].astype(np.float64)], 0.1, 0.1)
    with pytest.raises(ValueError, match=r"grads\[1\]: expected 4 elements, got 3"):
        R.add_penalty_grad_(ps, [gs[0], gs[1][:3].copy(), gs[2]], 0.1, 0.1)
    with pytest.raises(ValueError, match=r"grads"):
        R.add_penalty_grad_(ps, gs[:2], 0.1, 0.1)
    with pytest.raises(ValueError, match=r"shares memory"):
        R.add_penalty_grad_(ps, [gs[0], ps[1], gs[2]], 0.1, 0.1)
    with pytest.raises(ValueError, match="C-contiguous"):
        R.add_penalty_grad_([np.zeros(8, np.float32)[::2]], [gs[0]], 0.1, 0.1)
    ro = gs[0].copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"grads\[0\]: array is read-only"):
        R.add_penalty_grad_(ps[:1], [ro], 0.1, 0.1)
    with pytest.raises(ValueError, match="l1"):
        R.add_penalty_grad_(ps, gs, -0.1, 0.1)
    with pytest.raises(ValueError, match="l2"):
        R.penalty(ps, 0.1, float("nan"))
    with pytest.raises(TypeError, match=r"params\[0\]: expected float32 or float64"):
        R.penalty([np.ones(3, np.int32)])
    with pytest.raises(TypeError, match="params"):
        R.penalty([[1.0, 2.0]])
    for g, b in zip(gs, before):
        np.testing.assert_array_equal(g, b)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_nonfinite_l1_is_rejected_before_writing(bad):
    rng = np.random.default_rng(7)
    ps = [rng.standard_normal(5) for _ in range(2)]
    gs = [rng.standard_normal(5) for _ in range(2)]
    before = [g.copy() for g in gs]
    with pytest.raises(ValueError, match="^l1: must be finite"):
        R.add_penalty_grad_(ps, gs, bad, 0.1)
    with pytest.raises(ValueError, match="^l1: must be finite"):
        R.add_penalty_grad_(ps, gs, bad, 0.1, return_value=True)
    with pytest.raises(ValueError, match="^l1: must be finite"):
        R.penalty(ps, bad, 0.1)
    for g, b in zip(gs, before):
        np.testing.assert_array_equal(g, b)


def test_cuda_matches_cpu():
    cp = pytest.importorskip("cupy", reason="CuPy is not installed: CUDA penalty kernels untested here")
    if not optkern.cuda_built() or optkern.info()["cuda_devices"] == 0:
        pytest.skip("optkern._cuda not built or no CUDA device")
    rng = np.random.default_rng(6)
    ps = [rng.standard_normal(n).astype(np.float32) for n in SIZES + [5] * 70]  # > 64 arrays: two launches
    gs = [rng.standard_normal(p.shape).astype(np.float32) for p in ps]
    dps, dgs = [cp.asarray(p) for p in ps], [cp.asarray(g) for g in gs]
    v_cpu = R.add_penalty_grad_(ps, gs, 0.01, 0.1, return_value=True)
    v_gpu = R.add_penalty_grad_(dps, dgs, 0.01, 0.1, return_value=True)
    for g, dg in zip(gs, dgs):
        np.testing.assert_allclose(cp.asnumpy(dg), g, rtol=1e-6, atol=1e-6)
    assert float(v_gpu) == pytest.approx(v_cpu, rel=1e-12)
    # the GPU value against the CPU one (both accumulate in float64, whatever the arrays' dtype)
    p_gpu = float(R.penalty(dps, 0.01, 0.1))
    assert p_gpu == pytest.approx(R.penalty(ps, 0.01, 0.1), rel=1e-12)
    assert float(R.penalty(dps, 0.01, 0.1)) == p_gpu  # repeatable: the same bits on a second call
