"""GradScaler's backoff below the smallest usable scale. ``init_scale`` / ``update(new_scale)`` refuse
a scale whose unscale factor ``float32(1 / scale)`` overflows (below 2.938737e-39,
tests/test_hunt36_amp.py), but ~140 non-finite steps in a row from 2**16 backed the scale off
there anyway (0 after ~166, as torch's): every finite gradient then unscaled to inf (0 * inf: NaN)
with found_inf clear -- the unscale checks the grads it reads, as torch's does -- and the next
clean step wrote inf / NaN into the params (torch's does the same). Now the backoff stops at that
smallest scale (rules::update_scale, CPU and CUDA), the scale torch reaches on every step above it;
a saved scale below it (torch's 0) loads as it."""

import numpy as np
import pytest
import torch

from optkern import amp, optim
from test_hunt36_amp import SMALLEST


def _bad_then_clean(sc, opt, params, nbad, nclean=3, dt=np.float32):
    """``nbad`` steps with inf grads, then ``nclean`` with grads of 1 (scaled); the scales after each."""
    scales = []
    for i in range(nbad + nclean):
        s = np.float32(sc.get_scale())
        g = [np.full(p.shape, np.inf if i < nbad else 1.0, np.float32) * s for p in params]
        sc.step(opt, [x.astype(dt) for x in g])
        sc.update()
        scales.append(sc.get_scale())
    return scales


def _torch_scales(nbad):
    w = torch.zeros(3, requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.0)
    sc = torch.amp.GradScaler("cpu")
    out = []
    for _ in range(nbad):
        sc.scale(torch.tensor(1.0))
        w.grad = torch.full((3,), float("inf"))
        sc.step(opt)
        sc.update()
        out.append(sc.get_scale())
    return out


def test_backoff_stops_at_the_smallest_scale_torch_scales_above_it():
    p = [np.ones(3, np.float32)]
    sc = amp.GradScaler()
    ours = _bad_then_clean(sc, optim.SGD(p, lr=0.0), p, 200, 0)
    theirs = _torch_scales(200)
    for a, b in zip(ours, theirs):
        assert a == (b if b >= SMALLEST else SMALLEST), (a, b)
    assert ours[-1] == SMALLEST and theirs[-1] == 0.0


@pytest.mark.parametrize("backoff", [0.5, 0.9, 1e-3])
@pytest.mark.parametrize("nbad", [140, 150, 200])
def test_clean_steps_after_a_long_backoff_leave_finite_params(nbad, backoff):
    p = [np.ones(3, np.float32)]
    sc = amp.GradScaler(backoff_factor=backoff)
    _bad_then_clean(sc, optim.SGD(p, lr=0.125), p, nbad * (20 if backoff == 0.9 else 1))
    assert np.all(np.isfinite(p[0])), p[0]
    assert np.all(p[0] < 1.0)  # the clean steps stepped


@pytest.mark.parametrize("dt", ["float16", "bfloat16"])
def test_low_precision_step_after_a_long_backoff(dt):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    dtype = np.float16 if dt == "float16" else ml_dtypes.bfloat16
    p = [np.ones(3, dtype)]
    sc = amp.GradScaler()
    _bad_then_clean(sc, optim.SGD(p, lr=0.125, master_weights=True), p, 200, dt=dtype)
    assert np.all(np.isfinite(p[0].astype(np.float32)))  # (was NaN: 0 * inf)
    if dt == "bfloat16":  # (float16 cannot hold a gradient of ~1 times the scale ~3e-39: 0, no step)
        assert np.all(p[0].astype(np.float32) < 1.0)


@pytest.mark.parametrize("saved", [0.0, 1e-40, 1e-45])
def test_a_saved_scale_below_the_smallest_loads_as_it(saved):
    sc = amp.GradScaler()
    sc.load_state_dict({**sc.state_dict(), "scale": saved})
    assert sc.get_scale() == SMALLEST
    p = [np.ones(3, np.float32)]
    _bad_then_clean(sc, optim.SGD(p, lr=0.125), p, 0, 1)
    assert np.all(np.isfinite(p[0])) and np.all(p[0] < 1.0)
