"""Fuzzing the public functions the other fuzz files do not reach, against fuzz_contract.py: the
SWALP quantizers, AveragedParams, GradScaler, the penalties, activations and cross-entropy, the
norm modules, the Hessian solvers' and estimators' arguments, optkern.random, checkpoint targets
and the single-rank collectives. Flags, options and scalars from a table of bad values; arrays
spoiled one at a time; what is accepted is compared with a float64 reference."""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
from hypothesis import given, note
from hypothesis import strategies as st

import optkern
from fuzz_contract import ARRAY_SPOILS, assert_close, check_call, spoiled, still_valid
from optkern import hessian, lowp, optim
from optkern import random as okrandom
from optkern.amp import GradScaler
from optkern.nn import activation, softmax_cross_entropy
from optkern.norm import BatchNorm, GroupNorm, LayerNorm, RMSNorm
from optkern.swa import AveragedParams
from optkern.swalp import SWALP

pytestmark = pytest.mark.fuzz
penalty = importlib.import_module("optkern.regularize.penalty")

LAYOUT = ("strided", "negative_stride", "broadcast", "fortran", "misaligned", "read_only")
VALUES = ("nan", "inf")
ANY_SHAPE = ("size+1", "size-1", "extra_dim")
NONE_OK = ("momentum", "maxiter", "sigma", "tol", "max_steps")  # (None: the documented default)
#: bad and odd values for any scalar, flag or option: wrong types, numpy scalars, extremes
ODD = [None, "1", "no", [1], (1,), np.array([1, 2]), True, False, np.bool_(True), np.float32(0.5), np.int64(3)]
ODD += [2**70, -(2**70), -0.0, 0, 1, -1, 1.5, 64, 1e300, 1e-320, float("nan"), float("inf"), 1j]


def _is_bool(v) -> bool:
    return isinstance(v, (bool, np.bool_))


def _rng(data):
    return np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))


def _unscaled_scaler():
    """A scaler with an inf check recorded: update() then takes new_scale=None too."""
    s = GradScaler()
    s.unscale_([X4.copy()])
    return s


def _spd(rng, n):
    a = rng.standard_normal((n, n))
    return a @ a.T + np.eye(n)


# ---- flags and options: bools only, strings only --------------------------------------------

X4 = np.linspace(-1, 1, 4).astype(np.float32)
FLAGS = {
    "GradScaler.enabled": lambda v: GradScaler(enabled=v),
    "to_half.raw": lambda v: lowp.to_half(X4, raw=v),
    "decode_map.signed": lambda v: lowp.decode_map(v),
    "add_penalty_grad_.return_value": lambda v: penalty.add_penalty_grad_([X4], [X4.copy()], return_value=v),
    "cg.stop_on_negative_curvature": lambda v: hessian.cg(np.eye(3), np.ones(3), stop_on_negative_curvature=v),
    "lanczos.return_vectors": lambda v: hessian.lanczos(np.eye(3), 2, return_vectors=v),
    "lanczos.return_ritz": lambda v: hessian.lanczos(np.eye(3), 2, return_ritz=v),
    "top_eigenvalues.return_eigenvectors": lambda v: hessian.top_eigenvalues(np.eye(3), 1, return_eigenvectors=v),
    "BatchNorm.affine": lambda v: BatchNorm(3, affine=v),
    "BatchNorm.track_running_stats": lambda v: BatchNorm(3, track_running_stats=v),
    "LayerNorm.elementwise_affine": lambda v: LayerNorm(3, elementwise_affine=v),
    "LayerNorm.bias": lambda v: LayerNorm(3, bias=v),
    "GroupNorm.affine": lambda v: GroupNorm(1, 3, affine=v),
    "RMSNorm.elementwise_affine": lambda v: RMSNorm(3, elementwise_affine=v),
    "BatchNorm.forward.training": lambda v: BatchNorm(3).forward(np.ones((2, 3), np.float32), training=v),
}
Z = np.linspace(-2, 2, 6).reshape(2, 3)
OPTIONS = {  # an option is one of a few strings: anything else is refused
    "activation": lambda v: activation(v, Z),
    "reduction": lambda v: softmax_cross_entropy(Z, np.array([0, 2]), reduction=v),
    "which": lambda v: hessian.top_eigenvalues(np.eye(3), 1, which=v),
    "reorthogonalize": lambda v: hessian.lanczos(np.eye(3), 2, reorthogonalize=v),
    "basis": lambda v: hessian.lanczos(np.eye(3), 2, basis=v),
    "rounding": lambda v: lowp.quantize_fixed_point(X4, rounding=v),
    "dtype": lambda v: lowp.to_half(X4, v),
    "mode": lambda v: AveragedParams([X4], mode=v),
    "method": lambda v: hessian.trace(np.eye(3), method=v, num_matvecs=4),
}


