"""AveragedParams and swa_lerp_ on float64 params: torch's AveragedModel averages any floating
dtype, AveragedParams refused float64 with TypeError (the kernel was float32 only). Compared with
a float64 mean of the iterates (SWA) and torch's get_ema_multi_avg_fn in float64 (EMA)."""

from __future__ import annotations

import numpy as np
import pytest

from optkern import _backend
from optkern.swa import AveragedParams

_cpu = _backend.cpu
SIZES = [0, 1, 7, 1023, 32_769]


def _iterates(n, dtype=np.float64, seed=40):
    rng = np.random.default_rng(seed)
    return [[(rng.standard_normal(k) * 3 + 1).astype(dtype) for k in SIZES] for _ in range(n)]


def test_swa_float64_is_the_float64_mean_of_the_iterates():
    its = _iterates(50)
    a = AveragedParams([np.zeros(k) for k in SIZES], mode="swa")
    for ps in its:
        a.update(ps)
    assert a.n_averaged == 50
    for i, avg in enumerate(a.averages):
        assert avg.dtype == np.float64
        want = np.mean([ps[i] for ps in its], axis=0) if SIZES[i] else np.zeros(0)
        # float64: the running lerp is within a few float64 eps of the exact mean (float32's eps
        # is 5e8 times larger: a float32 average would fail this)
        np.testing.assert_allclose(avg, want, rtol=0, atol=1e-13 * np.abs(want).max(initial=1.0))


def test_swa_float64_is_torchs_foreach_lerp_bit_for_bit():
    torch = pytest.importorskip("torch")
    its = _iterates(20, seed=41)
    a = AveragedParams(its[0], mode="swa")
    ref = [torch.zeros(k, dtype=torch.float64) for k in SIZES]
    for n, ps in enumerate(its):
        a.update(ps)
        if n == 0:
            ref = [torch.tensor(p) for p in ps]
        else:
            torch._foreach_lerp_(ref, [torch.tensor(p) for p in ps], 1.0 / (n + 1))
    for avg, r in zip(a.averages, ref):
        np.testing.assert_array_equal(avg, r.numpy())


@pytest.mark.parametrize("decay", [0.9, 0.999, 0.5])
def test_ema_float64_equals_torchs_get_ema_multi_avg_fn(decay):
    torch = pytest.importorskip("torch")
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    its = _iterates(30, seed=42)
    a = AveragedParams(its[0], mode="ema", decay=decay)
    model = torch.nn.ParameterList([torch.nn.Parameter(torch.tensor(p)) for p in its[0]])
    ref = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))
    for ps in its:
        with torch.no_grad():
            for t, p in zip(model, ps):
                t.copy_(torch.tensor(p))
        ref.update_parameters(model)
        a.update(ps)
    for avg, r in zip(a.averages, ref.module.parameters()):
        assert r.dtype == torch.float64
        np.testing.assert_array_equal(avg, r.detach().numpy())


def test_float32_unchanged_and_float16_still_refused():
    its = _iterates(3, np.float32)
    a = AveragedParams(its[0])
    for ps in its:
        a.update(ps)
    assert all(x.dtype == np.float32 for x in a.averages)
    with pytest.raises(TypeError, match=r"^params\[0\]: expected a float32 or float64 .*float16"):
        AveragedParams([np.zeros(3, np.float16)])


def test_mixed_float32_float64_is_refused_by_name():
    ps = [np.zeros(3, np.float32), np.ones(2, np.float32), np.ones(4, np.float64)]
    with pytest.raises(TypeError, match=r"^params\[2\]: float64, but params\[0\] is float32"):
        AveragedParams(ps)
    a = AveragedParams([np.ones(3), np.ones(2)])
    before = [x.copy() for x in a.averages]
    a.update([np.ones(3), np.ones(2)])
    with pytest.raises(TypeError, match=r"params\[1\]"):
        a.update([np.zeros(3), np.zeros(2, np.float32)])
    np.testing.assert_array_equal(a.averages[0], before[0])
    assert a.n_averaged == 1


