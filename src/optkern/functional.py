"""Optimizer steps as functions, for users who own their state.

Every function updates ``params`` and the state lists in place with one native
call (one OpenMP region on the CPU, one launch per chunk table on the GPU),
using torch.optim's formulas and defaults. Arrays are NumPy (CPU) or CuPy
(CUDA), all of one dtype (float32 or float64), C-contiguous; ``grads`` match
``params`` in length and shapes, state lists in length and sizes. Per-step
scalars (bias corrections, the decayed learning rate, NAdam's momentum
schedule) are computed by the native rule from the hyper-parameters and
``step`` (``rules/optim.hpp``, ``Rule::at``). Hyper-parameters are checked
before anything is written -- in range, and representable in the arrays' dtype
(finite after rounding, ``eps`` > 0 after rounding; ``lr``, ``weight_decay`` and
``momentum`` at most the dtype's max ** (1/4): 4.3e9 for float32, 1.2e77 for
float64, so that their products with squared gradients stay finite); a bad one raises
ValueError (or TypeError) naming it.

Each function is defined next to its optimizer class (``optkern/optim/<name>.py``),
with the named tuple of its hyper-parameters, their check (``_check_<name>``) and
the native call (``_<name>_call``) that the class uses too, so that a step
validates once; this module gathers the public forms.
"""

# (the hyper-parameter tuples too, importable from here as before)
from .optim.adadelta import AdadeltaHyper as AdadeltaHyper
from .optim.adadelta import adadelta_
from .optim.adagrad import AdagradHyper as AdagradHyper
from .optim.adagrad import AdagradNormHyper as AdagradNormHyper
from .optim.adagrad import adagrad_, adagrad_norm_
from .optim.adam import AdamHyper as AdamHyper
from .optim.adam import adam_, adamw_
from .optim.nadam import NAdamHyper as NAdamHyper
from .optim.nadam import nadam_
from .optim.rmsprop import RMSpropHyper as RMSpropHyper
from .optim.rmsprop import rmsprop_
from .optim.sgd import SGDHyper as SGDHyper
from .optim.sgd import sgd_

__all__ = ["sgd_", "adagrad_", "adagrad_norm_", "rmsprop_", "adadelta_", "adam_", "adamw_", "nadam_"]
