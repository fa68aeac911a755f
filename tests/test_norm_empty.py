"""Empty inputs to the channel and group norms: an empty batch (N = 0) or a zero-size spatial dim
((N, C, 0), (N, C, 0, 5)). torch returns an empty output for each norm in training and eval mode
(batch norm's "Expected more than 1 value per channel when training" is for exactly one value),
leaves the running buffers alone and gives zero parameter gradients; so does optkern. A spatial
size of 0 reached the native kernels, which refused it with their own message naming no argument
("shape: N >= 0, C >= 1, S >= 1 required", "row layout: ...").
"""

import zlib

import numpy as np
import pytest

from optkern import norm

SHAPES = [(2, 4, 0), (0, 4, 0), (0, 4, 3), (2, 4, 0, 5), (0, 4)]
DTYPES = [np.float32, np.float64]
# name -> (forward(x, w, b, rm, rv) -> (y, saved), backward(dy, x, w, saved) -> (dx, dw, db), needs spatial dims)
NORMS = {
    "batch_norm train": (
        lambda x, w, b, rm, rv: norm.batch_norm(x, w, b, rm, rv, training=True, momentum=0.5),
        norm.batch_norm_backward,
    ),
    "batch_norm eval": (
        lambda x, w, b, rm, rv: norm.batch_norm(x, w, b, rm, rv, training=False),
        norm.batch_norm_backward,
    ),
    "group_norm": (lambda x, w, b, rm, rv: norm.group_norm(x, 2, w, b), norm.group_norm_backward),
    "instance_norm input stats": (
        lambda x, w, b, rm, rv: norm.instance_norm(x, w, b, rm, rv, momentum=0.5),
        norm.instance_norm_backward,
    ),
    "instance_norm input stats, no buffers": (
        lambda x, w, b, rm, rv: norm.instance_norm(x, w, b),
        norm.instance_norm_backward,
    ),
    "instance_norm running": (
        lambda x, w, b, rm, rv: norm.instance_norm(x, w, b, rm, rv, use_input_stats=False),
        norm.instance_norm_backward,
    ),
}


def _cases():
    for shape in SHAPES:
        for name in NORMS:
            if len(shape) > 2 or name.startswith("batch_norm"):
                yield shape, name


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,name", list(_cases()))
def test_empty_input_gives_an_empty_output_and_zero_parameter_grads(shape, name, dtype):
    rng = np.random.default_rng(zlib.crc32(repr((shape, name, dtype.__name__)).encode()))
    fwd, bwd = NORMS[name]
    x = np.zeros(shape, dtype)
    w, b = rng.standard_normal(4).astype(dtype), rng.standard_normal(4).astype(dtype)
    rm, rv = rng.standard_normal(4).astype(dtype), rng.uniform(0.5, 2, 4).astype(dtype)
    rm0, rv0 = rm.copy(), rv.copy()
    y, saved = fwd(x, w, b, rm, rv)
    assert y.shape == shape and y.dtype == dtype
    np.testing.assert_array_equal(rm, rm0)  # no statistics: the buffers as they were
    np.testing.assert_array_equal(rv, rv0)
    dx, dw, db = bwd(np.zeros(shape, dtype), x, w, saved)
    assert dx.shape == shape and dx.dtype == dtype
    np.testing.assert_array_equal(dw, np.zeros(4))  # Σ over no values
    np.testing.assert_array_equal(db, np.zeros(4))


@pytest.mark.parametrize("dtype", DTYPES)
def test_statistics_of_empty_groups_are_torchs(dtype):
    """torch's native_group_norm of empty groups: mean 0, rstd NaN (what the saved tuples hold)."""
    y, s = norm.group_norm(np.zeros((2, 4, 0), dtype), 2)
    assert s.mean.shape == (2, 2) and s.rstd.shape == (2, 2)
    np.testing.assert_array_equal(s.mean, 0)
    assert np.isnan(s.rstd).all()


