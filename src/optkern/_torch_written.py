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

from .optim.optimizer import _bump_torch_versions, torch_tensors


def bumps_written(*names: str, when: str | None = None):
    """Decorator: after ``fn`` returns, bump the torch tensors among its arguments ``names``
    (positional or keyword). ``when``: the name of a flag argument (default True) that must be
    True for them to be written (``training``: eval mode only reads the running buffers). A call
    that raises (its checks refuse it before anything is written) bumps nothing."""

    def wrap(fn):
        params = inspect.signature(fn).parameters
        order = list(params)
        flag_default = params[when].default if when else None

        @functools.wraps(fn)
        def call(*args, **kwargs):
            result = fn(*args, **kwargs)
            if "torch" in sys.modules:  # (no tensor without torch)
                given = dict(zip(order, args))
                given.update(kwargs)
                if when is None or given.get(when, flag_default) is True:
                    _bump_torch_versions(torch_tensors([given.get(n) for n in names]))
            return result

        return call

    return wrap
