"""Every optimizer the tests know, in one table (PyTorch's OptimizerInfo idea).

One ``OptimInfo`` per optimizer class: its functional form, its float64 reference
(tests/reference.py), the base name of its native functions (``_cpu`` and
``_cuda``: ``<native>_`` and ``<native>_capturable``), valid hyper-parameter sets
(the variants every test runs) and invalid ones (with the error they raise), its
torch.optim counterpart, dtypes and devices. The test files' optimizer tables
read from here; adding an optimizer adds one entry (and its pins in
test_optim_pinned.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

import optkern.functional as F
import optkern.optim as O
import reference as R


@dataclass(frozen=True)
class OptimInfo:
    name: str  # class name in optkern.optim (and torch.optim, where torch has it)
    functional: Callable  # optkern.functional form
    reference: Callable | None  # per-array float64 reference step (None: see reference.py for a run-level one)
    native: str  # native function base name
    valid: tuple  # hyper-parameter sets, each a dict of constructor keywords
    invalid: tuple  # (keywords, error message regex)
    torch: str | None = None  # torch.optim class name
    not_in_torch: tuple = ()  # hyper-parameters torch does not have (with their non-default values)
    capturable: bool = True
    dtypes: tuple = (np.float32, np.float64)
    devices: tuple = ("cpu", "cuda")
    extra: dict = field(default_factory=dict)

    @property
    def cls(self):
        return getattr(O, self.name)

    def in_torch(self, hp: dict) -> bool:
        """Whether torch.optim has this variant (no optkern-only hyper-parameter set)."""
        return self.torch is not None and not any(hp.get(k, d) != d for k, d in self.not_in_torch)

    def ids(self) -> list[str]:
        return [case_id(self.name, hp) for hp in self.valid]


def case_id(name: str, hp: dict) -> str:
    return f"{name}-{'-'.join(f'{k}={v}' for k, v in hp.items()) or 'defaults'}"


OPTIMIZERS = (
    OptimInfo(
        "SGD",
        F.sgd_,
        R.sgd_step,
        "sgd",
        valid=(
            dict(lr=0.1),
            dict(lr=0.1, weight_decay=0.01, maximize=True),
            dict(lr=0.05, momentum=0.9),
            dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
            dict(lr=0.05, momentum=0.8, dampening=0.3, maximize=True),
            dict(lr=0.05, momentum=0.9, momentum_form="textbook", weight_decay=0.01, dampening=0.1),
            dict(lr=0.05, momentum=0.9, nesterov=True, momentum_form="textbook"),
        ),
        invalid=(
            (dict(momentum=-0.1), r"momentum: must be in \[0.0"),
            (dict(nesterov=True), r"nesterov: Nesterov momentum requires momentum > 0"),
            (dict(momentum=0.9, dampening=0.1, nesterov=True), r"dampening = 0"),
            (dict(momentum_form="classic"), r"momentum_form: expected 'pytorch' or 'textbook'"),
            (dict(lr=-1.0), r"^lr: must be in \[0.0, inf\), got -1.0"),
        ),
        torch="SGD",
        not_in_torch=(("momentum_form", "pytorch"),),
    ),
    OptimInfo(
        "Adagrad",
        F.adagrad_,
        R.adagrad_step,
        "adagrad",
        valid=(
            dict(lr=0.1),
            dict(lr=0.1, lr_decay=0.01, weight_decay=0.01, initial_accumulator_value=0.1, eps=1e-8),
            dict(lr=0.05, maximize=True),
        ),
        invalid=(
            (dict(lr_decay=-1.0), r"lr_decay"),
            (dict(initial_accumulator_value=-1.0), r"initial_accumulator_value"),
            (dict(eps=0.0), r"eps: must be in \(0.0, inf\)"),
        ),
        torch="Adagrad",
    ),
    OptimInfo(
        "AdagradNorm",
        None,
        None,
        "adagrad_norm",
        valid=(dict(lr=0.1), dict(lr=0.5, b0=1.0, weight_decay=0.01, maximize=True)),
        invalid=((dict(b0=0.0), r"b0"),),
        capturable=False,
    ),
    OptimInfo(
        "RMSprop",
        F.rmsprop_,
        R.rmsprop_step,
        "rmsprop",
        valid=(
            dict(lr=0.01),
            dict(lr=0.01, centered=True),
            dict(lr=0.01, momentum=0.9, weight_decay=0.01),
            dict(lr=0.01, alpha=0.9, centered=True, momentum=0.5, maximize=True),
            dict(lr=0.01, momentum=0.9, nesterov=True),
            dict(lr=0.01, centered=True, momentum=0.7, nesterov=True, weight_decay=0.1),
        ),
        invalid=(
            (dict(nesterov=True), r"nesterov: Nesterov momentum requires momentum > 0"),
            (dict(alpha=1.5), r"alpha"),
        ),
        torch="RMSprop",
        not_in_torch=(("nesterov", False),),
    ),
    OptimInfo(
        "Adadelta",
        F.adadelta_,
        R.adadelta_step,
        "adadelta",
        valid=(dict(), dict(lr=0.5, rho=0.8, eps=1e-5, weight_decay=0.01, maximize=True)),
        invalid=((dict(rho=-0.5), r"rho"),),
        torch="Adadelta",
    ),
    OptimInfo(
        "Adam",
        F.adam_,
        R.adam_step,
        "adam",
        valid=(
            dict(lr=0.01),
            dict(lr=0.01, amsgrad=True, weight_decay=0.01),
            dict(lr=0.01, betas=(0.8, 0.99), maximize=True),
            dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True),
        ),
        invalid=(
            (dict(betas=(1.0, 0.9)), r"betas\[0\]: must be in \[0.0, 1.0\), got 1.0"),
            (dict(betas=(0.9, -0.1)), r"betas\[1\]"),
            (dict(betas=0.9), r"betas: expected a sequence \(beta1, beta2\)"),
            (dict(eps=0.0), r"eps: must be in \(0.0, inf\), got 0.0"),
            (dict(lr=float("nan")), r"lr: must be finite"),
            (dict(lr="0.1"), r"lr: expected a real number, got str"),
            (dict(amsgrad="yes"), r"amsgrad: expected a bool"),
        ),
        torch="Adam",
    ),
    OptimInfo(
        "AdamW",
        F.adamw_,
        R.adamw_step,
        "adam",
        valid=(dict(), dict(lr=0.01, amsgrad=True, weight_decay=0.1, maximize=True)),
        invalid=((dict(weight_decay=-0.1), r"weight_decay"),),
        torch="AdamW",
    ),
    OptimInfo(
        "NAdam",
        F.nadam_,
        R.nadam_step,
        "nadam",
        valid=(
            dict(),
            dict(lr=0.01, weight_decay=0.01, betas=(0.85, 0.995)),
            dict(lr=0.01, weight_decay=0.1, momentum_decay=0.01, decoupled_weight_decay=True),
        ),
        invalid=((dict(momentum_decay=-1.0), r"momentum_decay"),),
        torch="NAdam",
    ),
)

BY_NAME = {info.name: info for info in OPTIMIZERS}

#: (name, hyper-parameters) of every registered variant, and their ids.
CASES = [(info.name, hp) for info in OPTIMIZERS for hp in info.valid]
IDS = [case_id(n, hp) for n, hp in CASES]
