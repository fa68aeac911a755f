"""A run: the params of one group that share a step count and state layout (one native call per step)."""

from __future__ import annotations


class _Run:
    """Params of one group that share a step count and state layout: one native call per step.

    A group is one run unless a loaded state dict gave its params different step counts.
    """

    __slots__ = ("index", "sel", "params", "state", "step", "extra", "mod", "fresh", "dev", "_names")

    def __init__(self, index, params, mod, step=0, state=None, extra=None):
        self.index = list(index)  # global parameter indices
        contiguous = self.index == list(range(self.index[0], self.index[0] + len(self.index))) if index else True
        self.sel = slice(self.index[0], self.index[0] + len(self.index)) if (index and contiguous) else self.index
        self.params = params
        self.state = {} if state is None else state  # name -> list of arrays (aligned with params)
        self.step = step
        self.extra = {} if extra is None else extra  # per-run scalars (mu_product, b_sq buffer, ...)
        self.mod = mod
        self.fresh = set()  # state names created and not yet stepped (SGD's first-step buffers)
        # capturable mode: {"counters": float64 device array or None, "step": its live 0-d view, ...} on the
        # params' device. While it exists the device counters are the truth; self.step then only counts
        # step() calls.
        self.dev = None
        self._names = None  # cached check names: (key, written names, grad names)

    def grads(self, grads):
        s = self.sel
        return grads[s] if isinstance(s, slice) else [grads[i] for i in s]
