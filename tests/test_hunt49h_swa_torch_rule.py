"""optkern.torch.AveragedModel's tensors outside the fused pass take torch's rule for their device.

torch's AveragedModel averages SWA with its foreach rule (``torch._foreach_lerp_`` by ``1 / (n +
1)``, a float32 weight) on the devices with foreach kernels (CUDA) and with ``a + (p - a) / (n +
1)`` elsewhere. The tensors the fused pass leaves to torch's formula (float64, 16-bit, strided
ones) took the second on every device, so on the GPU a float64 model's average drifted from
torch's (3e-8 after 6 updates). The CPU is made a foreach device here, as CUDA is, to run that path
without a GPU: the averages are torch's bit for bit there, and on the plain CPU still are.
"""

from __future__ import annotations

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
    ours = ot.AveragedModel(model, use_buffers=True)
    theirs = swa_utils.AveragedModel(model, use_buffers=True)
    gen = torch.Generator().manual_seed(2)
    for i in range(4):
        model(torch.randn(5, 3, generator=gen, dtype=torch.float64))
        ours.update_parameters(model)
        if i == 0:
            theirs.update_parameters(model)  # (its first update copies: no rule yet)
        else:
            with pytest.raises(RuntimeError, match="addcdiv"):  # (torch's own, at the second)
                theirs.update_parameters(model)
    # (the counts 1, 2, 3, 4 averaged by torch's CPU rule, each result truncated: 1 + 1 // 2, ...)
    assert int(ours.module[1].num_batches_tracked) == 1
    assert int(ours.n_averaged) == 4
