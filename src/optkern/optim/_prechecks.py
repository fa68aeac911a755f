"""The checks of a step made of several native calls (param groups, mixed dtypes, capturable runs).

Each native call checks its own arrays before it writes, but a later call's checks would come
after an earlier call has written: such a step checks every param, state array and gradient
first -- natively for NumPy steps (``precheck_step_``), in Python otherwise.
"""

from __future__ import annotations

from operator import attrgetter

import numpy as np

from .. import _backend
from ._parts import OptimizerParts
from ._run import _Run

_size = attrgetter("size")


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
                    f"state[{i}][{name!r}]: expected {p.size} elements (its parameter's, params[{i}]), got {a.size}"
                )


def _data_span(a):
    """(first byte, one past the last byte) of an array's buffer (NumPy or CuPy)."""
    ptr = a.data.ptr if _backend.is_cupy(a) else a.__array_interface__["data"][0]
    return ptr, ptr + a.nbytes


class PrecheckMixin(OptimizerParts):
    """Optimizer's whole-step checks (uses ``_runs`` and ``_state_names``)."""

    def _precheck(self, grads, group_runs=None) -> None:
        """Checks of every param, state array and gradient, for steps made of several native calls
        (the native checks of a later call would come after an earlier call has written).

        ``group_runs``: the runs this step updates, per group (default: all; a step that skips
        params whose grad is None updates fewer)."""
        group_runs = self._runs if group_runs is None else group_runs
        runs = [run for rs in group_runs for run in rs]
        if all(run.mod is _backend.cpu for run in runs):
            self._precheck_native(runs, grads, group_runs)
        else:
            self._precheck_python(grads, group_runs)

    def _precheck_native(self, runs, grads, group_runs) -> None:
        """One native pass (``precheck_step_``) over all runs of a NumPy step."""
        spec = []
        for run in runs:
            names = self._needed_any(run)
            _check_state_sizes(run, names)
            written = run.params + [a for name in names for a in run.state[name]]
            key = (tuple(names), len(run.params))
            cached = run._names
            if cached is None or cached[0] != key:
                wn = [f"params[{i}]" for i in run.index] + [f"state[{i}][{n!r}]" for n in names for i in run.index]
                cached = (key, wn, [f"grads[{i}]" for i in run.index])
                run._names = cached
            g = run.grads(grads)
            if set(map(type, g)) - _backend._NATIVE_TYPES:  # the Python checks name the wrong kind
                return self._precheck_python(grads, group_runs)
            spec.append((run.params[0].dtype, written, cached[1], g, run.params, cached[2]))
        _backend.cpu.precheck_step_(spec)

    def _precheck_python(self, grads, group_runs) -> None:
        """The same checks in Python (CuPy steps, unusual inputs)."""
        written, read = [], []
        for runs in group_runs:
            for run in runs:
                self._check_run_arrays(run)
                for name in self._needed_any(run):
                    written += [
                        (*_data_span(a), f"state[{i}][{name!r}]")
                        for i, a in zip(run.index, run.state[name])
                        if a.nbytes
                    ]
                written += [(*_data_span(p), f"params[{i}]") for i, p in zip(run.index, run.params) if p.nbytes]
        for runs in group_runs:
            for run in runs:
                for i, p in zip(run.index, run.params):
                    g = grads[i]
                    name = f"grads[{i}]"
                    # (not check_like: the native checks' order and words, the device and the size
                    # before the shape, so that a CuPy step's errors read as a NumPy step's)
                    if _backend.is_cupy(g) != _backend.is_cupy(p) or not hasattr(g, "dtype"):
                        kind = "cupy.ndarray" if _backend.is_cupy(p) else "numpy.ndarray"
                        raise TypeError(f"{name}: expected a {kind}, got {_backend.type_name(g)}")
                    if g.dtype != p.dtype:
                        raise TypeError(f"{name}: expected {p.dtype}, got {g.dtype}")
                    if _backend.is_cupy(g) and g.device.id != p.device.id:
                        raise ValueError(
                            f"{name}: is on device {g.device.id} but its parameter is on device {p.device.id}"
                        )
                    if g.size != p.size:
                        raise ValueError(f"{name}: expected {p.size} elements, got {g.size}")
                    if g.shape != p.shape:
                        raise ValueError(f"{name}: expected shape {tuple(p.shape)}, got {tuple(g.shape)}")
                    if not g.flags.c_contiguous:
                        raise ValueError(f"{name}: array must be C-contiguous")
                    if not g.nbytes:
                        continue
                    lo, hi = _data_span(g)
                    if lo % g.itemsize:
                        raise ValueError(f"{name}: array data is misaligned")
                    read.append((lo, hi, name))
        _backend.check_disjoint(written, read)

    def _check_run_arrays(self, run: _Run) -> None:
        """A run's params and state as its native call would check them, named by global index.

        A param can turn read-only after construction, and state arrays are the user's too
        (``state_dict`` hands out the live arrays).
        """
        dt = run.params[0].dtype
        if dt not in (np.float32, np.float64):
            raise TypeError(f"params[{run.index[0]}]: expected float32 or float64, got {dt}")
        names = self._needed_any(run)
        _check_state_sizes(run, names)
        for k, (i, p) in enumerate(zip(run.index, run.params)):
            _backend.check_written(p, dt, f"params[{i}]")
            for name in names:
                _backend.check_written(run.state[name][k], dt, f"state[{i}][{name!r}]")

    def _needed_any(self, run: _Run):
        return [n for n in self._state_names if n in run.state]
