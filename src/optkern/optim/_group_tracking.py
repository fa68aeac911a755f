"""Following ``param_groups`` between steps: the Optimizer mixin that checks the groups still hold
the params as added (a param may be replaced in place), brings the runs up to a replaced param,
and splits the runs of a step that skips the params whose grad is None."""

from __future__ import annotations

from operator import is_
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

from .. import _backend
from .._words import article
from ._given import tensor_address
from ._parts import OptimizerParts
from ._run import _sub_run


class GroupTrackingMixin(OptimizerParts):
    """Optimizer's checks and bookkeeping of its groups' params lists (uses ``param_groups``,
    ``_group_params``, ``_seen`` and ``_runs``)."""

    if TYPE_CHECKING:
        _group_params: list[tuple]
        _seen: list[tuple]
        _given: list
        _given_tensors: list
        _index_of: dict
        _followed: Sequence
        _dtype_checked: dict
        _one_run_per_group: bool

        def _check_param_dtype(self, p, name: str) -> None: ...
        def _math_dtype(self, dt): ...
        def _retrack(self, at: int, given, view) -> None: ...
        def _follows(self, at: int, view) -> bool: ...

    def _check_param_groups(self) -> None:
        """Raise unless ``param_groups`` still holds the groups as added, each with as many params
        (the runs and state follow them: a group grown or shrunk in place would be stepped half).

        A param may be replaced in place by another array (checked like the others at the step);
        a new ``params`` list must hold the same arrays (the runs keep the list they were given)."""
        groups, added = self.param_groups, self._group_params
        if type(groups) is not list or len(groups) != len(added):
            if not isinstance(groups, list):
                raise TypeError(f"param_groups: expected a list of dicts, got {type(groups).__name__}")
            raise ValueError(
                f"param_groups: expected the {len(added)} groups added so far (add groups with "
                f"add_param_group; removing one is not supported), got {len(groups)}"
            )
        for gi, (g, (lst, ps)) in enumerate(zip(groups, added)):
            if type(g) is not dict:
                raise TypeError(f"param_groups[{gi}]: expected a dict, got {type(g).__name__}")
            cur = g.get("params")
            if cur is None:
                raise ValueError(f"param_groups[{gi}]: missing 'params'")
            if cur is lst and len(cur) == len(ps):
                if not _same(cur, self._seen[gi]):
                    self._check_replaced(gi, cur)
                continue
            if not isinstance(cur, list):
                raise TypeError(f"param_groups[{gi}]['params']: expected a list of arrays, got {type(cur).__name__}")
            if len(cur) != len(ps):
                raise ValueError(
                    f"param_groups[{gi}]['params']: expected the group's {_backend.counted(len(ps), 'array')} "
                    f"(add parameters with add_param_group), got {len(cur)}"
                )
            if not all(map(is_, cur, ps)):
                raise ValueError(
                    f"param_groups[{gi}]['params']: expected the group's arrays, got a new list holding "
                    "others (replace a param in the group's own list, or add it with add_param_group)"
                )

    def _check_replaced(self, gi: int, params: list) -> None:
        """A group's list where a param was replaced in place, checked as ``add_param_group`` checks
        one: an array of this optimizer's kind and dtype, before anything reads it (a None or a list
        raised AttributeError in the step's shape checks; an int32 array would be checked against
        the hyper-parameters, naming ``eps`` for it), and updatable in place (C-contiguous, writable,
        aligned: the step's own checks named it ``params[k]``, by its place among all the params, where
        the caller put it in ``param_groups[g]['params'][i]``). The step's array checks do the rest
        (size, aliasing)."""
        where = f"param_groups[{gi}]['params']"
        # a DLPack exporter put in place (a torch tensor): its zero-copy array view, put in the
        # list as add_param_group keeps one (the step's checks read .dtype of the object itself)
        put = {}
        for i, a in enumerate(_backend.as_list(params, where)):
            if a is not params[i]:
                put[i] = params[i]
                params[i] = a
        _backend.backend((where, params))
        for i, (p, old) in enumerate(zip(params, self._seen[gi])):
            self._check_param_dtype(p, f"{where}[{i}]")
            if p is not old:  # (a tensor followed to new memory included: its view is new)
                _backend.check_written(p, p.dtype, f"{where}[{i}]")
        kept = [p for p, old in zip(params, self._seen[gi]) if p is old]  # (the group's dtype: theirs)
        self._check_one_dtype(params, f"param_groups[{gi}]", kept[0] if kept else None)
        start = sum(len(lst) for lst, _ in self._group_params[:gi])  # (the group's first place in all)
        self._check_state_shapes(gi, start, params, where)
        for i, (p, old) in enumerate(zip(params, self._seen[gi])):
            if p is not old and not self._follows(start + i, p):  # (not a tensor's view made by follow)
                self._given_in_place(gi, i, start + i, put.get(i, p))
        self._seen[gi] = tuple(params)
        # the hyper-parameters against the new dtypes too (lr=1e39 passed for a float64 param wrote
        # NaN into a float32 one put in its place): the cached checks are of the old arrays
        self._dtype_checked.clear()

    def _given_in_place(self, gi: int, i: int, at: int, given) -> None:
        """The param at ``[gi][i]`` (``at`` in all) replaced in place by ``given`` (as the caller put it
        there: a torch tensor for the view now in the list), which the optimizer now treats as a param
        given to ``add_param_group``: a torch tensor followed to new memory and bumped where a step
        writes it (a tensor put in place was stepped through its view, its version never bumped: a
        graph saved before the step ran its backward on the new values; ``tensor.data =`` was not
        followed: the step wrote memory the tensor no longer showed), ``given in opt.state``; the
        tensor it replaced neither (a tensor followed there before went on being bumped)."""
        old = self._given[at]
        if old is not given and self._index_of.get(id(old)) == at and old is not self._group_params[gi][1][i]:
            del self._index_of[id(old)]  # (its object is kept alive no more: its id may be another's)
        self._given[at] = given
        self._index_of[id(given)] = at
        self._retrack(at, given, self._group_params[gi][0][i])
        self._given_tensors = list(self._followed)

    def _check_one_dtype(self, params: list, where: str, like=None) -> None:
        """TypeError naming the first of a group's ``params`` whose step dtype (``_math_dtype``) is not
        ``like``'s (default: the first param's). A group is stepped by one native call per run, in one
        dtype: a group of float64 and float32 params was taken here, and then every step raised."""
        if not params:
            return
        want = self._math_dtype((params[0] if like is None else like).dtype)
        for i, p in enumerate(params):
            got = self._math_dtype(p.dtype)
            if got != want:
                raise TypeError(
                    f"{where}['params'][{i}]: {got}, where the group's params are {want} (a group is "
                    f"stepped in one dtype: put {got} params in a group of their own, add_param_group)"
                )

    def _check_state_shapes(self, gi: int, start: int, params: list, where: str) -> None:
        """ValueError naming a replaced param of its state's size but another shape: the native steps
        compare sizes only, so a (2, 3) array in place of a (6,) one stepped with the (6,) state, and
        the optimizer's own state_dict() then failed to load back (its shapes). (Another size: the
        step's array checks name the state.) ``start``: the group's first place among all params.

        A reshape of the param itself -- at its address, C-contiguous (checked before): the same
        elements in the same order, ``a.reshape(2, 3)`` put in place, a torch tensor re-viewed
        ``t.data = t.data.view(2, 3)`` -- is taken instead, as a NumPy param reshaped in place
        (``a.shape = (2, 3)``): the step takes grads of its new shape, and its state follows the
        shape in ``state_dict()`` (``_state_dict.follow_reshaped``)."""
        held = {i - start for run in self._runs[gi] if run.state for i in run.index}
        for i, (old, p) in enumerate(zip(self._seen[gi], params)):
            if p is not old and i in held and p.size == old.size and tuple(p.shape) != tuple(old.shape):
                if p.dtype == old.dtype and tensor_address(p) == tensor_address(old):
                    continue
                raise ValueError(
                    f"{where}[{i}]: expected shape {tuple(old.shape)} (the shape of its optimizer state), "
                    f"got {tuple(p.shape)}"
                )

    def _follow_replaced(self) -> None:
        """Bring the runs' params up to the groups' lists, where a param may have been replaced in
        place (``_check_param_groups``). A group in one run holds its list itself; a split group
        (None grads, a loaded state dict) holds lists of its own, where the old array went on
        stepping and the new one never moved."""
        start = 0
        for (lst, _), group_runs in zip(self._group_params, self._runs):
            if not (len(group_runs) == 1 and group_runs[0].params is lst):
                for run in group_runs:
                    for k, i in enumerate(run.index):
                        if run.params[k] is not lst[i - start]:
                            run.params[k] = lst[i - start]
            start += len(lst)

    def _live_runs(self, grads: list, checked: list):
        """(runs to step, run layout after the step) for a step that skips the params whose grad is
        None: a run with some skipped params is split into the stepped part and the rest, which
        keep their own step counts and state; equal neighbours are merged again after the step.
        A group kept in one run (global-norm optimizers) steps its live params in a view of the
        run that shares its state, and counts the step for the group."""
        live_runs, layout = [], []
        for gi, group_runs in enumerate(self._runs):
            live, parts = [], []
            for run in group_runs:
                keep = [k for k, i in enumerate(run.index) if grads[i] is not None]
                if checked[gi][1] and 0 < len(keep) < len(run.index):  # a captured step reads every grad
                    skipped = next(i for i in run.index if grads[i] is None)
                    raise ValueError(f"grads[{skipped}]: None is not supported in capturable mode")
                if len(keep) == len(run.index):
                    live.append(run)
                    parts.append(run)
                elif not keep:
                    parts.append(run)
                elif self._one_run_per_group:
                    live.append(_sub_run(run, keep, parent=run))
                    parts.append(run)
                else:
                    rest = [k for k in range(len(run.index)) if k not in set(keep)]
                    a, b = _sub_run(run, keep), _sub_run(run, rest)
                    live.append(a)
                    parts += [a, b]
            live_runs.append(live)
            layout.append(parts)
        return live_runs, layout


def _same(params: list, arrays: tuple) -> bool:
    """Whether the list ``params`` still holds exactly ``arrays`` (by identity; ~3 us for 200)."""
    return len(params) == len(arrays) and all(map(is_, params, arrays))


def refuse_unordered(params, name: str) -> None:
    """TypeError for a set of params (torch tensors are hashable): its order is the hashes', another
    at each run, and grads are matched to params by position (torch refuses a set too)."""
    if isinstance(params, (set, frozenset)):
        raise TypeError(
            f"{name}: got {article(type(params).__name__)}, params must be in an ordered collection (a list): "
            "grads are matched to them by position"
        )
