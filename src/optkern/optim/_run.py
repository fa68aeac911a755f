"""A run: the params of one group that share a step count and state layout (one native call per step)."""

from __future__ import annotations

from .._pickling import by_name, imported


class _Run:
    """Params of one group that share a step count and state layout: one native call per step.

    A group is one run unless a loaded state dict gave its params different step counts.
    """

    __slots__ = (
        "index",
        "sel",
        "params",
        "state",
        "step",
        "extra",
        "mod",
        "fresh",
        "dev",
        "_names",
        "parent",
        "bases",
        "numel",
    )

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
        self.parent = None  # the group's run, for a view of its live params (``_sub_run(parent=...)``)
        # the global index of each param's element 0 (stochastic rounding's Philox counters), when
        # a wrapper numbers them (optkern.torch); None: from the optimizer's param_groups
        self.bases = None
        self.numel = sum(int(p.size) for p in params)  # (Optimizer.step: whether to defer Ctrl-C)

    def __getstate__(self) -> dict:
        """pickle / ``copy.deepcopy``: the native module by its name (a module is not copied)."""
        return by_name({k: getattr(self, k) for k in self.__slots__})

    def __setstate__(self, state: dict) -> None:
        for k, v in imported(state).items():
            setattr(self, k, v)
        if "numel" not in state:  # (pickled before it was kept)
            self.numel = sum(int(p.size) for p in self.params)

    def grads(self, grads):
        s = self.sel
        return grads[s] if isinstance(s, slice) else [grads[i] for i in s]


def _sub_run(run: _Run, keep: list, parent: _Run | None = None) -> _Run:
    """The params ``keep`` (positions in ``run``) of ``run`` as a run of their own, with their
    state arrays (the same arrays), step count and a copy of the run's scalars. With ``parent``:
    a view for one step that shares the parent's scalars (a global-norm group's b^2 buffer)."""
    sub = _Run(
        [run.index[k] for k in keep],
        [run.params[k] for k in keep],
        run.mod,
        run.step,
        {name: [arrays[k] for k in keep] for name, arrays in run.state.items()},
        run.extra if parent is not None else dict(run.extra),
    )
    sub.fresh = set(run.fresh)
    sub.parent = parent
    return sub


def _merged(runs: list) -> list:
    """A group's runs with those of equal step count, state names and scalars joined (in parameter
    order), so that params skipped for a step rejoin the others once their counts agree again."""
    out: dict = {}
    for run in runs:
        if run.dev is not None:  # capturable runs keep their device counters
            out[("dev", id(run))] = [run]
            continue
        key = (run.step, tuple(sorted(run.state)), tuple(sorted(run.fresh)), _extra_key(run.extra))
        out.setdefault(key, []).append(run)
    merged = []
    for same in out.values():
        if len(same) == 1:
            merged.append(same[0])
            continue
        rows = sorted((i, r, k) for r in same for k, i in enumerate(r.index))  # (global index, run, position)
        first = same[0]
        run = _Run(
            [i for i, _, _ in rows],
            [r.params[k] for _, r, k in rows],
            first.mod,
            first.step,
            {name: [r.state[name][k] for _, r, k in rows] for name in first.state},
            dict(first.extra),
        )
        run.fresh = set(first.fresh)
        merged.append(run)
    return sorted(merged, key=lambda r: r.index[0])


def _extra_key(extra: dict):
    """A run's scalars as a hashable key (floats; anything else by identity)."""
    return tuple(sorted((k, v if isinstance(v, (int, float)) else id(v)) for k, v in extra.items()))
