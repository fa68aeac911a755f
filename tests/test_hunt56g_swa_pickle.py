"""optkern.torch.AveragedModel pickles, saves and deep-copies as torch's AveragedModel does, at any
point of a run: its cached fused plan (views of the average's and of the last model's memory, and
torch's rule for the tensors the fused pass leaves, as local functions) is not part of the copy.

Before: after the second update, a model with a float64 param or an integer buffer averaged
(``use_buffers=True`` with a BatchNorm's ``num_batches_tracked``) could not be pickled or
``torch.save``d ("Can't pickle local object '_swa_rule.<locals>.<lambda>'"), and every pickle of a
float32 one carried copies of the average's and of the training model's params."""

import copy
import io
import pickle

import pytest

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")

swa_utils = torch.optim.swa_utils
nn = torch.nn


def net(dtype):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(7, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Linear(5, 1)).to(dtype)


def wiggle(model, seed):
    """New values for every param and float buffer, and a count for the integer ones (training's)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            if t.is_floating_point():
                t.add_(torch.randn(t.shape, generator=g, dtype=t.dtype) * 0.1)
            else:
                t.add_(1)


def saved(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


COPIES = {
    "pickle": lambda x: pickle.loads(pickle.dumps(x)),
    "deepcopy": copy.deepcopy,
    "torch.save": saved,
}


@pytest.mark.parametrize("how", sorted(COPIES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("use_buffers", [False, True])
def test_copy_after_updates_continues_as_the_original(how, dtype, use_buffers):
    model = net(dtype)
    avg = ot.AveragedModel(model, use_buffers=use_buffers)
    for k in range(3):  # (the plan is made at the second update)
        wiggle(model, k)
        avg.update_parameters(model)
    twin_model, twin = COPIES[how]((model, avg))
    assert int(twin.n_averaged) == 3
    for k in range(3, 6):  # the copy averages as the original does, bit for bit
        wiggle(model, k)
        wiggle(twin_model, k)
        avg.update_parameters(model)
        twin.update_parameters(twin_model)
    ours, theirs = avg.state_dict(), twin.state_dict()
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), key
    # and it is its own: an update of the copy leaves the original as it was
    before = {k: v.clone() for k, v in avg.state_dict().items()}
    wiggle(twin_model, 99)
    twin.update_parameters(twin_model)
    for key, value in avg.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_pickle_holds_no_copies_of_the_cached_views():
    """A float32 average's pickle is the size of torch's AveragedModel's (before: 3.5 times it, the
    fused plan's views of the average and of the training model's params pickled as copies)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.Linear(64, 64))
    sizes = []
    for cls in (ot.AveragedModel, swa_utils.AveragedModel):
        avg = cls(model)
        for _ in range(3):
            avg.update_parameters(model)
        sizes.append(len(pickle.dumps(avg)))
    params_bytes = sum(p.numel() * 4 for p in model.parameters())
    assert sizes[0] < sizes[1] + params_bytes // 4, sizes
