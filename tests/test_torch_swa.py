"""optkern.torch.AveragedModel against torch.optim.swa_utils.AveragedModel: SWA and EMA of a torch
model's params (and buffers), the float32 tensors in one fused pass, the rest as torch does."""

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")

from optkern import swa  # noqa: E402
from torch_common import gpu  # noqa: E402

torch.set_num_threads(1)
swa_utils = torch.optim.swa_utils


def net(dtype=torch.float32):
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(6, 9), torch.nn.BatchNorm1d(9), torch.nn.Tanh(), torch.nn.Linear(9, 3)
    ).to(dtype)


def wiggle(model, seed):
    """New values for every param and float buffer (as training would give), in place."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in list(model.parameters()) + [b for b in model.buffers() if b.is_floating_point()]:
            t.add_(torch.randn(t.shape, generator=g, dtype=t.dtype).to(t.device) * 0.1)
        for b in model.buffers():
            if not b.is_floating_point():
                b.add_(1)


def run(cls, model, updates=6, **kw):
    avg = cls(model, **kw)
    m = copy.deepcopy(model)
    for k in range(updates):
        wiggle(m, k)
        avg.update_parameters(m)
    return avg


def tensors(avg):
    return list(avg.module.parameters()) + list(avg.module.buffers())


@pytest.mark.parametrize("use_buffers", [False, True])
def test_swa_matches_torch_and_optkern_swa(use_buffers):
    """SWA: torch's CPU average to an ulp or two (a + (p - a) / (n + 1) there, lerp here), and
    optkern.swa.AveragedParams (the same lerp) bit for bit on the params."""
    model = net()
    ours = run(ot.AveragedModel, model, use_buffers=use_buffers)
    theirs = run(swa_utils.AveragedModel, model, use_buffers=use_buffers)
    assert int(ours.n_averaged) == int(theirs.n_averaged) == 6
    for a, b in zip(tensors(ours), tensors(theirs)):
        assert a.dtype == b.dtype
        if a.is_floating_point():
            assert torch.allclose(a, b, rtol=1e-6, atol=1e-7)
        else:
            assert torch.equal(a, b)  # (num_batches_tracked: torch's own formula)
    m = copy.deepcopy(model)
    ref = swa.AveragedParams([p.detach().numpy().copy() for p in m.parameters()])
    for k in range(6):  # (as run() updates: the first update copies)
        wiggle(m, k)
        ref.update([p.detach().numpy() for p in m.parameters()])
    for a, r in zip(ours.module.parameters(), ref.averages):
        assert np.array_equal(a.detach().numpy(), r)


def test_ema_with_optkerns_getter_is_torchs_bit_for_bit():
    """EMA through optkern.torch.get_ema_multi_avg_fn: fused here, torch._foreach_lerp_ in torch's
    AveragedModel (the same function works there): the same bits."""
    model = net()
    ours = run(ot.AveragedModel, model, multi_avg_fn=ot.get_ema_multi_avg_fn(0.9), use_buffers=True)
    theirs = run(swa_utils.AveragedModel, model, multi_avg_fn=swa_utils.get_ema_multi_avg_fn(0.9), use_buffers=True)
    again = run(swa_utils.AveragedModel, model, multi_avg_fn=ot.get_ema_multi_avg_fn(0.9), use_buffers=True)
    for a, b, c in zip(tensors(ours), tensors(theirs), tensors(again)):
        assert torch.equal(a, b) and torch.equal(b, c)


def test_ema_nan_decay_runs_as_torchs():
    """A NaN decay, which torch's getter lets through its range check (a lerp weight the fused
    swa_lerp_ refuses): torch's own formula, the same bits."""
    model = net()
    nan = float("nan")
    ours = run(ot.AveragedModel, model, multi_avg_fn=ot.get_ema_multi_avg_fn(nan), use_buffers=True)
    theirs = run(swa_utils.AveragedModel, model, multi_avg_fn=swa_utils.get_ema_multi_avg_fn(nan), use_buffers=True)
    for a, b in zip(tensors(ours), tensors(theirs)):
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)


def test_other_dtypes_and_rules_run_as_torch():
    """float64 models and a custom avg_fn take torch's path: torch's results exactly."""
    model = net(torch.float64)
    for kw in ({}, {"avg_fn": lambda a, p, n: 0.5 * (a + p)}):
        ours, theirs = run(ot.AveragedModel, model, **kw), run(swa_utils.AveragedModel, model, **kw)
        assert all(torch.equal(a, b) for a, b in zip(tensors(ours), tensors(theirs)))


def test_update_bn_and_state_dict_work_as_torchs():
    model = net()
    avg = run(ot.AveragedModel, model)
    loader = [(torch.randn(8, 6, generator=torch.Generator().manual_seed(i)),) for i in range(3)]
    swa_utils.update_bn([x for (x,) in loader], avg)
    sd = avg.state_dict()
    back = swa_utils.AveragedModel(net())
    back.load_state_dict(sd)
    assert all(torch.equal(a, b) for a, b in zip(tensors(avg), tensors(back)))
    assert int(back.n_averaged) == 6


def test_a_param_given_new_memory_is_followed():
    """The fused update keeps its views while the tensors keep their memory; a param whose .data is
    replaced (or a different model passed) is read from its new memory, as torch reads it."""
    model = net()
    ours = ot.AveragedModel(model, multi_avg_fn=ot.get_ema_multi_avg_fn(0.5))
    theirs = swa_utils.AveragedModel(model, multi_avg_fn=swa_utils.get_ema_multi_avg_fn(0.5))
    m = copy.deepcopy(model)
    for k in range(4):
        if k == 2:
            m[0].weight.data = m[0].weight.data.clone() + 1.0
        if k == 3:
            m = copy.deepcopy(m)
        wiggle(m, k)
        ours.update_parameters(m)
        theirs.update_parameters(m)
        assert all(torch.equal(a, b) for a, b in zip(tensors(ours), tensors(theirs))), k


@gpu
def test_cuda_fused_update_is_the_cpus_bit_for_bit():
    """On CUDA the fused update is one launch on torch's stream: the same lerp, the same bits."""
    model = net()
    kw = dict(multi_avg_fn=ot.get_ema_multi_avg_fn(0.9), use_buffers=True)
    cpu = run(ot.AveragedModel, model, **kw)
    dev = run(ot.AveragedModel, copy.deepcopy(model).cuda(), **kw)
    assert all(torch.equal(a, b.cpu()) for a, b in zip(tensors(cpu), tensors(dev)))
