"""The functional norms' ``out`` returned as given (40th hunt, h): layer / RMS / group / instance /
batch norm and their backwards, given a torch tensor (any foreign array) as ``out``, wrote it
through its NumPy view and returned that view as the tuple's first element: ``y, saved =
layer_norm(x, 5, out=t)`` handed back an ndarray (``y is t`` False, ``y.requires_grad`` failed),
where NumPy's own ``out=`` functions return ``out``. The first element is now the object passed
(its torch version counter bumped, as before); a NumPy ``out`` is returned as it was, itself."""

from __future__ import annotations

import numpy as np
import pytest

from dlpack_exporters import Plain
from optkern.norm import functional as F

torch = pytest.importorskip("torch")

_RNG = np.random.default_rng(0)
X = _RNG.standard_normal((4, 6, 5)).astype(np.float32)
DY = _RNG.standard_normal(X.shape).astype(np.float32)
W = _RNG.standard_normal(6).astype(np.float32)
B = _RNG.standard_normal(6).astype(np.float32)
LW = _RNG.standard_normal(5).astype(np.float32)  # (layer / RMS norm over the last dim)


def _saved(forward):
    return forward(None)[1]


# name -> call(out): each writes its first result (y or dx) into out, of X's shape
CALLS = {
    "layer_norm": lambda o: F.layer_norm(X, 5, LW, LW, out=o),
    "layer_norm_backward": lambda o: F.layer_norm_backward(DY, X, LW, _saved(CALLS["layer_norm"]), out=o),
    "rms_norm": lambda o: F.rms_norm(X, 5, LW, out=o),
    "rms_norm_backward": lambda o: F.rms_norm_backward(DY, X, LW, _saved(CALLS["rms_norm"]), out=o),
    "group_norm": lambda o: F.group_norm(X, 3, W, B, out=o),
    "group_norm_backward": lambda o: F.group_norm_backward(DY, X, W, _saved(CALLS["group_norm"]), out=o),
    "instance_norm": lambda o: F.instance_norm(X, W, B, out=o),
    "instance_norm_backward": lambda o: F.instance_norm_backward(DY, X, W, _saved(CALLS["instance_norm"]), out=o),
    "batch_norm": lambda o: F.batch_norm(X, W, B, out=o),
    "batch_norm_eval": lambda o: F.batch_norm(X, W, B, np.zeros(6, np.float32), np.ones(6, np.float32), False, out=o),
    "batch_norm_backward": lambda o: F.batch_norm_backward(DY, X, W, _saved(CALLS["batch_norm"]), out=o),
}


def _same_rest(got, want):
    """Every element after the first as the call without ``out`` returns it."""
    assert type(got) is type(want) and len(got) == len(want)
    for g, w in zip(got[1:], want[1:]):
        if w is None or not hasattr(w, "__len__") or isinstance(w, np.ndarray):
            np.testing.assert_array_equal(g, w)
        else:  # (a saved named tuple of arrays and flags)
            assert type(g) is type(w)
            for a, b in zip(g, w):
                np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_torch_out_is_the_first_result_and_its_version_is_bumped(name):
    want = CALLS[name](None)
    out = torch.full(X.shape, float("nan"))
    a = torch.ones(X.shape, requires_grad=True)
    saved = (a * out).sum()  # (its backward reads `out` as it was)
    before = out._version
    got = CALLS[name](out)
    assert got[0] is out
    np.testing.assert_array_equal(out.numpy(), want[0])
    _same_rest(got, want)
    assert out._version > before
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        saved.backward()


@pytest.mark.parametrize("name", sorted(CALLS))
def test_dlpack_out_is_the_first_result(name):
    want = CALLS[name](None)
    buf = np.full(X.shape, np.nan, dtype=np.float32)
    out = Plain(buf)
    got = CALLS[name](out)
    assert got[0] is out
    np.testing.assert_array_equal(buf, want[0])
    _same_rest(got, want)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_numpy_out_is_returned_itself(name):
    out = np.full(X.shape, np.nan, dtype=np.float32)
    got = CALLS[name](out)
    assert got[0] is out
    np.testing.assert_array_equal(out, CALLS[name](None)[0])


def test_positional_torch_out_and_empty_rows():
    out = torch.zeros(X.shape)
    y, _ = F.layer_norm(X, 5, LW, LW, 1e-5, out)
    assert y is out
    x = np.zeros((0, 5), np.float32)
    out = torch.zeros(0, 5)
    y, saved = F.layer_norm(x, 5, out=out)
    assert y is out
    dx, dw, db = F.layer_norm_backward(x, x, None, saved, out=torch.zeros(0, 5))
    assert isinstance(dx, torch.Tensor) and isinstance(dw, np.ndarray)


def test_without_param_grads_the_rest_stays_none():
    out = torch.zeros(X.shape)
    got = F.layer_norm_backward(DY, X, LW, _saved(CALLS["layer_norm"]), param_grads=False, out=out)
    assert got[0] is out and got[1:] == (None, None)


def test_refused_torch_out_keeps_its_version():
    out = torch.zeros(X.shape, dtype=torch.float64)
    before = out._version
    with pytest.raises((TypeError, ValueError), match="out"):
        F.layer_norm(X, 5, out=out)
    assert out._version == before