def test_empty_inputs_are_still_checked():
    """The native kernels still see every argument (they get the same zero elements as (0, C, 1))."""
    x = np.zeros((2, 4, 0))
    with pytest.raises(TypeError, match="^weight: expected float64"):
        norm.group_norm(x, 2, np.ones(4, np.float32))
    with pytest.raises(TypeError, match="^weight: expected float64"):
        norm.batch_norm(x, np.ones(4, np.float32), training=True)
    with pytest.raises(TypeError, match="^bias: expected float64"):
        norm.instance_norm(x, None, np.ones(4, np.float32), np.zeros(4), np.ones(4), use_input_stats=False)
    with pytest.raises(TypeError, match="^out: expected float64"):
        norm.batch_norm(x, None, None, np.zeros(4), np.ones(4), training=False, out=np.zeros(x.shape, np.float32))
    with pytest.raises(TypeError, match="^x: expected float16, bfloat16, float32 or float64"):
        norm.instance_norm(x.astype(np.int32))
    s = norm.group_norm(x, 2)[1]
    with pytest.raises(ValueError, match="^saved.mean: expected 4 elements, got 3"):
        norm.group_norm_backward(x, x, None, norm.RowNormSaved(np.zeros(3), s.rstd, 2))
    with pytest.raises(TypeError, match="^saved.rstd: expected float64, got float32"):
        norm.group_norm_backward(x, x, None, norm.RowNormSaved(s.mean, s.rstd.astype(np.float32), 2))


@pytest.mark.parametrize("shape", [(1, 4), (1, 4, 1), (1, 4, 1, 1)])
def test_one_value_per_channel_when_training_names_x(shape):
    """Exactly one value per channel (torch's ValueError), before the buffers change."""
    x, rm, rv = np.ones(shape), np.zeros(4), np.ones(4)
    with pytest.raises(ValueError, match="^x: expected more than 1 value per channel when training"):
        norm.batch_norm(x, None, None, rm, rv, training=True)
    if len(shape) > 2:
        with pytest.raises(ValueError, match="^x: expected more than 1 spatial element"):
            norm.instance_norm(np.ones((3,) + shape[1:]), None, None, rm, rv)
    np.testing.assert_array_equal(rm, 0)
    np.testing.assert_array_equal(rv, 1)


@pytest.mark.parametrize("shape,name", list(_cases()))
def test_torch_gives_the_same(shape, name):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = torch.zeros(shape, dtype=torch.float64)
    w, b = torch.ones(4, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)
    rm, rv = torch.full((4,), 0.5, dtype=torch.float64), torch.full((4,), 2.0, dtype=torch.float64)
    # (torch's instance norm of an empty batch fails with an IndexError repeating weight: none given it)
    iw, ib = (w, b) if shape[0] else (None, None)
    ty = {
        "batch_norm train": lambda: F.batch_norm(x, rm, rv, w, b, training=True, momentum=0.5),
        "batch_norm eval": lambda: F.batch_norm(x, rm, rv, w, b, training=False),
        "group_norm": lambda: F.group_norm(x, 2, w, b),
        "instance_norm input stats": lambda: F.instance_norm(x, rm, rv, iw, ib, momentum=0.5),
        "instance_norm input stats, no buffers": lambda: F.instance_norm(x, None, None, iw, ib),
        "instance_norm running": lambda: F.instance_norm(x, rm, rv, iw, ib, use_input_stats=False),
    }[name]()
    rm_ok, rv_ok = rm.numpy().copy(), rv.numpy().copy()
    y, _ = NORMS[name][0](x.numpy(), w.numpy(), b.numpy(), rm_ok, rv_ok)
    assert tuple(ty.shape) == y.shape
    if shape[0] or name != "instance_norm input stats":  # (torch's average over no instances: NaN buffers)
        np.testing.assert_array_equal(rm_ok, rm.numpy())
        np.testing.assert_array_equal(rv_ok, rv.numpy())
    for shape1 in ([1, 4], [1, 4, 1]):
        with pytest.raises(ValueError, match="more than 1 value per channel"):
            F.batch_norm(torch.ones(shape1, dtype=torch.float64), None, None, training=True)
