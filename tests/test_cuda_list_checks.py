"""The checks of CuPy grads in the list calls whose Python checks moved into native code
(clip_grad_value_ / clip_grad_norm_, GradScaler.unscale_, AveragedParams.update; the CUDA
module's precheck_step_): a bad array anywhere in the list still raises the error naming it by its
place in the caller's list, before anything (grads, out, averages) is written.

Skipped without CuPy or without a visible GPU.
"""

from __future__ import annotations

import numpy as np
import pytest

from gpu import require_gpu
from optkern import _backend, clip_grad_norm_, clip_grad_value_
from optkern.amp import GradScaler
from optkern.swa import AveragedParams

cp, _cuda = require_gpu()


class _Mem:
    def __init__(self, ptr, device_id):
        self.ptr, self.device_id = ptr, device_id


class _Flags:
    c_contiguous = True


class ndarray:  # noqa: N801 - named like CuPy's so the kind checks take it
    """A float32 CuPy array on device 1, as far as the checks read one (native and Python):
    refused before its pointer, never valid, is used."""

    __module__ = "cupy._stand_in"

    def __init__(self, size):
        self.size, self.shape, self.strides = size, (size,), (4,)
        self.dtype, self.itemsize = np.dtype(np.float32), 4
        self._c_contiguous, self.flags = True, _Flags()
        self.data = _Mem(1 << 40, 1)


def _misaligned(n):
    return cp.zeros(4 * n + 4, cp.uint8)[1 : 4 * n + 1].view(cp.float32)


#: (the array at grads[2] from the others, the error, its message)
BAD = {
    "dtype": (lambda g: cp.full(5, 10.0, cp.float64), TypeError, r"^grads\[2\]: expected float32, got float64"),
    "layout": (
        lambda g: cp.full((5, 2), 10.0, cp.float32)[:, 0],
        ValueError,
        r"^grads\[2\]: array must be C-contiguous",
    ),
    "misaligned": (lambda g: _misaligned(5), ValueError, r"^grads\[2\]: array data is misaligned"),
    "device": (lambda g: ndarray(5), ValueError, r"^grads\[2\]: is on device 1 but other arrays are on device 0"),
    "aliasing": (lambda g: g[0][1:3], ValueError, r"^grads\[2\] shares memory with grads\[0\]"),
    "numpy": (lambda g: np.full(5, 10.0, np.float32), TypeError, r"^grads\[2\]: is a numpy array but grads\[0\]"),
}


def _grads(none: bool):
    """[g0, g1, (None,)] on the device; the bad array follows (grads[2], or grads[3] after a None)."""
    grads = [cp.full(7, 10.0, cp.float32), cp.full(3, -10.0, cp.float32)]
    return grads + [None] if none else grads


def _renamed(msg: str, none: bool) -> str:
    return msg.replace(r"grads\[2\]", r"grads\[3\]") if none else msg


def _host(arrays) -> list:
    return [None if a is None or isinstance(a, ndarray) else cp.asnumpy(a).copy() for a in arrays]


def _unchanged(arrays, before) -> None:
    for i, (a, b) in enumerate(zip(arrays, before)):
        if b is not None:
            np.testing.assert_array_equal(cp.asnumpy(a), b, err_msg=f"[{i}] was written")


CALLS = {
    "clip_grad_value_": lambda gs: clip_grad_value_(gs, 1.0),
    "clip_grad_norm_": lambda gs: clip_grad_norm_(gs, 1.0),
    "clip_grad_norm_ inf": lambda gs: clip_grad_norm_(gs, 1.0, "inf"),
    "clip_grad_norm_ p=2000": lambda gs: clip_grad_norm_(gs, 1.0, 2000.0),
    "clip_grad_norm_ error_if_nonfinite": lambda gs: clip_grad_norm_(gs, 1.0, error_if_nonfinite=True),
}


@pytest.mark.parametrize("none", [False, True], ids=["", "after-None"])
@pytest.mark.parametrize("bad", list(BAD))
@pytest.mark.parametrize("call", list(CALLS))
def test_clip_names_the_bad_grad_and_writes_nothing(call, bad, none):
    make, exc, msg = BAD[bad]
    grads = _grads(none)
    grads.append(make(grads))
    before = _host(grads)
    with pytest.raises(exc, match=_renamed(msg, none)):
        CALLS[call](grads)
    _unchanged(grads, before)


@pytest.mark.parametrize("bad", list(BAD))
def test_clip_grad_norm_out_is_not_written_either(bad):
    make, exc, msg = BAD[bad]
    grads = _grads(False)
    grads.append(make(grads))
    before, out = _host(grads), cp.full(1, -1.0)
    with pytest.raises(exc, match=msg):
        clip_grad_norm_(grads, 1.0, out=out)
    _unchanged(grads, before)
    assert float(out[0]) == -1.0


#: the scaler's own wording where it differs from the clipping's (it names the formats it takes;
#: it asks no backend: the native call names the kind)
SCALER_MESSAGES = {
    "dtype": r"^grads\[2\]: expected float32, float16 or bfloat16 gradients, got float64",
    "numpy": r"^grads\[2\]: expected a cupy.ndarray, got numpy.ndarray",
}


@pytest.mark.parametrize("none", [False, True], ids=["", "after-None"])
@pytest.mark.parametrize("bad", list(BAD))
def test_grad_scaler_names_the_bad_grad_and_writes_nothing(bad, none):
    make, exc, msg = BAD[bad]
    msg = SCALER_MESSAGES.get(bad, msg)
    scaler = GradScaler(init_scale=4.0)
    grads = _grads(none)
    grads.append(make(grads))
    before = _host(grads)
    with pytest.raises(exc, match=_renamed(msg, none)):
        scaler.unscale_(grads)
    _unchanged(grads, before)
    assert scaler.get_scale() == 4.0


