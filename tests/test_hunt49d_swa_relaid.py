"""optkern.torch.AveragedModel follows a model param laid out anew or narrowed at the same address
(``w.data = w.data.t()``, ``w.data = w.data[:, :2]``) as torch's AveragedModel does (hunt 49d).

Its fused plan (the views of the averages and of the model's tensors) was kept while the tensors'
ids and data pointers held: a square weight transposed in place was averaged element by element in
its old layout (each average with another element of the model), and a narrowed one was averaged
silently with memory it no longer showed, where torch raises. The plan's key is now the view
cache's (``_handover._data_key``: addresses, dtypes, shapes and strides).
"""

from __future__ import annotations

import pytest

import optkern.torch as OT

torch = pytest.importorskip("torch")
swa_utils = pytest.importorskip("torch.optim.swa_utils")


@pytest.mark.parametrize("ema", [False, True])
def test_a_weight_transposed_in_place_is_averaged_as_torch_averages_it(ema):
    torch.manual_seed(0)
    m = torch.nn.Linear(3, 3, bias=False)
    kw = {"multi_avg_fn": OT.get_ema_multi_avg_fn(0.9)} if ema else {}
    twk = {"multi_avg_fn": swa_utils.get_ema_multi_avg_fn(0.9)} if ema else {}
    ours, ref = OT.AveragedModel(m, **kw), swa_utils.AveragedModel(m, **twk)
    for k in range(5):
        with torch.no_grad():
            m.weight.add_(torch.randn(3, 3))
        if k in (2, 4):  # (transposed, then back)
            m.weight.data = m.weight.data.t()
        ours.update_parameters(m)
        ref.update_parameters(m)
        torch.testing.assert_close(ours.module.weight, ref.module.weight, rtol=1e-6, atol=1e-6)


def test_a_narrowed_weight_is_refused_as_torch_refuses_it():
    m = torch.nn.Linear(6, 1, bias=False)
    ours, ref = OT.AveragedModel(m), swa_utils.AveragedModel(m)
    for avg in (ours, ref):
        avg.update_parameters(m)
        avg.update_parameters(m)
    m.weight.data = m.weight.data[:, :2]  # (the same address, a third of the elements)
    for avg in (ref, ours):
        with pytest.raises(RuntimeError, match="must match the size"):
            avg.update_parameters(m)
