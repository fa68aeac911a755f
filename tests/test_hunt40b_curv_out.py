"""Curvature products written into the caller's ``out`` (40th hunt, b): ``MLP.hvp`` / ``ggn_vp`` and
``CurvatureOperator.matvec`` given a torch tensor (any foreign array) as ``out`` wrote it through its
NumPy view and returned that view, not the tensor: ``r = m.hvp(..., out=t)`` handed back an ndarray
(``r.requires_grad``, ``r.to(...)`` failed; ``r is t`` was False, as NumPy's own ``out=`` functions
return ``out``). They now return the object passed, its torch version counter bumped (the operator's
matvec had left it alone: a graph that had saved the tensor differentiated its new values)."""

from __future__ import annotations

import numpy as np
import pytest

from dlpack_exporters import Plain as DLPackOnly
from optkern import hessian
from tiny_mlp import tiny_mlp_problem

torch = pytest.importorskip("torch")
from optkern.torch import hessian_operator  # noqa: E402 (needs torch)


@pytest.mark.parametrize("method", ["hvp", "ggn_vp"])
def test_mlp_product_returns_the_torch_out_itself(method):
    m, p, x, y, v = tiny_mlp_problem()
    want = getattr(m, method)(p, x, y, v)
    out = torch.full((m.num_params,), float("nan"), dtype=torch.float64)
    got = getattr(m, method)(p, x, y, v, out=out)
    assert got is out
    np.testing.assert_array_equal(out.numpy(), want)
    got = getattr(m, method)(p, x, y, v, out)  # (positional)
    assert got is out


@pytest.mark.parametrize("method", ["hvp", "ggn_vp"])
def test_mlp_product_returns_a_dlpack_out_itself(method):
    m, p, x, y, v = tiny_mlp_problem()
    buf = np.full(m.num_params, np.nan)
    out = DLPackOnly(buf)
    assert getattr(m, method)(p, x, y, v, out=out) is out
    np.testing.assert_array_equal(buf, getattr(m, method)(p, x, y, v))


def _operators():
    m, p, x, y, v = tiny_mlp_problem()
    yield "from_mlp", hessian.from_mlp(m, p, x, y), v  # (writes into out)
    yield "from_hvp", hessian.from_hvp(lambda u: m.hvp(p, x, y, u), v.size), v  # (copies into out)
    w = torch.tensor(p, requires_grad=True)
    yield "torch", hessian_operator(lambda: (w**4).sum(), [w]), v


@pytest.mark.parametrize("which", ["from_mlp", "from_hvp", "torch"])
def test_operator_matvec_returns_the_torch_out_and_bumps_its_version(which):
    op, v = next((o, v) for name, o, v in _operators() if name == which)
    want = op.matvec(v)
    out = torch.zeros(v.size, dtype=torch.float64)
    a = torch.ones(v.size, dtype=torch.float64, requires_grad=True)
    saved = (a * out).sum()  # (its backward reads `out` as it was)
    before = out._version
    assert op.matvec(v, out=out) is out
    np.testing.assert_array_equal(out.numpy(), want)
    assert out._version > before
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        saved.backward()


def test_operator_matvec_column_vector_returns_the_torch_out_reshaped():
    op = hessian.as_operator(np.diag(np.arange(1.0, 5.0)))
    v = np.arange(4.0).reshape(4, 1)
    out = torch.zeros(4, dtype=torch.float64)
    got = op.matvec(v, out=out)
    assert isinstance(got, torch.Tensor) and tuple(got.shape) == (4, 1)
    assert got.data_ptr() == out.data_ptr()
    np.testing.assert_array_equal(out.numpy(), np.arange(4.0) * np.arange(1.0, 5.0))


def test_operator_matvec_dlpack_out_and_numpy_out_are_returned_as_passed():
    op = hessian.as_operator(np.diag(np.arange(1.0, 5.0)))
    v = np.ones(4)
    buf = np.zeros(4)
    out = DLPackOnly(buf)
    assert op.matvec(v, out=out) is out
    np.testing.assert_array_equal(buf, np.arange(1.0, 5.0))
    plain = np.zeros(4)
    assert op.matvec(v, out=plain) is plain


def test_refused_operator_out_keeps_the_torch_version():
    op = hessian.as_operator(np.eye(4))
    out = torch.zeros(4, dtype=torch.float32)
    before = out._version
    with pytest.raises(TypeError, match="^out: expected float64"):
        op.matvec(np.ones(4), out=out)
    assert out._version == before
