"""Error messages print numbers as plain numbers: values formatted with ``!r`` that were NumPy
scalars read ``np.float64(3.0)`` under NumPy 2 (gradient_concentration's equal eigenvalues, computed
as NumPy scalars; MLP's norm_eps echoed as the caller passed it where the checked float was at hand)."""

import numpy as np
import pytest

from optkern import hessian
from optkern.nn import MLP


def test_gradient_concentration_equal_eigenvalues_message():
    with pytest.raises(ValueError, match=r"^k: eigenvalues 1 and 2 are equal") as e:
        hessian.gradient_concentration(np.diag([3.0, 3.0, 3.0, 1.0]), np.ones(4), 1)
    assert "np." not in str(e.value) and "(3.0" in str(e.value).replace("3.000000000000001", "3.0")


@pytest.mark.parametrize("eps, what", [(np.float64(1e-50), "rounds to 0 in"), (np.float64(1e50), "overflows")])
def test_mlp_norm_eps_message(eps, what):
    with pytest.raises(ValueError, match=rf"^norm_eps: 1e[-+]50 {what} float32") as e:
        MLP([2, 3, 2], norm="batch", norm_eps=eps)
    assert "np." not in str(e.value)


def test_torch_adagrad_norm_b0_message():
    torch = pytest.importorskip("torch")
    from optkern.torch import AdagradNorm

    for b0 in (np.float64(1e200), torch.tensor(1e200, dtype=torch.float64)):
        with pytest.raises(ValueError, match=r"^param_groups\[0\]\['b0'\]: .*, got 1e\+200$"):
            AdagradNorm([torch.zeros(2, requires_grad=True)], b0=b0)


@pytest.mark.parametrize(
    "key, first, second, shown",
    [
        ("rho", np.float64(0.1), np.float64(0.2), "0.2, param_groups[0]'s is 0.1"),
        ("adaptive", np.bool_(True), False, "False, param_groups[0]'s is True"),
    ],
)
def test_torch_sam_groups_message(key, first, second, shown):
    torch = pytest.importorskip("torch")
    from optkern.torch import SAM

    p, q = torch.zeros(2, requires_grad=True), torch.zeros(2, requires_grad=True)
    opt = SAM([{"params": [p], key: first}, {"params": [q], key: second}], torch.optim.SGD, lr=0.1)
    p.grad, q.grad = torch.ones(2), torch.ones(2)
    with pytest.raises(ValueError, match=rf"^param_groups\[1\]\['{key}'\]: ") as e:
        opt.first_step()
    assert str(e.value).split(" (")[0].endswith(shown) and "np." not in str(e.value)
