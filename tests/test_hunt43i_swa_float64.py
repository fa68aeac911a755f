"""AveragedParams' SWA against torch's actual get_swa_multi_avg_fn / AveragedModel. The docs said
"bit for bit" for every dtype; torch's weight is ``1 / (n_averaged + 1)`` of its int64 count tensor,
a float32 tensor (torch's default dtype), while optkern lerps with the exact double 1 / (n + 1).
float32: the same bits (the weight rounds to float32 either way). float64: optkern's is the
float64 mean to float64 rounding; torch's differs from it by at most 2**-24 (float32's unit
roundoff in the weight) times the largest |p_k - avg_(k-1)| it folded in (the weight's error,
damped by every later update: e_n = sum_k delta_k (p_k - a_(k-1)) / (n + 1))."""

from __future__ import annotations

import numpy as np
import pytest

from optkern.swa import AveragedParams

torch = pytest.importorskip("torch")
from torch.optim.swa_utils import AveragedModel, get_swa_multi_avg_fn  # noqa: E402

SIZES = (1, 7, 1023)


def _run(dtype, n=40, seed=43):
    rng = np.random.default_rng(seed)
    its = [[(rng.standard_normal(k) * 3 + 1).astype(dtype) for k in SIZES] for _ in range(n)]
    ours = AveragedParams(its[0])
    model = torch.nn.ParameterList([torch.nn.Parameter(torch.tensor(p)) for p in its[0]])
    theirs = AveragedModel(model, multi_avg_fn=get_swa_multi_avg_fn())
    spread = [np.zeros(k) for k in SIZES]  # max over updates of |p_k - avg_(k-1)|, elementwise
    for ps in its:
        if ours.n_averaged:
            spread = [np.maximum(s, np.abs(p - a)) for s, p, a in zip(spread, ps, ours.averages)]
        with torch.no_grad():
            for t, p in zip(model, ps):
                t.copy_(torch.tensor(p))
        theirs.update_parameters(model)
        ours.update(ps)
    mean = [np.mean([ps[i].astype(np.float64) for ps in its], axis=0) for i in range(len(SIZES))]
    return ours.averages, [t.detach().numpy() for t in theirs.module.parameters()], spread, mean


def test_float32_is_torchs_get_swa_multi_avg_fn_bit_for_bit():
    ours, theirs, _, _ = _run(np.float32)
    for a, t in zip(ours, theirs):
        np.testing.assert_array_equal(a, t)


def test_float64_differs_from_torch_by_its_float32_weight_only_and_is_the_mean():
    ours, theirs, spread, mean = _run(np.float64)
    assert any(not np.array_equal(a, t) for a, t in zip(ours, theirs))  # (torch's weight is float32's)
    for a, t, s, m in zip(ours, theirs, spread, mean):
        assert t.dtype == np.float64
        # the bound of the module docstring, plus float64 rounding of both
        assert np.all(np.abs(a - t) <= 2.0**-24 * s + 1e-14 * np.abs(m).max())
        # optkern's is the float64 mean to float64 rounding; torch's is off by ~1e-8 of the spread
        np.testing.assert_allclose(a, m, rtol=0, atol=1e-14 * np.abs(m).max())
        assert np.abs(t - m).max() > 1e3 * np.abs(a - m).max()
