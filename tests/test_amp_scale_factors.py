"""GradScaler's scale updates with factors that float32 cannot hold (0.1, 0.9, 1.1): the float32
scale times the double factor, rounded once, as torch's _amp_update_scale_ kernels compute it."""

import numpy as np
import pytest

from optkern import _backend, optim
from optkern.amp import GradScaler

# (init_scale, growth_factor, backoff_factor, growth_interval, which steps hold an inf)
SEQUENCES = [
    (1e-30, 2.0, 0.1, 1, [1, 1, 1]),
    (65536.0, 1.1, 0.9, 1, [0] * 20 + [1] * 20),
    (3.0, 1.3, 0.7, 2, [0, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0]),
]


def optkern_scales(init, gf, bf, gi, pattern):
    sc = GradScaler(init_scale=init, growth_factor=gf, backoff_factor=bf, growth_interval=gi)
    w = np.zeros(2, np.float32)
    opt = optim.SGD([w], lr=0.0)
    out = []
    for bad in pattern:
        g = np.ones(2, np.float32)
        if bad:
            g[0] = np.inf
        sc.step(opt, [g])
        sc.update()
        out.append(sc.get_scale())
    return out


def reference_scales(init, gf, bf, gi, pattern):
    """torch's kernel in float64 NumPy: float32 scale * double factor, rounded to float32 once."""
    scale, tracker, out = np.float32(init), 0, []
    for bad in pattern:
        if bad:
            scale, tracker = np.float32(np.float64(scale) * bf), 0
        elif tracker + 1 == gi:
            grown = np.float32(np.float64(scale) * gf)
            scale, tracker = (grown if np.isfinite(grown) else scale), 0
        else:
            tracker += 1
        out.append(float(scale))
    return out


@pytest.mark.parametrize("seq", SEQUENCES)
def test_scales_round_once_from_the_double_factor(seq):
    got = optkern_scales(*seq)
    assert got == reference_scales(*seq)
    # (rounding the factor to float32 first gives other scales: the test can tell them apart)
    init, gf, bf, gi, pattern = seq
    assert got != reference_scales(init, float(np.float32(gf)), float(np.float32(bf)), gi, pattern)


@pytest.mark.parametrize("seq", SEQUENCES)
def test_scales_equal_torchs(seq):
    torch = pytest.importorskip("torch")
    init, gf, bf, gi, pattern = seq
    ts = torch.amp.GradScaler("cpu", init_scale=init, growth_factor=gf, backoff_factor=bf, growth_interval=gi)
    tw = torch.zeros(2, requires_grad=True)
    topt = torch.optim.SGD([tw], lr=0.0)
    want = []
    for bad in pattern:
        ts.scale(torch.ones(()))
        g = torch.ones(2)
        if bad:
            g[0] = float("inf")
        tw.grad = g
        ts.step(topt)
        ts.update()
        want.append(ts.get_scale())
    assert optkern_scales(*seq) == want


def test_native_update_takes_the_double_factor():
    scale, tracker, found = np.full(1, 3.0, np.float32), np.zeros(1, np.int64), np.ones(1, np.float32)
    _backend.cpu.amp_update_scale_(scale, tracker, found, 2.0, 0.9, 1)
    assert scale[0] == np.float32(3.0 * 0.9) != np.float32(3.0) * np.float32(0.9)  # 2.7, not 2.6999998