@pytest.mark.parametrize("key", list(FLAGS))
@given(value=st.sampled_from(ODD))
def test_flags(key, value):
    note(f"{key}={value!r}")
    check_call(lambda: FLAGS[key](value), (key.rsplit(".", 1)[-1],), ok=_is_bool(value))


@pytest.mark.parametrize("key", list(OPTIONS))
@given(value=st.sampled_from(ODD))
def test_options(key, value):
    check_call(lambda: OPTIONS[key](value), (key,), ok=key == "basis" and value is None)  # (None: the default)


# ---- scalars: a TypeError / ValueError naming them, or a result ------------------------------

SCALARS = {
    "quantize_fixed_point": (
        lambda **k: lowp.quantize_fixed_point(X4, **k),
        ("bits", "frac", "seed", "step", "offset"),
    ),
    "quantize_block_fp": (lambda **k: lowp.quantize_block_fp(X4, **k), ("bits", "block", "seed", "step", "offset")),
    "quantize_blockwise": (lambda **k: lowp.quantize_blockwise(X4, **k), ("block",)),
    "to_half": (lambda **k: lowp.to_half(X4, rounding="stochastic", **k), ("seed", "step", "offset")),
    "GradScaler": (GradScaler, ("init_scale", "growth_factor", "backoff_factor", "growth_interval")),
    "GradScaler.update": (lambda **k: _unscaled_scaler().update(**k), ("new_scale",)),
    "AveragedParams": (lambda **k: AveragedParams([X4.copy()], mode="ema", **k), ("decay",)),
    "SWALP": (lambda **k: SWALP([X4.copy()], **{"lr": 0.1, **k}), ("lr", "momentum", "bits", "cycle")),
    "penalty": (lambda **k: penalty.penalty([X4], **k), ("l1", "l2")),
    "activation": (lambda **k: activation("tanh", Z, **k), ("order",)),
    "softmax_cross_entropy": (
        lambda **k: softmax_cross_entropy(Z, np.array([0, 2]), **k),
        ("label_smoothing", "confidence_penalty"),
    ),
    "BatchNorm": (lambda **k: BatchNorm(**{"num_features": 3, **k}), ("num_features", "eps", "momentum")),
    "GroupNorm": (lambda **k: GroupNorm(**{"num_groups": 1, "num_channels": 3, **k}), ("num_groups", "eps")),
    "cg": (lambda **k: hessian.cg(np.eye(3) * 2, np.ones(3), **k), ("rtol", "atol", "maxiter", "damping")),
    "lanczos": (lambda **k: hessian.lanczos(np.eye(4), **{"steps": 2, **k}), ("steps", "seed")),
    "spectral_density": (
        lambda **k: hessian.spectral_density(np.eye(4), **{"steps": 2, "grid": 8, **k}),
        ("num_probes", "steps", "grid", "sigma", "seed", "pad", "probes_per_block"),
    ),
    "gradient_concentration": (
        lambda **k: hessian.gradient_concentration(np.diag([3.0, 2, 1]), np.ones(3), **{"k": 1, **k}),
        ("k", "tol", "max_steps", "seed"),
    ),
    "uniform": (lambda **k: okrandom.uniform(**{"shape": 3, "seed": 0, **k}), ("shape", "seed", "offset")),
    "rademacher": (lambda **k: okrandom.rademacher(**{"shape": 3, "seed": 0, **k}), ("shape", "seed", "offset")),
}


