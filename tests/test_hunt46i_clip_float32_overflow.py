"""optkern.torch's ``clip_grad_norm_`` / ``get_total_norm`` on finite float32 grads whose norm
overflows float32 (each 3e38: the float64 norm 6e38) returned inf, as torch's, but with
``error_if_nonfinite=True`` neither raised (torch raises its RuntimeError: its total norm is
non-finite) and the clip scaled the grads. Now both raise optkern's ``NonFiniteNormError`` (a
RuntimeError, as torch's) before anything is written; without the flag the documented behaviour
holds: the grads clipped by the float64 norm (torch's zeroes them) and inf returned.
optkern.clip's NumPy form returns the float64 norm, finite: it clips without raising."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import optkern.clip as clip  # noqa: E402
import optkern.torch as ot  # noqa: E402

BIG = 3e38  # (float32's max is 3.4e38: two of them have a 2-norm of 4.2e38)


def _params(complex_=False):
    g = torch.full((4,), BIG)
    p = torch.nn.Parameter(torch.zeros(4, dtype=torch.complex64 if complex_ else torch.float32))
    p.grad = torch.complex(g, g) if complex_ else g
    return [p]


# (complex grads' other orders are torch's own: the 2-norm is their real view's, optkern's)
@pytest.mark.parametrize("norm_type, complex_", [(2.0, False), (1.0, False), (3.0, False), (8.0, False), (2.0, True)])
def test_error_if_nonfinite_raises_as_torch_and_writes_nothing(norm_type, complex_):
    ps = _params(complex_=complex_)
    before = ps[0].grad.clone()
    with pytest.raises(RuntimeError):  # (torch's)
        torch.nn.utils.clip_grad_norm_(_params(complex_=complex_), 1.0, norm_type, error_if_nonfinite=True)
    with pytest.raises(clip.NonFiniteNormError, match=r"^parameters: the total norm .* beyond float32's range"):
        ot.clip_grad_norm_(ps, 1.0, norm_type, error_if_nonfinite=True)
    assert torch.equal(ps[0].grad, before)


def test_get_total_norm_raises_as_torch():
    g = [torch.full((4,), BIG)]
    with pytest.raises(RuntimeError):
        torch.nn.utils.get_total_norm(g, error_if_nonfinite=True)
    with pytest.raises(RuntimeError, match=r"^tensors: the total norm of order 2.0 is .* beyond float32's range"):
        ot.get_total_norm(g, error_if_nonfinite=True)
    assert torch.isinf(ot.get_total_norm(g))


def test_without_the_flag_the_documented_clip_holds():
    ps = _params()
    total = ot.clip_grad_norm_(ps, 1.0)
    assert total.dtype is torch.float32 and torch.isinf(total)  # (torch's: inf)
    torch.testing.assert_close(ps[0].grad, torch.full((4,), 0.5), rtol=1e-6, atol=0)  # (torch's: zeros)


def test_a_norm_that_rounds_to_float32s_max_is_finite_and_not_refused():
    # (one element at float32's max: the norm is that max, finite in float32)
    p = torch.nn.Parameter(torch.zeros(1))
    p.grad = torch.tensor([np.finfo(np.float32).max])
    total = ot.clip_grad_norm_([p], 1.0, error_if_nonfinite=True)
    assert torch.isfinite(total)
    torch.testing.assert_close(p.grad, torch.ones(1), rtol=1e-6, atol=0)


def test_float64_grads_and_numpy_return_the_finite_float64_norm():
    p = torch.nn.Parameter(torch.zeros(4, dtype=torch.float64))
    p.grad = torch.full((4,), BIG, dtype=torch.float64)
    assert float(ot.clip_grad_norm_([p], 1.0, error_if_nonfinite=True)) == pytest.approx(6e38)
    g = [np.full(4, BIG, np.float32)]
    assert clip.clip_grad_norm_(g, 1.0, error_if_nonfinite=True) == pytest.approx(6e38, rel=1e-6)
    np.testing.assert_allclose(g[0], 0.5, rtol=1e-6)


def test_a_nan_grad_is_still_named():
    p = torch.nn.Parameter(torch.zeros(4))
    p.grad = torch.tensor([1.0, float("nan"), 0.0, 0.0])
    with pytest.raises(RuntimeError, match=r"^parameters\[0\]\.grad: contains non-finite values"):
        ot.clip_grad_norm_([p], 1.0, error_if_nonfinite=True)
