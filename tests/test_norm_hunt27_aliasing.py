"""Aliasing contract of the running-statistics norms and of the backward ``out=`` (hunt 27).

* Eval (``training=False`` / ``use_input_stats=False``) only reads the running statistics, as the
  read-only buffers of test_norm_hunt_eval.py show: running_mean and running_var may be one array,
  or the weight, as torch accepts. They were refused with "running statistics are written in
  place". Only ``out``, written while they are read, must not alias them.
* Instance norm with running buffers gave the kernel tiled copies of weight and bias, so an ``out``
  overlapping them was not refused (it is without buffers) and y overwrote the caller's weight.
* A backward's ``out`` aliasing another argument was reported as "... shares memory with dx", an
  argument the caller never passed: the message names ``out``.
"""

import numpy as np
import pytest

from optkern import norm

F32 = np.float32


def _x(shape=(4, 3, 5), dtype=F32):
    return np.random.default_rng(0).standard_normal(shape).astype(dtype)


def _eval(fn, x, w, b, rm, rv, out=None):
    if fn == "batch_norm":
        return norm.batch_norm(x, w, b, rm, rv, training=False, out=out)
    return norm.instance_norm(x, w, b, rm, rv, use_input_stats=False, out=out)


# ---- eval reads the running statistics: aliasing among inputs is valid -------------------------


