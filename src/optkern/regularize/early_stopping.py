"""Early stopping on a validation metric, keeping the best checkpoint."""

from __future__ import annotations

import copy
import json
import math
import os

import numpy as np

from .. import _backend


def _is_array(a) -> bool:
    return isinstance(a, np.ndarray) or _backend.is_cupy(a)


def _snapshot(obj):
    """A deep copy of a state_dict whose arrays (NumPy or CuPy) are copied too."""
    if _is_array(obj):
        return obj.copy()
    if isinstance(obj, dict):
        return {k: _snapshot(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_snapshot(v) for v in obj)
    return copy.deepcopy(obj)


def _encode(obj, arrays: dict):
    """JSON-able skeleton of a state_dict; arrays go to ``arrays`` under a key."""
    if _is_array(obj):
        key = f"a{len(arrays)}"
        cupy = _backend.is_cupy(obj)
        arrays[key] = obj.get() if cupy else obj
        return {"__array__": key, "cupy": cupy}
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, dict):
        return {"__dict__": [[_encode(k, arrays), _encode(v, arrays)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, arrays) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, arrays) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(
        f"state: cannot save a {type(obj).__name__} to .npz (arrays, numbers, str, lists, tuples and dicts only)"
    )


def _decode(obj, arrays):
    if isinstance(obj, dict):
        if "__array__" in obj:
            a = np.array(arrays[obj["__array__"]])
            if obj.get("cupy"):
                import cupy

                a = cupy.asarray(a)
            return a
        if "__tuple__" in obj:
            return tuple(_decode(v, arrays) for v in obj["__tuple__"])
        return {_decode(k, arrays): _decode(v, arrays) for k, v in obj["__dict__"]}
    if isinstance(obj, list):
        return [_decode(v, arrays) for v in obj]
    return obj


def save_state(path, state) -> None:
    """Write a nested state_dict (dicts, lists, arrays, scalars) to an ``.npz``."""
    arrays: dict = {}
    skeleton = json.dumps(_encode(state, arrays))
    tmp = str(path) + ".tmp.npz"
    np.savez(tmp, __skeleton__=np.array(skeleton), **arrays)
    os.replace(tmp, path)


def load_state(path):
    """Read a state_dict written by :func:`save_state` (CuPy arrays come back as CuPy)."""
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files if k != "__skeleton__"}
        skeleton = json.loads(str(f["__skeleton__"]))
    return _decode(skeleton, arrays)


class EarlyStopping:
    """Stop when a validation metric has not improved for ``patience`` checks.

    Args:
      patience: checks without improvement tolerated (>= 0); the
        ``patience + 1``-th makes :meth:`step` return True.
      min_delta: an improvement must beat the best by more than this (>= 0).
      mode: ``"min"`` (loss) or ``"max"`` (accuracy).
      path: None keeps the best checkpoint in memory (a copy); a file name
        (``.npz``) writes it there instead, each time the metric improves.

    Usage::

        stopper = EarlyStopping(patience=5, min_delta=1e-4)
        for epoch in ...:
            if stopper.step(val_loss, state=model.state_dict()):
                break
        model.load_state_dict(stopper.restore())

    ``state`` may be a state_dict or a zero-argument callable returning one
    (called only when the metric improved). NaN never counts as improvement.
    """

    def __init__(self, patience=10, min_delta=0.0, mode="min", path=None):
        self.patience = _backend.integer("patience", patience, 0)
        self.min_delta = _backend.nonnegative("min_delta", min_delta)
        if mode not in ("min", "max"):
            raise ValueError(f"mode: expected 'min' or 'max', got {mode!r}")
        self.mode = mode
        self.path = None if path is None else os.fspath(path)
        self.best = math.inf if mode == "min" else -math.inf
        self.best_step = -1
        self.num_bad = 0
        self.steps = 0
        self.should_stop = False
        self._best_state = None

    def is_better(self, metric: float) -> bool:
        """Whether ``metric`` beats the best by more than ``min_delta``."""
        if math.isnan(metric):
            return False
        if self.mode == "min":
            return metric < self.best - self.min_delta
        return metric > self.best + self.min_delta

    def step(self, metric, state=None) -> bool:
        """Record one validation ``metric``; keep ``state`` if it is the best. True = stop now."""
        metric = float(metric)
        if self.is_better(metric):
            self.best, self.best_step, self.num_bad = metric, self.steps, 0
            if state is not None:
                s = state() if callable(state) else state
                if self.path is None:
                    self._best_state = _snapshot(s)
                else:
                    save_state(self.path, s)
                    self._best_state = self.path
        else:
            self.num_bad += 1
        self.steps += 1
        self.should_stop = self.num_bad > self.patience
        return self.should_stop

    def restore(self):
        """The best state_dict seen (a fresh copy), or RuntimeError if none was kept."""
        if self._best_state is None:
            raise RuntimeError("no checkpoint kept yet: pass state= to step()")
        if self.path is not None:
            return load_state(self.path)
        return _snapshot(self._best_state)

    def state_dict(self) -> dict:
        """Counters and best value (the checkpoint itself stays in memory / in ``path``)."""
        return {
            "best": self.best,
            "best_step": self.best_step,
            "num_bad": self.num_bad,
            "steps": self.steps,
            "should_stop": self.should_stop,
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue counting from :meth:`state_dict`."""
        for k in ("best", "best_step", "num_bad", "steps", "should_stop"):
            if k not in state:
                raise ValueError(f"state: missing {k!r}")
        self.best = float(state["best"])
        self.best_step = int(state["best_step"])
        self.num_bad = int(state["num_bad"])
        self.steps = int(state["steps"])
        self.should_stop = bool(state["should_stop"])
        if self.path is not None and os.path.exists(self.path):
            self._best_state = self.path
