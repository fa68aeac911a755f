"""optkern.torch.clip_grad_norm_ / clip_grad_value_ take one-element tensors for ``norm_type`` and
``clip_value``, as torch's (which reads them with ``float()``) and as ``max_norm`` already was.

Before: ``clip_grad_value_(ps, torch.tensor(1.0))`` raised TypeError "clip_value: expected a real
number, got Tensor", ``clip_grad_norm_(ps, 1.0, norm_type=torch.tensor(2.0))`` "norm_type: expected
a number or 'inf', got Tensor": a drop-in refusing what torch.nn.utils takes."""

import pytest

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")


def _params():
    g = torch.Generator().manual_seed(0)
    ps = [torch.zeros(4, 3, requires_grad=True), torch.zeros(5, requires_grad=True)]
    for p in ps:
        p.grad = torch.randn(p.shape, generator=g) * 3
    return ps


# (the strings: read with float() as torch reads them -- session 32's drop-in fix, "2" and "-inf"
# were TypeErrors)
_STRING_ORDERS = ["-inf", "2", "2.0", "1", "3.5", "inf", "Infinity", "0.5", " 2 "]


@pytest.mark.parametrize(
    "norm_type",
    [torch.tensor(2.0), torch.tensor([1.0]), torch.tensor(float("inf")), torch.tensor(0.5), *_STRING_ORDERS],
)
def test_clip_grad_norm_tensor_norm_type(norm_type):
    ours, theirs = _params(), _params()
    n1 = ot.clip_grad_norm_(ours, 1.0, norm_type=norm_type)
    n2 = torch.nn.utils.clip_grad_norm_(theirs, 1.0, norm_type=norm_type)
    torch.testing.assert_close(n1, n2)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a.grad, b.grad)


@pytest.mark.parametrize("clip_value", [torch.tensor(1.0), torch.tensor([0.5], dtype=torch.float64), torch.tensor(2)])
def test_clip_grad_value_tensor_clip_value(clip_value):
    ours, theirs = _params(), _params()
    ot.clip_grad_value_(ours, clip_value)
    torch.nn.utils.clip_grad_value_(theirs, clip_value)
    for a, b in zip(ours, theirs):
        assert torch.equal(a.grad, b.grad)


def test_clip_tensor_arguments_still_checked_by_name():
    with pytest.raises(ValueError, match="clip_value"):
        ot.clip_grad_value_(_params(), torch.tensor(-1.0))
    with pytest.raises(ValueError, match="norm_type"):
        ot.clip_grad_norm_(_params(), 1.0, norm_type=torch.tensor(float("nan")))
