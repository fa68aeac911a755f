"""Fuzzing the MLP (loss, gradient, Hessian-vector product), the Hessian estimators' arguments,
the low-precision conversions and the schedules against the contract in fuzz_contract.py."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
from hypothesis import given, note
from hypothesis import strategies as st

from fuzz_contract import ARRAY_SPOILS, assert_close, check_call, spoiled, still_valid
from optkern import hessian, lowp, schedules
from optkern.nn import MLP

pytestmark = pytest.mark.fuzz

INPUTS = ("strided", "negative_stride", "broadcast", "fortran", "misaligned", "read_only")

# ---- MLP ----------------------------------------------------------------------------------


@st.composite
def mlp_calls(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    sizes = [draw(st.integers(1, 6)) for _ in range(draw(st.integers(2, 4)))]
    sizes[-1] = max(sizes[-1], 2)
    loss = draw(st.sampled_from(["cross_entropy", "mse"]))
    model = MLP(sizes, activation=draw(st.sampled_from(["tanh", "relu", "softplus"])), loss=loss, dtype=dtype)
    n = draw(st.sampled_from([1, 2, 7]))
    x = rng.standard_normal((n, sizes[0])).astype(dtype)
    y = rng.integers(0, sizes[-1], n) if loss == "cross_entropy" else rng.standard_normal((n, sizes[-1])).astype(dtype)
    kw = dict(params=model.init_params(seed=1), x=x, y=y, v=rng.standard_normal(model.num_params).astype(dtype))
    what = draw(st.sampled_from(["none", "array", "labels"]))
    spoil = ("none",)
    if what == "array":
        spoil = ("array", draw(st.sampled_from(["params", "x", "y", "v"])), draw(st.sampled_from(ARRAY_SPOILS)))
    elif what == "labels" and loss == "cross_entropy":
        spoil = ("labels", draw(st.sampled_from([-1, sizes[-1], 2**40])))
    return model, kw, spoil, draw(st.sampled_from(["loss", "loss_and_grad", "hvp"]))


def _mlp_reference(model, kw, method):
    """The same quantity from the float64 model (and for hvp, central differences of its gradient)."""
    m64 = MLP(model.sizes, activation=model.activation, loss=model.loss_kind, dtype=np.float64)
    p = np.array(kw["params"], np.float64)
    x, y = np.array(kw["x"], np.float64), np.asarray(kw["y"])
    y = y if model.loss_kind == "cross_entropy" else np.array(y, np.float64)
    if method == "loss":
        return m64.loss(p, x, y)
    if method == "loss_and_grad":
        return m64.loss_and_grad(p, x, y)[1]
    v = np.array(kw["v"], np.float64)
    if model.activation == "relu":  # piecewise linear: differences across a kink are not H v
        return m64.hvp(p, x, y, v)
    h = 1e-4 / max(float(np.linalg.norm(v)), 1e-300)
    return (m64.loss_and_grad(p + h * v, x, y)[1] - m64.loss_and_grad(p - h * v, x, y)[1]) / (2 * h)


@given(case=mlp_calls())
def test_mlp(case):
    model, kw, spoil, method = case
    rng = np.random.default_rng(3)
    names, ok = ("params",), True
    if spoil[0] == "array":
        _, key, s = spoil
        orig = kw[key]
        kw[key] = spoiled(orig, s.kind, rng)
        ok = still_valid(orig, kw[key]) or s.kind in ("nan", "inf") + INPUTS
        if key in ("x", "y") and s.kind in ("other_float", "int32", "int64", "float16"):
            ok = True  # inputs, labels and targets of any real dtype are converted
        names = (key,)
        ok = ok or (key == "v" and method != "hvp")  # v is not an argument of loss / loss_and_grad
    elif spoil[0] == "labels":
        kw["y"] = kw["y"].copy()
        kw["y"][0] = spoil[1]
        names, ok = ("y", "labels"), False
    note(f"{method} {model} spoil={spoil}")
    args = [kw["params"], kw["x"], kw["y"]] + ([kw["v"]] if method == "hvp" else [])
    done, res = check_call(lambda: getattr(model, method)(*args), names, state=kw, ok=ok)
    if not done:
        return
    if method == "loss_and_grad":
        res = res[1]
    with np.errstate(all="ignore"):
        ref = _mlp_reference(model, kw, method)
    if not np.isfinite(ref).all():
        return
    rtol = 1e-3 if model.dtype == np.float32 else (1e-5 if method == "hvp" else 1e-9)
    scale = None
    if method == "hvp":
        # measured against the size of H times a vector like v, not of H v itself: a v that H
        # (nearly) annihilates gives a product of rounding noise (v = 0.64 (1, 1, 1, 1) on a
        # softmax layer: 0.0 exactly here, -7e-13 in the float64 reference)
        with np.errstate(all="ignore"):
            u = np.random.default_rng(4).standard_normal(np.shape(kw["v"]))
            u *= float(np.linalg.norm(np.asarray(kw["v"], np.float64))) / max(float(np.linalg.norm(u)), 1e-300)
            ref_u = _mlp_reference(model, dict(kw, v=u.astype(np.asarray(kw["v"]).dtype)), method)
        scale = max(float(np.max(np.abs(ref), initial=0.0)), float(np.max(np.abs(ref_u), initial=0.0)))
        scale = scale if np.isfinite(scale) and scale > 0 else None
    assert_close(np.asarray(res), np.asarray(ref), model.dtype, method, scale=scale, rtol=rtol)


# ---- Hessian estimators' arguments --------------------------------------------------------

ESTIMATORS = {
    "top_eigenvalues": (hessian.top_eigenvalues, dict(k=1, which="LA", tol=1e-8, max_steps=None, seed=0, block_size=1)),
    "power_iteration": (hessian.power_iteration, dict(max_iter=200, tol=1e-9, seed=0)),
    "trace": (hessian.trace, dict(method="hutchinson", num_matvecs=4, seed=0)),
    "spectral_density": (hessian.spectral_density, dict(num_probes=1, steps=5, grid=50, seed=0)),
}
BAD_ARGS = [None, "x", -1, 0, 1.5, float("nan"), float("inf"), [1], True]


@pytest.mark.parametrize("name", list(ESTIMATORS))
@given(data=st.data())
def test_hessian_estimator_arguments(name, data):
    fn, defaults = ESTIMATORS[name]
    n = data.draw(st.sampled_from([1, 2, 5, 12]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    a = rng.standard_normal((n, n))
    A = a @ a.T + np.eye(n)
    kw = dict(defaults)
    op = A
    key = data.draw(st.sampled_from(["none", "op", *kw]))
    names, ok = (key,), True
    if key == "op":
        op = data.draw(st.sampled_from([None, "A", A[:, :-1] if n > 1 else np.zeros((1, 2)), A.astype(object), 3.0]))
        names, ok = ("op", "A"), False
    elif key != "none":
        kw[key] = data.draw(st.sampled_from(BAD_ARGS))
        ok = None  # some bad-looking values are valid (checked by the result)
    note(f"{name} {key}={kw.get(key, op if key == 'op' else None)!r}")
    snap = [A.copy()]
    done, res = check_call(lambda: fn(op, **kw), names, state=[op], ok=ok is not False)
    assert np.array_equal(A, snap[0])
    if not done:
        return
    top = float(np.linalg.eigvalsh(A)[-1])
    if key not in ("none", "op", "seed"):
        return  # a looser tol, fewer steps, another k: accuracy is not the point of this test
    if name == "top_eigenvalues":
        assert_close(np.asarray(res.eigenvalues)[-1:], [top], np.float64, "eigenvalue", rtol=1e-6)
    elif name == "power_iteration" and res.converged and kw["tol"] == defaults["tol"]:
        assert_close(np.asarray([res.eigenvalue]), [top], np.float64, "eigenvalue", rtol=1e-3)
    elif name == "trace":
        assert math.isfinite(float(res.estimate))


# ---- low-precision conversions --------------------------------------------------------------


@given(data=st.data())
def test_lowp_conversions(data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    shape = data.draw(st.sampled_from([(0,), (1,), (7,), (3, 5), (1023,)]))
    scale = data.draw(st.sampled_from([1.0, 1e-30, 1e30, 1e38]))
    with np.errstate(over="ignore"):  # |x| beyond float32's max is inf, as intended
        x = (rng.standard_normal(shape) * scale).astype(np.float32)
    fmt = data.draw(st.sampled_from(["float16", "bfloat16"]))
    spoil = data.draw(st.sampled_from([None, *ARRAY_SPOILS]))
    names, ok = ("x",), True
    if spoil is not None:
        orig = x
        x = spoiled(orig, spoil.kind, rng)
        ok = still_valid(orig, x) or spoil.kind in ("nan", "inf", "size+1", "size-1", "extra_dim") + INPUTS
    note(f"{fmt} spoil={spoil}")
    done, h = check_call(lambda: lowp.to_half(x, fmt, raw=True), names, state=[x], ok=ok)
    if not done:
        return
    back = lowp.from_half(h, fmt)
    xin = np.asarray(x, np.float32)
    if fmt == "float16":
        with np.errstate(over="ignore"):
            ref = xin.astype(np.float16).astype(np.float32)
    else:
        ml = pytest.importorskip("ml_dtypes")
        ref = xin.astype(ml.bfloat16).astype(np.float32)
    both_nan = np.isnan(ref) & np.isnan(back)
    assert np.array_equal(back[~both_nan], ref[~both_nan]), "round to nearest even differs from the reference"


@given(data=st.data())
def test_lowp_blockwise(data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x = (rng.standard_normal(data.draw(st.sampled_from([(0,), (1,), (7,), (1023,)]))) * 3).astype(np.float32)
    block = data.draw(st.sampled_from([1, 2, 64, 256, 0, -1, None, 2.5, "8"]))
    ok = isinstance(block, int) and block >= 1
    done, res = check_call(lambda: lowp.quantize_blockwise(x, block), ("block",), state=[x], ok=ok)
    if not done:
        return
    codes, scales = res
    back = lowp.dequantize_blockwise(codes, scales, block)
    assert back.shape == x.shape
    err = np.abs(back - x)
    # an 8-bit dynamic code: within a block, error at most ~1/16 of the block's absmax (plus the scale)
    for i in range(0, x.size, block):
        blk = np.abs(x[i : i + block])
        assert float(err[i : i + block].max(initial=0)) <= 0.07 * float(blk.max(initial=0)) + 1e-30
    bad = data.draw(st.sampled_from([None, "codes", "scales"]))
    if bad == "codes":
        check_call(lambda: lowp.dequantize_blockwise(codes.astype(np.int8), scales, block), ("codes",), ok=False)
    elif bad == "scales" and scales.size:
        check_call(lambda: lowp.dequantize_blockwise(codes, scales[:-1], block), ("scales", "codes"), ok=False)


# ---- schedules ----------------------------------------------------------------------------

SCHEDULES = [
    schedules.linear,
    schedules.step_decay,
    schedules.multi_step,
    schedules.exponential,
    schedules.inverse_time,
    schedules.polynomial,
    schedules.cosine,
    schedules.cosine_restarts,
    schedules.cyclic,
    schedules.linear_warmup,
    schedules.warmup_cosine,
]
VALUES = [0, 1, 2, 0.5, 0.999, 10, 1000, 1e-300, 1e300, 2**62, -1, None, "1", float("nan"), float("inf"), [3, 1]]


@pytest.mark.parametrize("cls", SCHEDULES, ids=lambda c: c.__name__)
@given(data=st.data())
def test_schedule(cls, data):
    params = [p for p in inspect.signature(cls).parameters.values() if p.kind is p.POSITIONAL_OR_KEYWORD]
    kw = {
        p.name: data.draw(st.sampled_from(VALUES)) for p in params if p.default is p.empty or data.draw(st.booleans())
    }
    note(f"{cls.__name__}({kw})")
    # an error may name any argument: a value can be wrong on its own or against another (max_lr < base_lr)
    done, sched = check_call(lambda: cls(**kw), tuple(p.name for p in params) or ("",), state=[])
    if not done:
        return
    step = data.draw(st.sampled_from([0, 1, 7, 10**6, 2**62, -1, 1.5, None, "3", np.int64(5), True]))
    good_step = isinstance(step, (int, np.integer)) and not isinstance(step, bool) and step >= 0
    # (a valid step may still overflow a growing schedule, gamma > 1 at step 10**6: the error then
    # names the schedule, its arguments being what overflowed)
    done, value = check_call(lambda: sched(step), ("step", "schedule"), ok=good_step or step is True)
    if done:
        assert isinstance(value, float) and math.isfinite(value), f"{cls.__name__}({kw})({step}) = {value!r}"