@pytest.mark.parametrize("fn", ["batch_norm", "instance_norm"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", ["rm is rv", "rm is weight", "rv is bias", "rm inside x"])
def test_eval_takes_running_statistics_that_alias_other_inputs(fn, dtype, case):
    x = _x(dtype=dtype)
    a = np.full(3, 0.75, dtype)
    w, b = np.array([1.5, -2.0, 0.5], dtype), np.array([0.25, 0.0, -1.0], dtype)
    rm, rv = np.array([0.1, -0.2, 0.3], dtype), np.array([0.5, 2.0, 1.5], dtype)
    if case == "rm is rv":
        rm = rv = a
    elif case == "rm is weight":
        rm = w
    elif case == "rv is bias":
        b = np.abs(b) + 0.5
        rv = b
    else:
        rm = x.reshape(-1)[5:8]
    before = [a.copy() for a in (x, w, b, rm, rv)]
    y, s = _eval(fn, x, w, b, rm, rv)
    ref, rs = _eval(fn, x, w.copy(), b.copy(), rm.copy(), rv.copy())
    np.testing.assert_array_equal(y, ref)
    np.testing.assert_array_equal(s.rstd, rs.rstd)
    for a, c in zip((x, w, b, rm, rv), before):  # nothing written
        np.testing.assert_array_equal(a, c)


def test_torch_accepts_the_same_aliasing_in_eval():
    torch = pytest.importorskip("torch")
    x = _x()
    a = torch.full((3,), 0.75)
    y = torch.nn.functional.batch_norm(torch.from_numpy(x), a, a, a, None, training=False)
    ours, _ = norm.batch_norm(x, a.numpy(), None, a.numpy(), a.numpy(), training=False)
    np.testing.assert_allclose(ours, y.numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("fn", ["batch_norm", "instance_norm"])
def test_eval_still_refuses_an_out_overlapping_the_running_statistics(fn):
    x = _x()
    n = x.size
    buf = np.zeros(n + 2, F32)
    out = buf[:n].reshape(x.shape)
    rm, rv = buf[n - 1 :], np.ones(3, F32)  # rm[0] is out's last element
    # (a guard: refused before too, then as "running_mean: shares memory with out (running statistics
    # are written in place ...)", which eval does not)
    with pytest.raises(ValueError, match="^out: shares memory with running_mean "):
        _eval(fn, x, None, None, rm, rv, out=out)
    assert not buf.any()


@pytest.mark.parametrize("fn", ["batch_norm", "instance_norm"])
def test_training_still_refuses_aliased_running_statistics(fn):
    x, a = _x(), np.zeros(3, F32)
    with pytest.raises(ValueError, match="^running_var: shares memory with running_mean "):
        getattr(norm, fn)(x, None, None, a, a)
    assert not a.any()


# ---- instance norm with running buffers: out overlapping weight or bias ------------------------


@pytest.mark.parametrize("name", ["weight", "bias"])
@pytest.mark.parametrize("buffers", [False, True])
def test_instance_norm_refuses_an_out_overlapping_its_parameters(name, buffers):
    x = _x()
    n = x.size
    buf = np.zeros(n + 2, F32)
    out = buf[:n].reshape(x.shape)
    p = buf[n - 1 :]  # p[0] is out's last element
    p[...] = 1.0
    kw = {"weight": None, "bias": None, name: p}
    rm, rv = np.zeros(3, F32), np.ones(3, F32)
    run = {"running_mean": rm, "running_var": rv} if buffers else {}
    with pytest.raises(ValueError, match=f"^{name} shares memory with out "):
        norm.instance_norm(x, **kw, **run, out=out)
    np.testing.assert_array_equal(p, 1.0)  # the caller's parameter, unchanged
    assert not out.reshape(-1)[:-1].any()  # (its last element is p[0])
    np.testing.assert_array_equal(rm, 0.0)
    np.testing.assert_array_equal(rv, 1.0)


# ---- backward: the error names out, not the native dx ------------------------------------------


def _overlapping(shape, extra, fill):
    """(out, other): other's first element is out's last."""
    n = int(np.prod(shape))
    buf = np.zeros(n + extra - 1, F32)
    other = buf[n - 1 :]
    other[...] = np.asarray(fill, F32).reshape(-1)
    return buf[:n].reshape(shape), other


def _backward_cases():
    """(function, name, call(out, other), other's values): ``other`` is passed where ``name`` goes."""
    x = _x()
    dy = _x()[::-1].copy()
    w3, w5 = np.ones(3, F32), np.ones(5, F32)
    sb = norm.batch_norm(x)[1]
    si = norm.instance_norm(x, None, None, np.zeros(3, F32), np.ones(3, F32), use_input_stats=False)[1]
    sg = norm.group_norm(x, 3)[1]
    sl = norm.layer_norm(x, 5)[1]
    sr = norm.rms_norm(x, 5)[1]
    cases = [
        ("batch_norm", "weight", lambda o, a: norm.batch_norm_backward(dy, x, a, sb, out=o), w3),
        (
            "batch_norm",
            "saved.mean",
            lambda o, a: norm.batch_norm_backward(dy, x, None, sb._replace(mean=a), out=o),
            sb.mean,
        ),
        (
            "instance_eval",
            "saved.rstd",
            lambda o, a: norm.instance_norm_backward(dy, x, None, si._replace(rstd=a), out=o),
            si.rstd,
        ),
        ("group_norm", "weight", lambda o, a: norm.group_norm_backward(dy, x, a, sg, out=o), w3),
        ("layer_norm", "weight", lambda o, a: norm.layer_norm_backward(dy, x, a, sl, out=o), w5),
        (
            "layer_norm",
            "saved.rstd",
            lambda o, a: norm.layer_norm_backward(dy, x, None, sl._replace(rstd=a.reshape(4, 3)), out=o),
            sl.rstd,
        ),
        ("rms_norm", "weight", lambda o, a: norm.rms_norm_backward(dy, x, a, sr, out=o), w5),
    ]
    return x.shape, cases


@pytest.mark.parametrize("i", range(7))
def test_backward_out_aliasing_another_argument_names_out(i):
    shape, cases = _backward_cases()
    fn, name, call, fill = cases[i]
    out, other = _overlapping(shape, np.size(fill), fill)
    keep = other.copy()
    with pytest.raises(ValueError, match=rf"^{name} shares memory with out \(aliasing"):
        call(out, other)
    np.testing.assert_array_equal(other, keep)
