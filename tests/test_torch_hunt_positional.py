"""optkern.torch's optimizers take torch.optim's hyper-parameters positionally, in torch's order
(everything before the first implementation keyword, which torch's RMSprop, Adagrad and Adadelta
also take positionally): ``NAdam(params, lr, betas, eps, weight_decay, momentum_decay,
decoupled_weight_decay)`` raised TypeError (its last one was keyword-only here)."""

from __future__ import annotations

import inspect

import pytest

torch = pytest.importorskip("torch")

import optkern.torch as ot  # noqa: E402
from optkern.torch._impl_keywords import TORCH_IMPL_KEYWORDS  # noqa: E402

NAMES = ["SGD", "Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW", "NAdam", "LBFGS"]
#: a value of each hyper-parameter other than torch's default (as a positional argument)
VALUES = dict(lr=0.05, momentum=0.5, dampening=0.0, weight_decay=0.01, nesterov=True, lr_decay=0.1, eps=1e-6)
VALUES.update(initial_accumulator_value=0.2, alpha=0.9, centered=True, rho=0.8, betas=(0.8, 0.9), amsgrad=True)
VALUES.update(momentum_decay=0.01, decoupled_weight_decay=True, max_iter=7, max_eval=9, tolerance_grad=1e-6)
VALUES.update(tolerance_change=1e-8, history_size=5, line_search_fn="strong_wolfe")


def _torch_positional(name: str) -> list:
    """torch's positional hyper-parameters of ``name``, in order, up to its first implementation
    keyword (``capturable``, ``foreach``, ... or ``maximize``: how, not what, a step computes)."""
    out = []
    for k, p in list(inspect.signature(getattr(torch.optim, name)).parameters.items())[1:]:
        if p.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD or k in TORCH_IMPL_KEYWORDS or k == "maximize":
            break
        out.append(k)
    return out


@pytest.mark.parametrize("name", NAMES)
def test_hyper_parameters_taken_positionally_in_torchs_order(name):
    keys = _torch_positional(name)
    args = [VALUES[k] for k in keys]
    want = getattr(torch.optim, name)([torch.zeros(3, requires_grad=True)], *args).param_groups[0]
    got = getattr(ot, name)([torch.zeros(3, requires_grad=True)], *args).param_groups[0]
    assert {k: got[k] for k in keys} == {k: want[k] for k in keys}
