"""optkern.torch.AveragedModel's cached fused plan does not keep the last model's memory alive
(56th session's leftover pass, i): it held NumPy views of the model's float32 tensors (and the
tensors torch's rule averages), so a model deleted after an update stayed allocated until the next
update made a new plan. The plan is now dropped when its model is freed (a weakref finalizer);
rebuilding the model's views per update instead cost ~300 of ~900 us per update of 200 tensors.
"""

from __future__ import annotations

import copy
import gc

import pytest

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")
from torch.multiprocessing.reductions import StorageWeakRef  # noqa: E402


def _model():
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(7, 5), torch.nn.BatchNorm1d(5), torch.nn.Linear(5, 3))
    m[2].weight.data = m[2].weight.data.double()  # (a tensor torch's own rule averages)
    return m


@pytest.mark.parametrize("use_buffers", [False, True])
@pytest.mark.parametrize("ema", [False, True])
def test_deleted_model_is_freed_after_updates(use_buffers, ema):
    kw = {"multi_avg_fn": ot.get_ema_multi_avg_fn(0.9)} if ema else {}
    model = _model()
    avg = ot.AveragedModel(model, use_buffers=use_buffers, **kw)
    for _ in range(3):
        avg.update_parameters(model)
    refs = [StorageWeakRef(t.untyped_storage()) for t in list(model.parameters()) + list(model.buffers())]
    del model
    gc.collect()
    assert all(r.expired() for r in refs)


def test_cached_plan_still_averages_as_torch():
    model = _model()
    ours, theirs = ot.AveragedModel(model), torch.optim.swa_utils.AveragedModel(copy.deepcopy(model))
    for i in range(5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.25 * (i + 1))
        ours.update_parameters(model)
        theirs.update_parameters(model)
    for a, b in zip(ours.module.parameters(), theirs.module.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_a_new_plan_is_not_dropped_by_the_old_models_death():
    first, second = _model(), _model()
    avg = ot.AveragedModel(first)
    avg.update_parameters(first)
    avg.update_parameters(first)
    avg.update_parameters(second)  # (a new plan, for the second model)
    plan = avg.__dict__["_fused_plan"]
    del first
    gc.collect()
    assert avg.__dict__.get("_fused_plan") is plan
    del second
    gc.collect()
    assert "_fused_plan" not in avg.__dict__