@pytest.mark.parametrize("key", list(SCALARS))
@given(data=st.data())
def test_scalars(key, data):
    fn, names = SCALARS[key]
    name = data.draw(st.sampled_from(names))
    value = data.draw(st.sampled_from(ODD))
    note(f"{key}({name}={value!r})")
    ok = not isinstance(value, (str, list, tuple, complex, np.ndarray, type(None)))  # never a number
    ok = ok and not (isinstance(value, float) and not math.isfinite(value))
    ok = ok or (value is None and name in NONE_OK)
    ok = (
        ok
        or (name in ("shape", "grid") and isinstance(value, (list, tuple, np.ndarray)))
        or (value is None and key == "GradScaler.update")
    )
    done, res = check_call(lambda: fn(**{name: value}), (name,) + tuple(n for n in names if n != name), ok=ok)
    if done and isinstance(res, np.ndarray) and res.dtype.kind == "f" and key not in ("penalty",):
        assert res.size == 0 or np.isfinite(res).all(), f"{key}({name}={value!r}): non-finite result"


# ---- the SWALP quantizers -------------------------------------------------------------------


@given(data=st.data())
def test_quantize_fixed_point(data):
    rng = _rng(data)
    shape = data.draw(st.sampled_from([(0,), (1,), (7,), (3, 5), (1023,)]))
    x = (rng.standard_normal(shape) * data.draw(st.sampled_from([1.0, 1e-3, 1e3]))).astype(np.float32)
    bits, frac = data.draw(st.integers(2, 24)), data.draw(st.integers(-4, 30))
    rounding = data.draw(st.sampled_from(["nearest", "stochastic"]))
    where = data.draw(st.sampled_from(["x", "out", "in_place", None]))
    s = data.draw(st.sampled_from(ARRAY_SPOILS))
    out, names, ok = None, ("x",), True
    if where == "x":
        x2 = spoiled(x, s.kind, rng)
        ok = still_valid(x, x2) or s.kind in LAYOUT + VALUES + ANY_SHAPE
        x = x2
    elif where == "out":
        out = spoiled(np.zeros_like(x), s.kind, rng)
        names, ok = ("out",), still_valid(x, out) or (s.kind in VALUES + ("none",))  # (None: a new array)
    elif where == "in_place":
        out = x  # documented: out may be x itself
    note(f"{where} {s} bits={bits} frac={frac} {rounding}")
    xin = np.array(x, np.float64, copy=True) if ok else None
    done, q = check_call(
        lambda: lowp.quantize_fixed_point(x, bits, frac, rounding=rounding, out=out), names, state=[x, out], ok=ok
    )
    if not done:
        return
    lo, hi, step = -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1, 2.0**-frac
    with np.errstate(invalid="ignore"):
        u = xin / step
        q64 = np.asarray(q, np.float64) / step
        if rounding == "nearest":
            assert_close(q64, np.clip(np.rint(u), lo, hi), np.float64, "q / step", rtol=1e-12)
        else:  # an integer of the grid next to x's (or x's saturation)
            fin = np.isfinite(u)
            assert np.array_equal(q64[fin], np.rint(q64[fin])), "not on the grid"
            assert (np.abs(q64[fin] - np.clip(u[fin], lo, hi)) < 1.0 + 1e-6).all(), "more than one step away"


@given(data=st.data())
def test_quantize_block_fp(data):
    rng = _rng(data)
    x = (rng.standard_normal(data.draw(st.sampled_from([(0,), (1,), (7,), (300,)]))) * 10).astype(np.float32)
    s = data.draw(st.sampled_from(ARRAY_SPOILS))
    x2 = spoiled(x, s.kind, rng)
    ok = still_valid(x, x2) or s.kind in LAYOUT + VALUES + ANY_SHAPE
    bits, block = data.draw(st.integers(2, 24)), data.draw(st.sampled_from([0, 1, 3, 64, 2**62]))
    done, q = check_call(lambda: lowp.quantize_block_fp(x2, bits, block, rounding="nearest"), ("x",), ok=ok)
    if done and s.kind not in VALUES:  # the largest magnitude of a block keeps bits - 1 bits
        xin = np.asarray(x2, np.float64).reshape(-1)
        n = xin.size if block == 0 else min(block, max(xin.size, 1))
        for i in range(0, xin.size, max(n, 1)):
            b = xin[i : i + n]
            step = 2.0 ** (math.floor(math.log2(np.max(np.abs(b)))) - bits + 2) if np.any(b) else 0.0
            # (half a step, a whole one at the top: the largest mantissa 2**(bits-1) - 1 clips it)
            assert np.max(np.abs(np.asarray(q).reshape(-1)[i : i + n] - b)) <= step + 1e-30


