"""The array-flag GradScaler kernels of optkern._cpu (amp_unscale_, amp_update_scale_: the CPU twins of
cuda/amp.cu) against a NumPy reference of torch's semantics."""

import numpy as np
import pytest

from optkern import _cpu


def test_unscale_multiplies_by_the_float32_reciprocal_and_raises_the_flag():
    rng = np.random.default_rng(201)
    gs = [rng.standard_normal(n).astype(np.float32) * np.float32(3.0) for n in (0, 1, 7, 70_001)]
    want = [g * np.float32(1.0 / 3.0) for g in gs]  # torch: scale.double().reciprocal().float()
    found = np.zeros(1, np.float32)
    _cpu.amp_unscale_(gs, np.full(1, 3.0, np.float32), found)
    for g, w in zip(gs, want):
        np.testing.assert_array_equal(g, w)
    assert found[0] == 0.0
    gs[3][123] = np.nan
    _cpu.amp_unscale_(gs, np.ones(1, np.float32), found)
    assert found[0] == 1.0
    _cpu.amp_unscale_(gs[:2], np.ones(1, np.float32), found)  # a clean call leaves a raised flag
    assert found[0] == 1.0


def _reference(scale, tracker, bad, growth, backoff, interval):
    if bad:
        return np.float32(scale * np.float32(backoff)), 0
    if tracker + 1 == interval:
        with np.errstate(over="ignore"):
            grown = np.float32(scale * np.float32(growth))
        return (grown if np.isfinite(grown) else scale), 0
    return scale, tracker + 1


def test_update_scale_is_torchs_rule():
    rng = np.random.default_rng(202)
    scale, tracker = np.full(1, 2.0**125, np.float32), np.zeros(1, np.int64)
    s, t = np.float32(2.0**125), 0
    for bad in rng.random(80) < 0.15:
        _cpu.amp_update_scale_(scale, tracker, np.full(1, float(bad), np.float32), 2.0, 0.5, 4)
        s, t = _reference(s, t, bad, 2.0, 0.5, 4)
        assert scale[0] == s and tracker[0] == t


def test_bad_input_is_named():
    s, f, t = np.ones(1, np.float32), np.zeros(1, np.float32), np.zeros(1, np.int64)
    with pytest.raises(TypeError, match=r"^scale: expected float32"):
        _cpu.amp_unscale_([np.ones(3, np.float32)], np.ones(1), f)
    with pytest.raises(ValueError, match=r"^found_inf: expected 1 element,"):
        _cpu.amp_unscale_([np.ones(3, np.float32)], s, np.zeros(2, np.float32))
    with pytest.raises(ValueError, match=r"shares memory"):
        _cpu.amp_unscale_([f], s, f)
    with pytest.raises(TypeError, match=r"^growth_tracker: expected int64"):
        _cpu.amp_update_scale_(s, np.zeros(1, np.int32), f, 2.0, 0.5, 3)
    with pytest.raises(ValueError, match=r"^backoff_factor"):
        _cpu.amp_update_scale_(s, t, f, 2.0, 1.0, 3)
    with pytest.raises(ValueError, match=r"^growth_interval"):
        _cpu.amp_update_scale_(s, t, f, 2.0, 0.5, 0)


@pytest.mark.parametrize("flag", [0.0, 1.0])
def test_capturable_step_with_found_inf_skips_and_keeps_the_counters(flag):
    """The CPU twin of the CUDA capturable steps: a raised flag writes nothing, counters stay."""
    rng = np.random.default_rng(203)
    p = rng.standard_normal(1000).astype(np.float32)
    g = rng.standard_normal(1000).astype(np.float32)
    m, v = np.zeros_like(p), np.zeros_like(p)
    counters = np.array([3.0])
    ref = [x.copy() for x in (p, m, v)]
    hyper = (0.01, 0.9, 0.999, 1e-8, 0.0, False, False, False, 4)  # lr, beta1, beta2, eps, wd, decoupled, maximize,
    # float32_lr, step
    _cpu.adam_capturable([p], [g], [m], [v], None, *hyper, counters, None, np.full(1, flag, np.float32))
    if flag:
        for a, b in zip((p, m, v), ref):
            np.testing.assert_array_equal(a, b)
        assert counters[0] == 3.0
    else:
        _cpu.adam_([ref[0]], [g], [ref[1]], [ref[2]], None, *hyper)
        np.testing.assert_array_equal(p, ref[0])
        assert counters[0] == 4.0
