"""Layer and RMS norm over a normalized_shape with a 0 in it ((3, 0) over (0,), (2, 0, 4) over (0, 4)):
torch returns an empty y, the statistics of empty rows (mean 0, rstd NaN, as native_layer_norm and
_fused_rms_norm give) and empty parameter gradients. optkern refused such a shape ("normalized_shape[0]:
must be >= 1"). An empty batch of a group / instance norm (N = 0) already matched torch
(tests/test_norm_empty.py); it is compared to torch here too, beside the new cases.
"""

import numpy as np
import pytest

from optkern import norm

# (x shape, normalized_shape)
CASES = [((3, 0), (0,)), ((2, 3, 0), (3, 0)), ((2, 0, 4), (0, 4)), ((0,), (0,)), ((0, 0), (0,))]
DTYPES = [np.float32, np.float64]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,ns", CASES)
def test_layer_norm_of_empty_rows(shape, ns, dtype):
    x = np.zeros(shape, dtype)
    w, b = np.ones(ns, dtype), np.zeros(ns, dtype)
    y, saved = norm.layer_norm(x, ns, w, b)
    lead = shape[: len(shape) - len(ns)]
    assert y.shape == shape and y.dtype == dtype
    assert saved.mean.shape == lead and saved.rstd.shape == lead
    np.testing.assert_array_equal(saved.mean, 0)
    assert np.isnan(saved.rstd).all()
    dx, dw, db = norm.layer_norm_backward(x, x, w, saved)
    assert dx.shape == shape and dx.dtype == dtype
    assert dw.shape == ns and db.shape == ns and dw.dtype == dtype
    dx, dw, db = norm.layer_norm_backward(x, x, None, saved, ns, param_grads=False)
    assert dx.shape == shape and dw is None and db is None


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,ns", CASES)
def test_rms_norm_of_empty_rows(shape, ns, dtype):
    x = np.zeros(shape, dtype)
    y, saved = norm.rms_norm(x, ns, np.ones(ns, dtype))
    assert y.shape == shape and y.dtype == dtype
    assert saved.inv_rms.shape == shape[: len(shape) - len(ns)] and np.isnan(saved.inv_rms).all()
    dx, dw = norm.rms_norm_backward(x, x, np.ones(ns, dtype), saved)
    assert dx.shape == shape and dw.shape == ns


def test_modules_take_a_zero_size_shape():
    for cls in (norm.LayerNorm, norm.RMSNorm):
        m = cls((0,), dtype=np.float64)
        x = np.zeros((2, 0))
        assert m(x).shape == (2, 0)
        assert m.backward(x).shape == (2, 0)


def test_empty_rows_still_check_the_other_arguments():
    """The native kernels still see every argument (a parameter of no elements as a stand-in of its
    dtype); the statistics' sizes are checked in Python."""
    x = np.zeros((3, 0))
    with pytest.raises(TypeError, match="^weight: expected float64"):
        norm.layer_norm(x, 0, np.ones(0, np.float32))
    with pytest.raises(TypeError, match="^bias: expected float64"):
        norm.layer_norm(x, 0, None, np.ones(0, np.float32))
    with pytest.raises(TypeError, match="^out: expected float64"):
        norm.rms_norm(x, 0, out=np.zeros((3, 0), np.float32))
    with pytest.raises(ValueError, match="^weight: expected shape"):
        norm.layer_norm(x, 0, np.ones(1))
    s = norm.layer_norm(x, 0)[1]
    with pytest.raises(TypeError, match="^weight: expected float64"):
        norm.layer_norm_backward(x, x, np.ones(0, np.float32), s)
    with pytest.raises(ValueError, match="^saved.mean: expected 3 elements, got 2"):
        norm.layer_norm_backward(x, x, None, norm.RowNormSaved(np.zeros(2), s.rstd, 1))
    with pytest.raises(TypeError, match="^saved.inv_rms: expected float64, got float32"):
        norm.rms_norm_backward(x, x, None, norm.RMSNormSaved(s.rstd.astype(np.float32)))
    with pytest.raises(ValueError, match=r"^normalized_shape\[0\]: must be >= 0"):
        norm.layer_norm(x, (-1,))


@pytest.mark.parametrize("shape,ns", CASES)
def test_torch_gives_the_same(shape, ns):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = torch.zeros(shape, dtype=torch.float64, requires_grad=True)
    w = torch.ones(ns, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(ns, dtype=torch.float64, requires_grad=True)
    F.layer_norm(x, ns, w, b).sum().backward()
    _, tmean, trstd = torch.native_layer_norm(x.detach(), ns, None, None, 1e-5)
    y, saved = norm.layer_norm(x.detach().numpy(), ns, w.detach().numpy(), b.detach().numpy())
    dx, dw, db = norm.layer_norm_backward(np.ones(shape), x.detach().numpy(), w.detach().numpy(), saved)
    assert y.shape == shape and dx.shape == tuple(x.grad.shape)
    assert dw.shape == tuple(w.grad.shape) and db.shape == tuple(b.grad.shape)
    # torch keeps the reduced dims as 1s; the values are the same
    np.testing.assert_array_equal(saved.mean.reshape(-1), tmean.numpy().reshape(-1))
    np.testing.assert_array_equal(saved.rstd.reshape(-1), trstd.numpy().reshape(-1))
    assert F.rms_norm(x.detach(), ns).shape == norm.rms_norm(x.detach().numpy(), ns)[0].shape


@pytest.mark.parametrize("shape", [(0, 4, 3), (0, 4), (0, 4, 0), (0, 4, 2, 2)])
def test_empty_batch_of_group_and_instance_norm_is_torchs(shape):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = np.zeros(shape)
    xt = torch.zeros(shape, dtype=torch.float64)
    assert tuple(F.group_norm(xt, 2).shape) == norm.group_norm(x, 2)[0].shape
    if len(shape) == 2:  # one spatial element: both refuse it
        with pytest.raises(ValueError, match="more than 1 spatial element"):
            F.instance_norm(xt)
        with pytest.raises(ValueError, match="more than 1 spatial element"):
            norm.instance_norm(x)
    else:
        y, s = norm.instance_norm(x)
        assert tuple(F.instance_norm(xt).shape) == y.shape
        assert norm.instance_norm_backward(x, x, None, s)[0].shape == shape
