"""Version counters of the torch tensors a public call wrote through NumPy / CuPy views.

A call given a torch tensor works on its array view (``_backend.as_array``), which autograd does
not see: without a bump of the tensor's version counter, a graph that had saved the tensor before
the call differentiated its new values silently, where torch refuses the backward after an
in-place write. Optimizer steps bump their params (``optim.optimizer._bump_torch_versions``);
:func:`bumps_written` does it for the arrays other calls write (``out=``, running buffers).
"""

from __future__ import annotations

import functools
import inspect
import sys

from .optim.optimizer import _bump_torch_versions


def bumps_written(*names: str, when: str | None = None, also: tuple = ()):
    """Decorator: after ``fn`` returns, bump the torch tensors among its arguments ``names`` and
    ``also`` (positional or keyword; arrays, or lists / tuples of them). ``when``: the name of a
    flag argument (its default if not given) that must be True for ``names`` to be written
    (``training``: eval mode only reads the running buffers); ``also`` are written whatever it
    says (``out``). A call that raises (its checks refuse it before anything is written) bumps
    nothing. The arguments are picked by position, not bound: a call on NumPy arrays pays a
    few hundred nanoseconds."""

    def wrap(fn):
        params = inspect.signature(fn).parameters
        at = {n: list(params).index(n) for n in (*names, *also, *((when,) if when else ()))}
        flag_default = params[when].default if when else None

        def pick(args, kwargs, n, default=None):
            i = at[n]
            return args[i] if i < len(args) else kwargs.get(n, default)

        @functools.wraps(fn)
        def call(*args, **kwargs):
            result = fn(*args, **kwargs)
            torch = sys.modules.get("torch")  # (no tensor without torch)
            if torch is not None:
                picked = [pick(args, kwargs, n) for n in also]
                if when is None or pick(args, kwargs, when, flag_default) is True:
                    picked += [pick(args, kwargs, n) for n in names]
                # (a list or tuple argument, clip's grads, is looked into)
                flat = [t for a in picked for t in (a if isinstance(a, (list, tuple)) else (a,))]
                tensors = [a for a in flat if isinstance(a, torch.Tensor)]
                if tensors:
                    _bump_torch_versions(tensors)
            return result

        return call

    return wrap
