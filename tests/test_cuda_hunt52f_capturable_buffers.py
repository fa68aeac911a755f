"""A capturable CUDA step's device-held ``counters`` and ``lr_buffer`` get the CPU's verdict.

The CPU reads a capturable step's buffers and refuses a value its rule cannot step with
(tests/test_hunt51c_native_reals.py: NaN, inf or a negative lr, an lr past float32 on float32
arrays, counters making a step that is no integer in [1, 2**53], a bad NaN mu_product), ValueError
before anything is written. The CUDA step never reads them on the host (graph capture, no
synchronization), and its kernels used them as given: lr_buffer = [NaN] or counters = [NaN] wrote
NaN into every param, counters = [-1] divided by a zero bias correction, and the counters advanced.
Now its kernels apply the same predicates (optkern/rules/step_inputs.hpp): where the CPU refuses,
the CUDA step writes nothing (params, states and counters keep their bits), unreported, as a
GradScaler-skipped step; where the CPU runs, the CUDA step gives the CPU's values.

Skipped without CuPy or without a visible GPU; tools/cuda_emu runs it on the CPU.
"""

from __future__ import annotations

import numpy as np
import pytest

from gpu import require_gpu
from optkern import _cpu
from test_hunt49c_native_hyper import native_kwargs

cp, _cuda = require_gpu()

BASES = ["sgd", "adagrad", "rmsprop", "adadelta", "adam", "nadam"]
SIZES = (0, 1, 7, 1023)  # several arrays a call: an empty one, a lone element, odd lengths


def _call(base: str, dtype, seed: int) -> dict:
    """Valid keyword arguments of ``_cpu.<base>_capturable`` on random arrays of SIZES."""
    rng = np.random.default_rng(seed)
    kw = native_kwargs(base)
    for name, v in list(kw.items()):
        if isinstance(v, list):  # params, grads, states: one array per size, never all zero
            positive = name not in ("params", "grads", "exp_avgs", "momentum_buffers", "grad_avgs")
            kw[name] = [(np.abs(r) + 0.1 if positive else r).astype(dtype) for r in map(rng.standard_normal, SIZES)]
    counters = np.array([3.0, 0.7] if base == "nadam" else [3.0])
    return kw | dict(counters=counters, lr_buffer=np.array([1e-3]))


def _on_device(kw: dict) -> dict:
    return {
        k: [cp.asarray(a) for a in v] if isinstance(v, list) else cp.asarray(v) if isinstance(v, np.ndarray) else v
        for k, v in kw.items()
    }


def _arrays(kw: dict) -> dict:
    """Every array of a call by name and place, on the host."""
    out = {}
    for k, v in kw.items():
        for i, a in enumerate(v if isinstance(v, list) else [v]):
            if a is not None and not isinstance(a, (float, int, bool)):
                out[f"{k}[{i}]"] = a.get() if isinstance(a, cp.ndarray) else a.copy()
    return out


def _outcomes(base: str, dtype, **buffers) -> tuple:
    """(CPU error or None, CPU arrays after, CUDA arrays before, CUDA arrays after) of one step."""
    kw = _call(base, dtype, seed=len(base)) | buffers
    dkw = _on_device(kw)
    before = _arrays(dkw)
    try:
        getattr(_cpu, base + "_capturable")(**kw)
        error = None
    except ValueError as e:
        error = str(e)
    getattr(_cuda, base + "_capturable")(**dkw)
    cp.cuda.runtime.deviceSynchronize()
    return error, _arrays(kw), before, _arrays(dkw)


def _assert_unchanged(before: dict, after: dict) -> None:
    for name, a in before.items():
        assert np.array_equal(a.view(np.uint8), after[name].view(np.uint8)), f"{name} was written"


def _assert_as_cpu(cpu: dict, cuda: dict, dtype) -> None:
    rtol = 1e-6 if dtype == np.float32 else 1e-13
    for name, a in cpu.items():
        np.testing.assert_allclose(cuda[name], a, rtol=rtol, atol=0.0, err_msg=name)


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("lr", [NAN, INF, -INF, -1e-3, 1e39])
def test_refused_lr_buffer_writes_nothing(base, lr):
    error, _, before, after = _outcomes(base, np.float32, lr_buffer=np.array([lr]))
    assert error is not None and error.startswith("lr_buffer[0]: ")
    _assert_unchanged(before, after)


