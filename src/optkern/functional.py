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

import functools
import inspect
import sys

import numpy as np

from . import _backend
from .optim import adadelta, adagrad, adam, nadam, rmsprop, sgd
from .optim._given import _bump_torch_versions, torch_tensors

# (the hyper-parameter tuples too, importable from here as before)
from .optim.adadelta import AdadeltaHyper as AdadeltaHyper
from .optim.adagrad import AdagradHyper as AdagradHyper
from .optim.adagrad import AdagradNormHyper as AdagradNormHyper
from .optim.adam import AdamHyper as AdamHyper
from .optim.nadam import NAdamHyper as NAdamHyper
from .optim.rmsprop import RMSpropHyper as RMSpropHyper
from .optim.sgd import SGDHyper as SGDHyper


def _versioned(fn):
    """``fn`` with a lone foreign array viewed first (``as_array``: adagrad_norm_'s ``b_sq`` tensor
    was refused; lists are viewed by ``fn``, other iterables read into lists once, keyword-only
    hyper-parameters left as given), then
    the version counters of the torch tensors it wrote bumped (every array argument but
    ``grads``: params and state, in lists or alone), as ``Optimizer.step`` bumps its params':
    written through views autograd does not see, a graph saved before the step would otherwise
    differentiate the new values silently, where torch's in-place step refuses it."""
    kinds = inspect.signature(fn).parameters
    arrays = [n for n, p in kinds.items() if p.kind is p.POSITIONAL_OR_KEYWORD]  # (params, grads, state)
    named = frozenset(arrays)

    @functools.wraps(fn)
    def step(*args, **kwargs):
        given = dict(zip(arrays, args))
        if kwargs and not named.isdisjoint(kwargs):
            given.update({k: v for k, v in kwargs.items() if k in named})
        # (one pass over the types: lists, tuples and NumPy arrays are never foreign, nor iterators)
        if not set(map(type, given.values())) <= _backend._NEVER_FOREIGN:
            views = {k: _backend.as_array(v, k) for k, v in given.items() if _backend.is_foreign(v)}
            # an iterable other than a list or tuple (a generator, a dict's values) read once, into a
            # list that both fn and the version bump below see: fn's pass used a generator up, and
            # the tensors it wrote kept their versions (a saved graph differentiated the new values)
            lists = {k: r for k, v in given.items() if k not in views and (r := _backend.read_once(v)) is not v}
            given.update(lists)
            views.update(lists)
            if views:
                args = tuple(views.get(n, a) for n, a in zip(arrays, args)) + args[len(arrays) :]
                kwargs = {k: views.get(k, v) for k, v in kwargs.items()}
        out = fn(*args, **kwargs)
        if "torch" in sys.modules:  # (no tensor without torch)
            tensors = _written_tensors([v for k, v in given.items() if k != "grads"])
            if tensors:
                _bump_torch_versions(tensors)
        return out

    step.__module__ = __name__  # (pickled by reference: found here, not as the wrapped function)
    return step


#: what no list of a functional call's arrays needs looked into for torch tensors: a NumPy array
#: (exact type: a torch.Tensor is none) and None (an absent state list's entries)
_NOT_TENSORS = frozenset({np.ndarray, type(None)})


def _written_tensors(written: list) -> list:
    """The torch tensors among ``written`` (arrays, and lists or tuples of them): NumPy arrays and
    None, the common case, are told by one set of the element types of every list (an exact list
    or tuple; a subclass's own type sends the call to the scan), not element by element."""
    types: set = set()
    for a in written:
        t = type(a)
        if t is list or t is tuple:
            types.update(map(type, a))
        else:
            types.add(t)
    if types <= _NOT_TENSORS:
        return []
    return torch_tensors([t for a in written for t in (a if isinstance(a, (list, tuple)) else (a,))])


sgd_ = _versioned(sgd.sgd_)
adagrad_ = _versioned(adagrad.adagrad_)
adagrad_norm_ = _versioned(adagrad.adagrad_norm_)
rmsprop_ = _versioned(rmsprop.rmsprop_)
adadelta_ = _versioned(adadelta.adadelta_)
adam_ = _versioned(adam.adam_)
adamw_ = _versioned(adam.adamw_)
nadam_ = _versioned(nadam.nadam_)

__all__ = ["sgd_", "adagrad_", "adagrad_norm_", "rmsprop_", "adadelta_", "adam_", "adamw_", "nadam_"]
