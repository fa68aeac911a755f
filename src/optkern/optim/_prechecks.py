"""The checks of a step made of several native calls (param groups, mixed dtypes, capturable runs).

Each native call checks its own arrays before it writes, but a later call's checks would come
after an earlier call has written: such a step checks every param, state array and gradient
first, in one pass of its runs' native module (``precheck_step_``: the CPU module's for NumPy
runs, the CUDA module's for CuPy runs, both over cpp/include/optkern/step_checks.hpp).
"""

from __future__ import annotations

import re
from operator import attrgetter

from .._array_checks import counted
from ._parts import OptimizerParts
from ._run import _Run

_size = attrgetter("size")

#: a param named by its index over all groups, as the step's checks name it ("params[2]"); not one
#: already named by its group ("['params'][0]": after a quote)
_FLAT_PARAM = re.compile(r"(?<![\w'])params\[(\d+)\]")


def _check_state_sizes(run: _Run, names) -> None:
    """ValueError naming the first state array of ``run`` whose size is not its param's: a param
    replaced in its group's list by one of another size. ``precheck_step_`` compares the grads'
    sizes with the params', not the state's; the run's own native call would refuse it only
    after the calls before it wrote."""
    sizes = list(map(_size, run.params))
    for name in names:
        arrays = run.state[name]
        if list(map(_size, arrays)) == sizes:
            continue
        for i, p, a in zip(run.index, run.params, arrays):
            if a.size != p.size:
                raise ValueError(
                    f"state[{i}][{name!r}]: expected {counted(p.size, 'element')} (its parameter's, params[{i}]), "
                    f"got {a.size}"
                )


class PrecheckMixin(OptimizerParts):
    """Optimizer's whole-step checks (uses ``_runs`` and ``_state_names``)."""

    def _precheck(self, grads, group_runs=None) -> None:
        """Checks of every param, state array and gradient, for steps made of several native calls
        (the native checks of a later call would come after an earlier call has written).

        ``group_runs``: the runs this step updates, per group (default: all; a step that skips
        params whose grad is None updates fewer)."""
        group_runs = self._runs if group_runs is None else group_runs
        specs: dict = {}  # the runs' native module -> its precheck_step_ runs
        for rs in group_runs:
            for run in rs:
                specs.setdefault(run.mod, []).append(self._precheck_spec(run, grads))
        # A step whose groups live on both modules (NumPy and CuPy params in one optimizer): one
        # pass per module, each over its own arrays (host and device memory cannot alias). The
        # CUDA pass wants every array on one device, as each run's own call does (a step does not
        # switch devices between runs: groups on two devices were refused only by the second
        # group's call, after the first had written).
        for mod, spec in specs.items():
            mod.precheck_step_(spec)

    def _precheck_spec(self, run: _Run, grads):
        """``run``'s entry for its module's ``precheck_step_``: the checks of
        cpp/include/optkern/step_checks.hpp, for NumPy and CuPy runs alike. (Any grad goes: a
        wrong kind is named as the run's own call names it, "expected a numpy.ndarray, got list";
        a NumPy subclass is an array to both.)"""
        names = self._needed_any(run)
        _check_state_sizes(run, names)
        written = run.params + [a for name in names for a in run.state[name]]
        key = (tuple(names), len(run.params))
        cached = run._names
        if cached is None or cached[0] != key:
            wn = [f"params[{i}]" for i in run.index] + [f"state[{i}][{n!r}]" for n in names for i in run.index]
            cached = (key, wn, [f"grads[{i}]" for i in run.index])
            run._names = cached
        return (run.params[0].dtype, written, cached[1], run.grads(grads), run.params, cached[2])

    def _needed_any(self, run: _Run):
        return [n for n in self._state_names if n in run.state]

    def _named_by_group(self, e: Exception) -> Exception:
        """``e`` with each param it names by its index over all groups (``params[2]``: how the
        step's native and Python checks name the arrays of their calls) named by its group and
        place, as the rest of the library names a param (``param_groups[1]['params'][1]``, the
        name of a param replaced in its list): ``params`` is no list the user built once there
        are several groups. ``e`` itself with one group (its list is the one passed) or nothing
        to rename."""
        if len(self._group_params) < 2 or type(e) not in (TypeError, ValueError):
            return e
        n = sum(len(ps) for _, ps in self._group_params)
        msg = _FLAT_PARAM.sub(lambda m: self._place(int(m[1]))[2] if int(m[1]) < n else m[0], str(e))
        return e if msg == str(e) else type(e)(msg)
