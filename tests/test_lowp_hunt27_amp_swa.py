"""GradScaler.scale against torch.amp.GradScaler.scale (its 0-d float32 scale's type promotion, its
list / tuple form), and swa.update_bn without BatchNorm layers against torch's update_bn."""

import numpy as np
import pytest

from optkern.amp import GradScaler
from optkern.norm import BatchNorm
from optkern.swa import update_bn

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = ml_dtypes.bfloat16

torch = pytest.importorskip("torch")

_TORCH = {np.float16: torch.float16, BF16: torch.bfloat16, np.float32: torch.float32, np.float64: torch.float64}


def _torch_scaled(value, dtype, shape):
    ts = torch.amp.GradScaler("cpu")  # (init_scale 2**16, as ours)
    out = ts.scale(torch.full(shape, value, dtype=_TORCH[dtype]))
    return out.double().numpy(), {v: k for k, v in _TORCH.items()}[out.dtype]


@pytest.mark.parametrize("dtype", [np.float16, BF16, np.float32, np.float64])
@pytest.mark.parametrize("shape", [(), (3,)])
@pytest.mark.parametrize("value", [1.0, 0.75, 3e4, 0.0, -2.5e-5])
def test_scale_promotes_as_torchs_zero_dim_float32_scale(dtype, shape, value):
    """torch multiplies by a 0-d float32 scale: a 0-d half loss (the usual scalar loss) becomes
    float32, where 65536 x 1.0 is finite; an n-d one keeps its dtype (and overflows, as torch's).
    A Python float scale was rounded to float16 first (2**16: inf), every float16 loss inf or NaN."""
    want, want_dtype = _torch_scaled(value, dtype, shape)
    loss = np.full(shape, value, dtype)
    for given in (loss, loss[()]) if shape == () else (loss,):  # (a 0-d array and a NumPy scalar)
        got = GradScaler().scale(given)  # (an n-d half loss past its range is inf, silently, as torch's)
        assert np.dtype(got.dtype) == np.dtype(want_dtype), (type(given), got.dtype, want_dtype)
        assert np.shape(got) == shape
        np.testing.assert_array_equal(np.asarray(got, np.float64), want)


def test_scale_of_a_python_number_is_unchanged():
    sc = GradScaler(init_scale=8.0)
    assert sc.scale(2.5) == 20.0 and type(sc.scale(2.5)) is float
    assert sc.scale(3) == 24.0


def test_scale_of_a_list_or_tuple_scales_each_as_torch():
    """torch's ``scale`` takes an iterable of outputs and returns the same container type."""
    sc = GradScaler(init_scale=4.0)
    losses = [np.float32(1.5), (np.array([1.0, 2.0], np.float32), np.float16(0.5))]
    got = sc.scale(losses)
    assert type(got) is list and type(got[1]) is tuple
    assert got[0] == np.float32(6.0) and got[0].dtype == np.float32
    np.testing.assert_array_equal(got[1][0], [4.0, 8.0])
    assert got[1][1] == 2.0 and got[1][1].dtype == np.float32  # (0-d half: float32, as torch)
    ts = torch.amp.GradScaler("cpu", init_scale=4.0)
    tgot = ts.scale([torch.tensor(1.5), (torch.tensor([1.0, 2.0]), torch.tensor(0.5, dtype=torch.float16))])
    assert type(tgot) is list and type(tgot[1]) is tuple and tgot[1][1].dtype == torch.float32
    assert GradScaler(enabled=False).scale(losses) is losses


def test_scale_of_something_else_is_named():
    with pytest.raises(TypeError, match="loss"):
        GradScaler().scale("1.0")
    with pytest.raises(TypeError, match=r"loss\[1\]"):
        GradScaler().scale([1.0, "x"])


def test_update_bn_without_batch_norm_layers_does_not_run_the_data():
    """torch's update_bn returns before its loader is read when the model has no BatchNorm layer;
    ours ran ``forward`` over every batch for nothing (the whole training set, after SWA)."""
    calls = []

    def batches():
        calls.append("iterated")
        yield np.zeros((2, 3), np.float32)

    update_bn(batches(), lambda x: calls.append("forward"), [])
    assert calls == []

    model = torch.nn.Sequential(torch.nn.Linear(3, 2))
    seen = []

    class Loader:
        def __iter__(self):
            seen.append("iterated")
            return iter([torch.zeros(2, 3)])

    torch.optim.swa_utils.update_bn(Loader(), model)
    assert seen == []


def test_update_bn_with_only_untracked_layers_runs_the_data_as_torch():
    """torch's does iterate when the model has BatchNorm layers, tracked or not: so do we."""
    bn = BatchNorm(3, track_running_stats=False)
    calls = []
    update_bn([np.ones((4, 3), np.float32)], lambda x: calls.append(bn(x, training=True)), [bn])
    assert len(calls) == 1
    tm = torch.nn.Sequential(torch.nn.BatchNorm1d(3, track_running_stats=False))
    seen = []
    tm.register_forward_hook(lambda *a: seen.append(1))
    torch.optim.swa_utils.update_bn([torch.ones(4, 3)], tm)
    assert seen == [1]