def test_grad_scaler_names_a_half_grad_after_float32_ones():
    scaler = GradScaler(init_scale=4.0)
    grads = [cp.full(3, 8.0, cp.float32), None, cp.full(3, 8.0, cp.float16)]
    with pytest.raises(TypeError, match=r"^grads\[2\]: float16 gradients are unscaled inside the optimizer's step"):
        scaler.unscale_(grads)
    np.testing.assert_array_equal(cp.asnumpy(grads[0]), 8.0)


def test_grad_scaler_skips_none_entries():
    scaler = GradScaler(init_scale=4.0)
    grads = [cp.full(3, 8.0, cp.float32), None, cp.full(2, np.inf, cp.float32)]
    assert float(scaler.unscale_(grads)[0]) == 1.0
    np.testing.assert_array_equal(cp.asnumpy(grads[0]), 2.0)


#: (params[2] from the params and the averages, the error, its message)
BAD_PARAMS = {
    "dtype": (lambda ps, avgs: cp.ones(5, cp.float64), TypeError, r"^params\[2\]: expected float32, got float64"),
    "shape": (lambda ps, avgs: cp.ones((5, 1), cp.float32), ValueError, r"^params\[2\]: expected shape \(5,\)"),
    "layout": (
        lambda ps, avgs: cp.ones((5, 2), cp.float32)[:, 0],
        ValueError,
        r"^params\[2\]: array must be C-contiguous",
    ),
    "misaligned": (lambda ps, avgs: _misaligned(5), ValueError, r"^params\[2\]: array data is misaligned"),
    "device": (lambda ps, avgs: ndarray(5), ValueError, r"^params\[2\]: is on device 1 but other arrays are on"),
    "aliasing": (lambda ps, avgs: avgs[2], ValueError, r"^params\[2\] shares memory with averages\[2\]"),
    "numpy": (lambda ps, avgs: np.ones(5, np.float32), TypeError, r"^params\[2\]: expected a cupy.ndarray"),
    "count": (None, ValueError, r"^params: expected 3 arrays \(one per average\), got 2"),
    "not an array": (lambda ps, avgs: 3.0, TypeError, r"^params\[2\]: expected a cupy.ndarray, got float"),
}


@pytest.mark.parametrize("bad", list(BAD_PARAMS))
def test_averaged_params_update_names_the_bad_param_and_writes_nothing(bad):
    make, exc, msg = BAD_PARAMS[bad]
    params = [cp.full(n, float(n), cp.float32) for n in (7, 3, 5)]
    avg = AveragedParams(params, mode="ema", decay=0.5)
    avg.update(params)
    new = [p + 1 for p in params[:2]]
    if make is not None:
        new.append(make(new, avg.averages))
    before = _host(avg.averages)
    with pytest.raises(exc, match=msg):
        avg.update(new)
    _unchanged(avg.averages, before)
    assert avg.n_averaged == 1


# ---- the CUDA module's precheck_step_: the CPU module's checks and wording ------------------


def _runs(xp, case):
    """(runs for precheck_step_) over ``xp`` arrays, spoiled as ``case`` says."""
    w = [xp.zeros(6, np.float32), xp.zeros(4, np.float32)]
    g = [xp.zeros(6, np.float32), xp.zeros(4, np.float32)]
    p = list(w)
    if case == "written dtype":
        w[1] = xp.zeros(4, np.float64)
    elif case == "written layout":
        w[1] = xp.zeros((4, 2), np.float32)[:, 0]
    elif case == "grad dtype":
        g[1] = xp.zeros(4, np.float64)
    elif case == "grad shape":
        g[1] = xp.zeros((2, 2), np.float32)
    elif case == "written overlap":
        w[1] = w[0][2:]
    elif case == "grad overlap":
        g[1] = w[0][1:5]
    return [(np.dtype(np.float32), w, ["params[0]", "params[1]"], g, p, ["grads[0]", "grads[1]"])]


@pytest.mark.parametrize(
    "case", ["written dtype", "written layout", "grad dtype", "grad shape", "written overlap", "grad overlap"]
)
def test_precheck_step_raises_the_cpu_error(case):
    with pytest.raises((TypeError, ValueError)) as want:
        _backend.cpu.precheck_step_(_runs(np, case))
    with pytest.raises(want.type) as got:
        _cuda.precheck_step_(_runs(cp, case))
    assert str(got.value).replace("cupy", "numpy") == str(want.value)


def test_precheck_step_takes_good_runs_and_empty_arrays():
    assert _cuda.precheck_step_(_runs(cp, "")) is None
    e = cp.zeros(0, cp.float32)
    assert _cuda.precheck_step_([(np.dtype(np.float32), [e, e], ["a[0]", "a[1]"], [], [], [])]) is None
    assert _cuda.precheck_step_([]) is None


# ---- the backend of a list of CuPy arrays, read from its types -----------------------------


def test_as_list_and_backend_of_cupy_lists():
    gs = [cp.zeros(3, cp.float32) for _ in range(4)]
    got = _backend.as_list(gs, "grads")
    assert got == gs or all(a is b for a, b in zip(got, gs))
    assert _backend.backend(("grads", gs), ("params", tuple(gs))) is _cuda
    assert _backend.backend(("grads", gs[0])) is _cuda
    with pytest.raises(TypeError, match=r"^params\[1\]: is a numpy array but grads\[0\] is a cupy array"):
        _backend.backend(("grads", gs), ("params", [gs[0], np.zeros(3, np.float32)]))
    with pytest.raises(TypeError, match=r"^grads\[2\]: expected a numpy or cupy array, got str"):
        _backend.backend(("grads", [gs[0], gs[1], "x"]))