# ---- AveragedParams, penalty: arrays spoiled, the result against the reference ---------------


@given(data=st.data())
def test_averaged_params(data):
    rng = _rng(data)
    shapes = data.draw(st.lists(st.sampled_from([(0,), (1,), (7,), (3, 5)]), min_size=1, max_size=3))
    iterates = [[rng.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(3)]
    mode, decay = data.draw(st.sampled_from(["swa", "ema"])), data.draw(st.sampled_from([0.0, 0.5, 0.999, 1.0]))
    avg = AveragedParams([p.copy() for p in iterates[0]], mode=mode, decay=decay)
    avg.update(iterates[0])
    i = data.draw(st.integers(0, len(shapes) - 1))
    s = data.draw(st.sampled_from(ARRAY_SPOILS))
    method = data.draw(st.sampled_from(["update", "copy_to"]))
    orig = iterates[1][i]
    iterates[1][i] = spoiled(orig, s.kind, rng)
    ok = still_valid(orig, iterates[1][i]) or s.kind in VALUES + (LAYOUT[:-1] if method == "copy_to" else LAYOUT)
    note(f"{method} params[{i}] {s}")
    if method == "copy_to":
        done, _ = check_call(lambda: avg.copy_to(iterates[1]), ("params",), state=[iterates, avg.averages], ok=ok)
        if done:
            for p, a in zip(iterates[1], iterates[0]):
                np.testing.assert_array_equal(np.asarray(p), a)
        return
    done, _ = check_call(lambda: avg.update(iterates[1]), ("params",), state=[iterates, avg.averages], ok=ok)
    assert avg.n_averaged == (2 if done else 1)
    if done:
        w = 0.5 if mode == "swa" else 1.0 - decay
        for a, p0, p1 in zip(avg.averages, iterates[0], iterates[1]):
            with np.errstate(invalid="ignore"):  # (w = 0 times an inf: NaN, as the kernel's lerp)
                ref = np.float64(p0) + w * (np.asarray(p1, np.float64) - p0)
            assert_close(a, ref, np.float32, "average", nan_for_inf=True)


@given(data=st.data())
def test_add_penalty_grad(data):
    rng = _rng(data)
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    shapes = data.draw(st.lists(st.sampled_from([(0,), (1,), (7,), (3, 5), (1023,)]), min_size=1, max_size=3))
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads = [rng.standard_normal(s).astype(dtype) for s in shapes]
    l1, l2 = data.draw(st.sampled_from([0.0, 0.1, 3.0])), data.draw(st.sampled_from([0.0, 0.5, 1e3]))
    key, i = data.draw(st.sampled_from(["params", "grads"])), data.draw(st.integers(0, len(shapes) - 1))
    s = data.draw(st.sampled_from(ARRAY_SPOILS))
    lst = params if key == "params" else grads
    orig = lst[i]
    lst[i] = spoiled(orig, s.kind, rng)
    ok = still_valid(orig, lst[i]) or s.kind in VALUES + ("extra_dim",) or (key == "params" and s.kind in LAYOUT)
    ok = ok or (s.kind == "other_float" and len(shapes) == 1)
    note(f"{key}[{i}] {s}")
    p64 = [np.array(p, np.float64) for p in params] if ok else []
    g64 = [np.array(g, np.float64) for g in grads] if ok else []
    done, val = check_call(
        lambda: penalty.add_penalty_grad_(params, grads, l1, l2, return_value=True),
        ("params", "grads"),
        state=[params, grads],
        ok=ok,
    )
    if done:
        dt = np.asarray(grads[0]).dtype
        with np.errstate(all="ignore"):  # (0 * inf in the reference: NaN, as intended)
            refs = [r + l2 * p.reshape(r.shape) + l1 * np.sign(p.reshape(r.shape)) for p, r in zip(p64, g64)]
            ref = sum(l1 * np.abs(p).sum() + l2 / 2 * (p * p).sum() for p in p64)
        for g, r in zip(grads, refs):  # (by size: grads[i] needs params[i]'s size, not its shape)
            assert_close(g, r, dt, "grads", nan_for_inf=True)
        assert_close(np.array([val]), np.array([ref]), np.float64, "penalty", rtol=1e-5, nan_for_inf=True)


# ---- nn: activations and cross-entropy against NumPy ------------------------------------------

REF_ACT = {
    "identity": lambda z: z,
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0),
    "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
    "softplus": lambda z: np.logaddexp(0, z),
}


