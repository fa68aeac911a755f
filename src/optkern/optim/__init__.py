"""Optimizers with torch.optim's interface over NumPy (CPU) and CuPy (CUDA) arrays.

``opt = optkern.optim.AdamW(params, lr=1e-3)``; ``opt.step(grads)`` updates ``params`` in
place with one native call per parameter group; ``param_groups``, ``state_dict()`` and
``load_state_dict()`` follow PyTorch's layout and state names.
"""

from .adadelta import Adadelta
from .adagrad import Adagrad, AdagradNorm
from .adam import Adam, AdamW
from .lbfgs import LBFGS
from .nadam import NAdam
from .newton_cg import NewtonCG
from .optimizer import Optimizer
from .rmsprop import RMSprop
from .sam import SAM
from .sgd import SGD

__all__ = [
    "Optimizer",
    "SGD",
    "Adagrad",
    "AdagradNorm",
    "RMSprop",
    "Adadelta",
    "Adam",
    "AdamW",
    "NAdam",
    "LBFGS",
    "NewtonCG",
    "SAM",
]
