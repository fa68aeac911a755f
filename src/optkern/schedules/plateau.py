"""Reduce the learning rate when a metric stops improving (torch's ``ReduceLROnPlateau``).

Not a :class:`~.base.Schedule`: its lr is no function of the step but of the metrics seen, so it
holds its own state (the best metric, the bad epochs, the cooldown) and multiplies each param
group's current lr, as torch's does.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

from .. import _backend, _hyper_scalars
from ..lowp import _option
from ._group_values import _item, _put, _scalar, check_put, param_groups

__all__ = ["ReduceLROnPlateau"]


def _factor(name: str, v) -> float:
    # torch refuses factor >= 1 ("Factor should be < 1.0"); a negative one would make the lr negative
    # (a NumPy float16 refused: torch's new lr, old_lr * factor, is then a float16)
    return _hyper_scalars.in_range(name, v, 0.0, 1.0, hi_open=True)


def _count(name: str, v) -> int:
    return _backend.integer(name, v, 0, _backend.INT64_MAX)


def _signed(name: str, v) -> float:
    """A real number, infinities included (the best metric starts at +-inf), NaN refused."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(v).__name__}")
    f = float(v)
    if math.isnan(f):
        raise ValueError(f"{name}: must not be NaN")
    return f


#: The configuration: (name, rule), each rule ``rule(name, value)`` returning the value or raising
#: TypeError / ValueError naming it. Checked at construction, before every step (the attributes are
#: assignable, as torch's are) and on load_state_dict, by the same rules.
_CONFIG: tuple[tuple[str, Callable], ...] = (
    ("mode", lambda name, v: _option(name, v, ("min", "max"))),
    ("factor", _factor),
    ("patience", _count),
    ("threshold", _hyper_scalars.nonnegative),
    ("threshold_mode", lambda name, v: _option(name, v, ("rel", "abs"))),
    ("cooldown", _count),
    ("eps", _hyper_scalars.nonnegative),
)

#: The counters a step advances, checked as the configuration is.
_COUNTERS: tuple[tuple[str, Callable], ...] = (
    ("last_epoch", _count),
    ("best", _signed),
    ("num_bad_epochs", _count),
    ("cooldown_counter", _count),
)

#: state_dict's keys: torch's (its ``__dict__`` less the optimizer), so a state saved by either loads
#: into the other
_STATE_KEYS = (*(k for k, _ in _CONFIG + _COUNTERS), "min_lrs", "default_min_lr", "mode_worse", "_last_lr")


def _mode_worse(mode: str) -> float:
    return math.inf if mode == "min" else -math.inf


def _groups(optimizer) -> list | tuple:
    groups = param_groups(optimizer)
    for i, g in enumerate(groups):
        if "lr" not in g:
            raise ValueError(f"optimizer: param_groups[{i}] has no 'lr' entry")
    return groups


def _lrs(groups) -> list:
    """Each group's lr as a float, finite and >= 0, or TypeError / ValueError naming the entry."""
    return [_bound(f"optimizer.param_groups[{i}]['lr']", g["lr"]) for i, g in enumerate(groups)]


def _bound(name: str, v) -> float:
    """A value the reduction computes with (a group's lr, a min_lr): finite, >= 0, a NumPy float16
    refused before ``_item`` widens it (torch's ``max(old_lr * factor, min_lr)`` is then computed
    in float16: ``optkern._hyper_scalars``)."""
    _hyper_scalars.refuse_float16(name, v)
    return _backend.nonnegative(name, _item(v))


def _min_lrs(name: str, v, n: int) -> tuple:
    """(min_lrs, default_min_lr): one bound per group from a list or tuple of ``n``, or a scalar
    (then also the default for groups added later, as torch keeps it)."""
    if isinstance(v, (list, tuple)):
        if len(v) != n:
            raise ValueError(f"{name}: expected {_backend.counted(n, 'value')} (one per param group), got {len(v)}")
        return [_bound(f"{name}[{i}]", x) for i, x in enumerate(v)], None
    m = _bound(name, v)
    return [m] * n, m


def _metric(v) -> float:
    """The metric as a float: NaN and infinities taken (torch's: a NaN is never better, a bad epoch)."""
    v = _item(v)
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"metrics: expected a real number (or a 1-element array), got {type(v).__name__}")
    try:
        return float(v)
    except OverflowError:  # an int beyond float's range (torch: Python's unnamed OverflowError)
        raise ValueError("metrics: an integer beyond float64's range") from None