@given(data=st.data())
def test_activation(data):
    rng = _rng(data)
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    z = (rng.standard_normal(data.draw(st.sampled_from([(0,), (1,), (7,), (3, 5)]))) * 4).astype(dtype)
    kind = data.draw(st.sampled_from(list(REF_ACT)))
    s = data.draw(st.sampled_from([None, *ARRAY_SPOILS]))
    ok = True
    if s is not None:
        orig, z = z, spoiled(z, s.kind, rng)
        ok = still_valid(orig, z) or s.kind in VALUES + ("read_only", "broadcast", "other_float", "size+1", "size-1")
        ok = ok or s.kind == "extra_dim"
    done, a = check_call(lambda: activation(kind, z), ("z",), state=[z], ok=ok)
    if done:
        with np.errstate(all="ignore"):
            assert_close(a, REF_ACT[kind](np.asarray(z, np.float64)), np.asarray(z).dtype, kind)


@given(data=st.data())
def test_softmax_cross_entropy(data):
    rng = _rng(data)
    n, c = data.draw(st.sampled_from([1, 2, 7])), data.draw(st.sampled_from([1, 2, 5]))
    logits = (rng.standard_normal((n, c)) * 3).astype(data.draw(st.sampled_from([np.float32, np.float64])))
    labels = rng.integers(0, c, n)
    key = data.draw(st.sampled_from(["logits", "labels"]))
    s = data.draw(st.sampled_from(ARRAY_SPOILS))
    arg = logits if key == "logits" else labels
    new = spoiled(arg, s.kind, rng)
    ok = still_valid(arg, new) or s.kind in VALUES + ("read_only", "broadcast")
    ok = ok or (key == "logits" and s.kind == "other_float")
    ok = ok or (key == "labels" and s.kind in LAYOUT + VALUES + ("int32",))  # (labels are converted)
    logits, labels = (new, labels) if key == "logits" else (logits, new)
    note(f"{key} {s}")
    done, loss = check_call(lambda: softmax_cross_entropy(logits, labels), (key, "logits", "labels"), ok=ok)
    if done:
        z = np.asarray(logits, np.float64)
        with np.errstate(all="ignore"):
            lp = z - np.logaddexp.reduce(z, axis=1, keepdims=True)
            ref = -lp[np.arange(n), np.asarray(labels)].mean()
        terms = max(1.0, float(np.max(np.abs(z[np.isfinite(z)]), initial=0.0)))  # (z_y - lse cancels)
        assert_close(np.array([loss]), np.array([ref]), np.asarray(logits).dtype, "loss", scale=terms)


# ---- norm modules: forward with a spoiled input leaves the running statistics -----------------


@given(data=st.data())
def test_norm_module_forward(data):
    rng = _rng(data)
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    x = rng.standard_normal((data.draw(st.sampled_from([2, 5])), 3)).astype(dtype)
    mod = data.draw(st.sampled_from([BatchNorm(3, dtype=dtype), LayerNorm(3, dtype=dtype), RMSNorm(3, dtype=dtype)]))
    s = data.draw(st.sampled_from(ARRAY_SPOILS))
    x2 = spoiled(x, s.kind, rng)
    ok = still_valid(x, x2) or s.kind in VALUES + LAYOUT or (s.kind == "size+1" and not isinstance(mod, BatchNorm))
    state = [getattr(mod, "running_mean", None), getattr(mod, "running_var", None)]
    note(f"{type(mod).__name__} {s}")
    done, y = check_call(lambda: mod.forward(x2), ("x", "input", "normalized_shape"), state=state, ok=ok or None)
    if done and s.kind not in VALUES and isinstance(mod, (BatchNorm, LayerNorm)):
        xin = np.asarray(x2, np.float64)
        ax = 0 if isinstance(mod, BatchNorm) else -1
        ref = (xin - xin.mean(ax, keepdims=True)) / np.sqrt(xin.var(ax, keepdims=True) + mod.eps)
        assert_close(y, ref, dtype, "y", scale=1.0)


# ---- Hessian solvers' arguments: spoiled vectors --------------------------------------------


