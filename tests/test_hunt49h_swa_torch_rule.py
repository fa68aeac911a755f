"""optkern.torch.AveragedModel's tensors outside the fused pass take torch's rule for their device.

torch's AveragedModel averages SWA with its foreach rule (``torch._foreach_lerp_`` by ``1 / (n +
1)``, a float32 weight) on the devices with foreach kernels (CUDA) and with ``a + (p - a) / (n +
1)`` elsewhere. The tensors the fused pass leaves to torch's formula (float64, 16-bit, strided
ones) took the second on every device, so on the GPU a float64 model's average drifted from
torch's (3e-8 after 6 updates). The CPU is made a foreach device here, as CUDA is, to run that path
without a GPU: the averages are torch's bit for bit there, and on the plain CPU still are.
"""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")

from torch.optim import swa_utils  # noqa: E402

import optkern.torch as ot  # noqa: E402


def _run(dtype) -> tuple:
    torch.manual_seed(0)
    model = torch.nn.Linear(7, 5).to(dtype)
    theirs, ours = swa_utils.AveragedModel(model), ot.AveragedModel(model)
    gen = torch.Generator().manual_seed(1)
    for _ in range(6):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=gen, dtype=torch.float64).to(dtype))
        theirs.update_parameters(model)
        ours.update_parameters(model)
    return list(theirs.parameters()), list(ours.parameters())


@pytest.mark.parametrize("foreach_device", [True, False])
@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_unfused_tensors_take_torchs_rule_for_their_device(monkeypatch, foreach_device, dtype):
    if foreach_device:  # (torch's own test of the device, which both read at each update)
        monkeypatch.setattr(swa_utils, "_get_foreach_kernels_supported_devices", lambda: ["cpu", "cuda"])
    theirs, ours = _run(dtype)
    for a, b in zip(theirs, ours):
        assert torch.equal(a, b), (a - b).abs().max().item()


def test_integer_buffers_are_averaged_on_a_foreach_device_too(monkeypatch):
    """``use_buffers=True`` with a BatchNorm: its int64 ``num_batches_tracked`` takes the CPU formula
    on every device (torch's foreach rule raises for it on the GPU); the float tensors torch's rule."""
    monkeypatch.setattr(swa_utils, "_get_foreach_kernels_supported_devices", lambda: ["cpu", "cuda"])
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4)).double()
    # torch's reference for the float tensors: the same model without the integer buffer (BatchNorm
    # skips a None count; its momentum alone moves the running stats, so they stay the same)
    twin = copy.deepcopy(model)
    twin[1].num_batches_tracked = None
    ours = ot.AveragedModel(model, use_buffers=True)
    theirs = swa_utils.AveragedModel(twin, use_buffers=True)
    gen = torch.Generator().manual_seed(2)
    for _update in range(4):
        for _ in range(3):  # (three forwards an update: the count 3, 6, 9, 12 at the updates)
            x = torch.randn(5, 3, generator=gen, dtype=torch.float64)
            model(x), twin(x)
        with torch.no_grad():  # (the params move too: their averages are compared)
            for p, q in zip(model.parameters(), twin.parameters()):
                p.add_(torch.randn(p.shape, generator=gen, dtype=torch.float64)), q.copy_(p)
        ours.update_parameters(model)
        theirs.update_parameters(twin)
    # (the counts 3, 6, 9, 12 averaged by torch's CPU rule, each result truncated: 3 + 3 / 2 -> 4,
    # 4 + 5 / 3 -> 5, 5 + 7 / 4 -> 6; a count never averaged stays 3, the model's latest would be 12)
    assert int(ours.module[1].num_batches_tracked) == 6
    assert int(ours.n_averaged) == int(theirs.n_averaged) == 4
    mine = {k: v for k, v in ours.module.state_dict().items() if v.is_floating_point()}
    ref = theirs.module.state_dict()
    assert mine.keys() == {k for k, v in ref.items() if v is not None}
    assert len(mine) == 6  # (Linear's weight and bias, BatchNorm's weight, bias, running mean and var)
    for k, v in mine.items():
        assert torch.equal(v, ref[k]), (k, (v - ref[k]).abs().max().item())