class ReduceLROnPlateau:
    """Multiply every param group's lr by ``factor`` once the metric passed to :meth:`step` has not
    improved for ``patience`` steps (torch.optim.lr_scheduler.ReduceLROnPlateau, the same arguments,
    attributes, lrs and ``state_dict``).

    Args:
      optimizer: any object with ``param_groups``, a list of dicts holding an ``lr`` entry (optkern
        and torch optimizers; a tensor or 1-element array lr is updated in place).
      mode: ``"min"`` (the metric should fall: a loss) or ``"max"`` (an accuracy).
      factor: ``new_lr = lr * factor``, in [0, 1).
      patience: steps without improvement tolerated; the lr is reduced at the ``patience + 1``-th.
      threshold, threshold_mode: a metric improves on the best one when it is below
        ``best * (1 - threshold)`` (``"rel"``) or ``best - threshold`` (``"abs"``) in ``"min"`` mode,
        above ``best * (1 + threshold)`` or ``best + threshold`` in ``"max"`` mode.
      cooldown: steps after a reduction during which bad steps are not counted.
      min_lr: lower bound of the lr, one number for all groups or a list with one per group.
      eps: a reduction smaller than this is skipped (the lr stays).

    A NaN metric is never an improvement (a bad step, as in torch). Every argument, attribute and
    group lr is checked before a step changes anything; on an error nothing changes.
    """

    def __init__(
        self,
        optimizer,
        mode="min",
        factor=0.1,
        patience=10,
        threshold=1e-4,
        threshold_mode="rel",
        cooldown=0,
        min_lr=0,
        eps=1e-8,
    ):
        groups = _groups(optimizer)
        given = dict(
            mode=mode,
            factor=factor,
            patience=patience,
            threshold=threshold,
            threshold_mode=threshold_mode,
            cooldown=cooldown,
            eps=eps,
        )
        config = {k: rule(k, given[k]) for k, rule in _CONFIG}
        min_lrs, default_min_lr = _min_lrs("min_lr", min_lr, len(groups))
        last_lr = _lrs(groups)
        self.optimizer = optimizer
        self.__dict__.update(config)
        self.min_lrs, self.default_min_lr = min_lrs, default_min_lr
        self.mode_worse = _mode_worse(config["mode"])
        self.best, self.num_bad_epochs, self.cooldown_counter, self.last_epoch = self.mode_worse, 0, 0, 0
        self._last_lr = last_lr

    @property
    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def _checked(self) -> dict:
        """The attributes a step reads, each checked by its rule (assigned after construction: a
        patience of -1 or a mode of "mni" would run silently), and the groups' min_lrs."""
        attrs = {k: rule(k, getattr(self, k)) for k, rule in _CONFIG + _COUNTERS}
        n = len(_groups(self.optimizer))
        min_lrs = self.min_lrs
        if not isinstance(min_lrs, (list, tuple)) or len(min_lrs) != n:
            if self.default_min_lr is None:  # (torch: RuntimeError at the reduction)
                count = len(min_lrs) if isinstance(min_lrs, (list, tuple)) else "no"
                raise ValueError(
                    f"optimizer: has {n} param groups, min_lrs holds {count} bounds (min_lr was a list "
                    "when built); assign min_lrs one per group"
                )
            # (torch: a group added later gets the scalar bound)
            min_lrs = [_bound("default_min_lr", self.default_min_lr)] * n
        attrs["min_lrs"], _ = _min_lrs("min_lrs", list(min_lrs), n)
        return attrs

    def _is_better(self, a: float, best: float, s: dict) -> bool:
        # torch's comparisons, term for term (its rounding: best * (1 - threshold) computed so)
        if s["mode"] == "min":
            return a < (best * (1.0 - s["threshold"]) if s["threshold_mode"] == "rel" else best - s["threshold"])
        return a > (best * (s["threshold"] + 1.0) if s["threshold_mode"] == "rel" else best + s["threshold"])

    def step(self, metrics) -> None:
        """One epoch's (or evaluation's) metric: counts it, and reduces the lrs when the patience
        is exhausted. Everything is checked before anything changes."""
        current = _metric(metrics)
        s = self._checked()
        groups = self.optimizer.param_groups
        lrs = _lrs(groups)
        best, bad, cooldown = s["best"], s["num_bad_epochs"], s["cooldown_counter"]
        if self._is_better(current, best, s):
            best, bad = current, 0
        else:
            bad += 1
        if cooldown > 0:
            cooldown -= 1
            bad = 0  # bad epochs in the cooldown are not counted
        new: list = []  # (group index, its reduced lr) for the groups written
        if bad > s["patience"]:
            reduced = [max(old * s["factor"], m) for old, m in zip(lrs, s["min_lrs"])]
            # (a smaller reduction skipped, as torch skips it; each written checked before any is)
            new = [(i, v) for i, (old, v) in enumerate(zip(lrs, reduced)) if old - v > s["eps"]]
            for i, _ in new:
                check_put(groups[i]["lr"], f"optimizer.param_groups[{i}]['lr']")
            cooldown, bad = s["cooldown"], 0
        if s["last_epoch"] == _backend.INT64_MAX:
            raise ValueError(f"last_epoch: must be <= {_backend.INT64_MAX - 1} to step, got {s['last_epoch']}")
        for i, v in new:
            _put(groups[i], "lr", v)
        self.min_lrs = s["min_lrs"]
        self.best, self.num_bad_epochs, self.cooldown_counter = best, bad, cooldown
        self.last_epoch = s["last_epoch"] + 1
        self._last_lr = [_scalar(g["lr"]) for g in groups]

    def get_last_lr(self) -> list:
        """The groups' lrs after the last step (at construction: as they were), one per group."""
        return list(self._last_lr)

    def state_dict(self) -> dict:
        """torch's state dict: the configuration, the counters, the best metric and the last lrs."""
        return {
            **{k: getattr(self, k) for k, _ in _CONFIG + _COUNTERS},
            "min_lrs": list(self.min_lrs),
            "default_min_lr": self.default_min_lr,
            "mode_worse": self.mode_worse,
            "_last_lr": list(self._last_lr),
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state`` (this class's or torch's ``state_dict``). All of it is checked
        first; a missing or unknown key, or a bad value, raises naming it and changes nothing."""
        _backend.state_keys(state, _STATE_KEYS, (), "a ReduceLROnPlateau's")
        new = {k: rule(f"state[{k!r}]", state[k]) for k, rule in _CONFIG + _COUNTERS}
        n = len(_groups(self.optimizer))
        default = state["default_min_lr"]
        if default is not None:
            default = _bound("state['default_min_lr']", default)
        raw = state["min_lrs"]
        if not isinstance(raw, (list, tuple)):
            raise TypeError(f"state['min_lrs']: expected a list, got {type(raw).__name__}")
        if len(raw) != n and default is not None:  # (torch's: the scalar bound for every group)
            raw = [default] * n
        new["min_lrs"], _ = _min_lrs("state['min_lrs']", raw, n)
        new["default_min_lr"] = default
        # +-inf, the start of ``best`` in either mode, as saved: a mode assigned mid-run leaves torch's
        # (and this one's) at the constructor's mode, and the run's own state_dict was refused here
        worse = _signed("state['mode_worse']", state["mode_worse"])
        if not math.isinf(worse):
            raise ValueError(f"state['mode_worse']: must be inf or -inf, got {worse!r}")
        new["mode_worse"] = worse
        last = state["_last_lr"]
        if not isinstance(last, (list, tuple)):
            raise TypeError(f"state['_last_lr']: expected a list, got {type(last).__name__}")
        if len(last) > n:
            # (a scheduler of an optimizer with more groups: loaded, get_last_lr() gave that run's lrs,
            # more than this optimizer has groups. Fewer is torch's own: groups added since its last step)
            raise ValueError(
                f"state['_last_lr']: holds {len(last)} lrs, but the optimizer has {n} param group{'s' * (n != 1)} "
                "(a state of a scheduler over another optimizer)"
            )
        new["_last_lr"] = [_backend.nonnegative(f"state['_last_lr'][{i}]", _item(x)) for i, x in enumerate(last)]
        # (a cooldown_counter above cooldown taken, as torch takes it: a cooldown assigned lower during
        # a cooldown leaves it so, and the run's own state_dict, torch's too, was refused here)
        self.__dict__.update(new)