def test_float64_state_dict_round_trips_and_float32_averages_are_refused():
    its = _iterates(4, seed=43)
    a = AveragedParams(its[0], mode="ema", decay=0.9)
    for ps in its:
        a.update(ps)
    sd = a.state_dict()
    assert all(x.dtype == np.float64 for x in sd["averages"])
    b = AveragedParams([np.zeros(k) for k in SIZES], mode="ema", decay=0.9)
    b.load_state_dict(sd)
    for x, y in zip(a.averages, b.averages):
        np.testing.assert_array_equal(x, y)
    bad = dict(sd, averages=[x.astype(np.float32) for x in sd["averages"]])
    with pytest.raises(TypeError, match=r"averages'\]\[0\]"):
        b.load_state_dict(bad)
    out = [np.empty(k) for k in SIZES]
    b.copy_to(out)
    for x, y in zip(out, a.averages):
        np.testing.assert_array_equal(x, y)


def test_swa_lerp_float64_lists_and_mixed_lists_refused_before_writing():
    rng = np.random.default_rng(44)
    avgs = [rng.standard_normal(k) for k in SIZES]
    params = [rng.standard_normal(k) for k in SIZES]
    want = [a + 0.25 * (p - a) for a, p in zip(avgs, params)]
    _cpu.swa_lerp_(avgs, params, 0.25)
    for x, y in zip(avgs, want):
        np.testing.assert_allclose(x, y, rtol=1e-15, atol=1e-15)
    keep = [a.copy() for a in avgs]
    with pytest.raises(TypeError, match=r"^params\[1\]: expected float64, got float32"):
        _cpu.swa_lerp_(avgs, [params[0], params[1].astype(np.float32), *params[2:]], 0.5)
    with pytest.raises(TypeError, match=r"^averages\[2\]: expected float64, got float32"):
        _cpu.swa_lerp_([avgs[0], avgs[1], avgs[2].astype(np.float32), *avgs[3:]], params, 0.5)
    for x, y in zip(avgs, keep):
        np.testing.assert_array_equal(x, y)


def test_torch_adapter_swa_drifts_from_torchs_cpu_formula_but_is_as_accurate():
    # optkern.torch.AveragedModel's docstring said its SWA differed from torch's CPU formula
    # (a + (p - a) / (n + 1)) "by an ulp or so"; over 200 updates they drift apart by far more
    # (where the mean is near 0), while both stay as close to the float64 mean
    torch = pytest.importorskip("torch")
    from torch.optim import swa_utils

    from optkern.torch.swa import AveragedModel

    torch.manual_seed(0)
    m = torch.nn.Linear(32, 32)
    ref, ours = swa_utils.AveragedModel(m), AveragedModel(m)
    mean = None
    for n in range(200):
        with torch.no_grad():
            for p in m.parameters():
                p.add_(torch.randn_like(p) * 0.1)
        ref.update_parameters(m)
        ours.update_parameters(m)
        flat = torch.cat([p.detach().flatten() for p in m.parameters()]).double()
        mean = flat.clone() if mean is None else mean + (flat - mean) / (n + 1)
    r = torch.cat([p.detach().flatten() for p in ref.module.parameters()]).numpy()
    o = torch.cat([p.detach().flatten() for p in ours.module.parameters()]).numpy()
    want = mean.numpy()
    ulps = np.abs(r - o) / np.spacing(np.abs(r))
    assert ulps.max() > 100  # not "an ulp or so"
    scale = np.finfo(np.float32).eps * np.abs(want).max()
    err_ref, err_ours = np.abs(r - want).max() / scale, np.abs(o - want).max() / scale
    assert err_ours < 4 and err_ref < 4  # each within a few float32 eps of the largest |mean|
    assert np.abs(o - want).mean() < 1.5 * np.abs(r - want).mean()