@pytest.mark.parametrize("base", ["sgd", "adagrad", "adam", "nadam"])
@pytest.mark.parametrize("steps", [NAN, INF, -1.0, -2.0, 0.5, 2.0**54])
def test_refused_counters_write_nothing(base, steps):
    """counters[0] + 1 must be a step: NaN, inf, 0, -1, 1.5 and 2**54 + 1 refused (the CPU raises)."""
    counters = np.array([steps, 0.7] if base == "nadam" else [steps])
    error, _, before, after = _outcomes(base, np.float64, counters=counters, lr_buffer=None)
    assert error is not None and error.startswith("counters[0] + 1 (this step): ")
    _assert_unchanged(before, after)


@pytest.mark.parametrize("mu", [NAN, -0.5, 1.5, 1.0 + 2.0**-22])
def test_refused_nadam_mu_product_writes_nothing(mu):
    error, _, before, after = _outcomes("nadam", np.float32, counters=np.array([3.0, mu]), lr_buffer=None)
    assert error is not None and error.startswith("counters[1] (mu_product): ")
    _assert_unchanged(before, after)


@pytest.mark.parametrize("base", ["rmsprop", "adadelta"])
def test_counters_a_rule_does_not_read_are_not_checked(base):
    """RMSprop and Adadelta read no step: their counter only advances, on both modules alike."""
    error, cpu, _, cuda = _outcomes(base, np.float32, counters=np.array([-7.5]))
    assert error is None
    _assert_as_cpu(cpu, cuda, np.float32)
    assert cuda["counters[0]"][0] == -6.5


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize(
    "buffers",
    [
        dict(),
        dict(lr_buffer=np.array([0.0])),
        dict(lr_buffer=np.array([1e12])),  # a derived rate past the user lr's scale bound (ZeRO AdaGrad-Norm)
        dict(lr_buffer=None, counters=np.array([0.0, 1.0])),  # the first step
        dict(lr_buffer=None, counters=np.array([2.0**53 - 1, 0.25])),  # the last countable step
    ],
)
def test_accepted_buffers_step_as_the_cpu(base, dtype, buffers):
    if "counters" in buffers and base != "nadam":
        buffers = buffers | dict(counters=buffers["counters"][:1])
    error, cpu, before, cuda = _outcomes(base, dtype, **buffers)
    assert error is None
    _assert_as_cpu(cpu, cuda, dtype)
    lr = buffers.get("lr_buffer", np.array([1e-3]))
    lr = _call(base, dtype, 0).get("lr", 1.0) if lr is None else lr[0]
    moved = [n for n in before if n.startswith("params[") and not np.array_equal(before[n], cuda[n])]
    assert moved == ([] if lr == 0.0 else [f"params[{i}]" for i, n in enumerate(SIZES) if n])


def test_lr_past_float32_runs_on_float64_arrays_only():
    """1e39 is finite in float64: refused on float32 arrays (above), stepped on float64 ones as the CPU."""
    error, cpu, _, cuda = _outcomes("sgd", np.float64, lr_buffer=np.array([1e39]))
    assert error is None
    _assert_as_cpu(cpu, cuda, np.float64)


def test_float32_lr_rounds_the_buffer_to_float32_on_float64_arrays():
    error, _, before, after = _outcomes("adam", np.float64, lr_buffer=np.array([1e39]), float32_lr=True)
    assert error is not None and "float32_lr" in error
    _assert_unchanged(before, after)


def test_a_refused_step_leaves_the_next_one_to_run():
    """The refusal is the call's, not sticky: the same buffers with a good value step once."""
    kw = _on_device(_call("adam", np.float32, seed=5))
    kw["lr_buffer"][0] = NAN
    _cuda.adam_capturable(**kw)
    assert float(kw["counters"][0].get()) == 3.0
    kw["lr_buffer"][0] = 1e-3
    before = kw["params"][3].get()
    _cuda.adam_capturable(**kw)
    cp.cuda.runtime.deviceSynchronize()
    assert float(kw["counters"][0].get()) == 4.0
    assert not np.array_equal(before, kw["params"][3].get())
