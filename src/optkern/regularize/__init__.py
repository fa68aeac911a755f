"""Regularizers: L1 / L2 penalties fused into gradients, mixup / CutMix, early stopping.

* :func:`add_penalty_grad_`, :func:`penalty` — native multi-array kernels
  (``optkern._cpu`` / ``optkern._cuda``); see :mod:`.penalty` for how an L2
  penalty differs from decoupled weight decay under Adam.
* :func:`mixup`, :func:`cutmix` — seeded data-level mixing with soft targets.
* :class:`EarlyStopping` — patience on a validation metric, best checkpoint
  kept in memory or in an ``.npz`` (:func:`save_state` / :func:`load_state`).
"""

from .early_stopping import EarlyStopping, load_state, save_state
from .mix import Mixed, cutmix, mixup, soft_targets
from .penalty import add_penalty_grad_, penalty

__all__ = [
    "add_penalty_grad_",
    "penalty",
    "mixup",
    "cutmix",
    "Mixed",
    "soft_targets",
    "EarlyStopping",
    "save_state",
    "load_state",
]