@given(data=st.data())
def test_hessian_vectors(data):
    rng = _rng(data)
    n = data.draw(st.sampled_from([1, 3, 8]))
    A, b = _spd(rng, n), rng.standard_normal(n)
    key = data.draw(st.sampled_from(["b", "x0", "precond_diag", "grad", "eigenvectors", "v0"]))
    s = data.draw(st.sampled_from(ARRAY_SPOILS))
    base = {"eigenvectors": rng.standard_normal((n, 1)), "precond_diag": np.ones(n)}.get(key, b)
    arg = spoiled(base, s.kind, rng)
    note(f"{key} {s}")
    calls = {
        "b": lambda: hessian.cg(A, arg).x,
        "x0": lambda: hessian.cg(A, b, x0=arg).x,
        "precond_diag": lambda: hessian.cg(A, b, precond_diag=arg).x,
        "grad": lambda: hessian.gradient_concentration(A, arg, 1),
        "eigenvectors": lambda: hessian.gradient_concentration(A, b, 1, eigenvectors=arg),
        "v0": lambda: hessian.power_iteration(A, v0=arg).eigenvalue,
    }
    done, res = check_call(calls[key], (key,), state=[arg, A])
    if done and key in ("b", "x0", "precond_diag"):
        assert_close(
            A @ np.asarray(res),
            np.asarray(b if key != "b" else arg, np.float64).reshape(n),
            np.float64,
            "A x",
            rtol=1e-3,
        )
    elif done:
        assert np.isfinite(res), f"{key} {s}: {res!r}"


# ---- checkpoint: arrays saved, loaded into spoiled targets -----------------------------------


@given(data=st.data())
def test_checkpoint_targets(data, tmp_path_factory):
    rng = _rng(data)
    path = tmp_path_factory.mktemp("ckpt") / "c.npz"
    a = rng.standard_normal(data.draw(st.sampled_from([(0,), (1,), (7,), (3, 5)])))
    optkern.save(path, a=a, lst=[a, a * 2])
    key, s = data.draw(st.sampled_from(["a", "lst"])), data.draw(st.sampled_from(ARRAY_SPOILS))
    target = spoiled(np.zeros_like(a), s.kind, rng)
    target = target if key == "a" else [np.zeros_like(a), target]
    note(f"{key} {s}")
    done, _ = check_call(lambda: optkern.load(path, **{key: target}), (str(path),), state=[target])
    if done:
        got = target if key == "a" else target[1]
        np.testing.assert_array_equal(np.asarray(got), a if key == "a" else a * 2)


# ---- distributed, one rank: collectives and the data-parallel wrapper -------------------------


@given(data=st.data())
def test_single_rank_collectives(data):
    dist = pytest.importorskip("optkern.distributed")
    pytest.importorskip("mpi4py")
    rng = _rng(data)
    comm = dist.Communicator(backend="mpi")
    x = rng.standard_normal(data.draw(st.sampled_from([(0,), (1,), (7,)]))).astype(np.float32)
    s = data.draw(st.sampled_from([None, *ARRAY_SPOILS]))
    x2 = x if s is None else spoiled(x, s.kind, rng)
    op = data.draw(st.sampled_from(["sum", "mean", "max", "x", None, 3]))
    ref = np.array(x2, copy=True) if isinstance(x2, np.ndarray) else None
    note(f"{s} op={op!r}")
    done, y = check_call(lambda: comm.allreduce(x2, op), ("x", "op"), state=[x2])
    if done:
        np.testing.assert_array_equal(y, ref)  # one rank: the sum, mean, max of one array is itself
    p = [np.ones(5, np.float32)]
    w = data.draw(st.sampled_from([None, 0.0, 0.5, 2.0, 1e30, 1e300, -1.0, "x", True]))
    done, d = check_call(lambda: dist.DistributedOptimizer(optim.SGD(p, lr=0.1), comm, grad_weight=w), ("grad_weight",))
    if done:
        g = [np.full(5, 2.0, np.float32)]
        done, _ = check_call(lambda: d.step(g), ("grad_weight", "grads"), state=[p, g])
        if done:
            ref = np.full(5, 1.0 - 0.1 * 2.0 * (1.0 if w is None else w))
            assert_close(p[0], ref, np.float32, "param", scale=max(1.0, float(np.abs(ref).max())))
