"""Early stopping on a validation metric, keeping the best checkpoint."""

from __future__ import annotations

import copy
import errno
import json
import math
import numbers
import os
import zipfile

import numpy as np

from .. import _atomic, _backend
from .. import _checkpoint_codec as _codec
from ..lowp import _option


def _is_array(a) -> bool:
    return isinstance(a, np.ndarray) or _backend.is_cupy(a)


def _snapshot(obj):
    """A deep copy of a state_dict whose arrays (NumPy or CuPy) are copied too."""
    if _is_array(obj):
        return obj.copy()
    if isinstance(obj, dict):
        return {k: _snapshot(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        items = [_snapshot(v) for v in obj]
        # a named tuple (hyper-parameters, say) takes its fields as arguments, not one iterable
        return type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)
    return copy.deepcopy(obj)


def _from_legacy(node):
    """A skeleton of the encoder ``save_state`` had of its own (before it used the checkpoint
    codec) as the codec's structure, so that its files still load: arrays under keys ``"a<k>"``
    tagged ``cupy`` / ``ml_dtypes`` / ``torch`` (the torch dtype's name), dicts as ``__dict__`` pairs
    of encoded keys and values."""
    if isinstance(node, list):
        return [_from_legacy(v) for v in node]
    if not isinstance(node, dict):
        return node
    if "__array__" in node:
        key = node["__array__"]
        index = int(key[1:]) if isinstance(key, str) and key[:1] == "a" and key[1:].isdigit() else key
        out = {"__array__": index, "cupy": node.get("cupy", False)}
        if "torch" in node:  # (its dtype: the bits' type where NumPy lacks it, else NumPy's own)
            out["torch"] = True
            if not hasattr(np, node["torch"]):
                out["dtype"] = node["torch"]
        elif "ml_dtypes" in node:
            out["dtype"] = node["ml_dtypes"]
        return out
    if "__tuple__" in node:
        return {"__tuple__": [_from_legacy(v) for v in node["__tuple__"]]}
    # (a key is hashable: plain data, or a tuple of it)
    return {"__items__": [[_codec._decode(_from_legacy(k), []), _from_legacy(v)] for k, v in node["__dict__"]]}


#: the member holding the codec's structure, and the format of a file of the checkpoint codec (a
#: legacy file's member holds the structure itself)
_SKELETON, _FORMAT = "__skeleton__", "optkern-state"


def save_state(path, state) -> None:
    """Write a nested state_dict (dicts, lists, arrays, torch tensors, scalars) to an ``.npz``.

    Torch tensors (a ``torch.nn.Module``'s or ``torch.optim`` optimizer's state_dict) are saved
    detached, from a host copy, and :func:`load_state` gives them back as CPU tensors of the
    same dtype (complex32 included). NumPy arrays of ml_dtypes' types (bfloat16, float8_*) are saved as their bits and
    come back with their dtype; an array that would not load back as it was (dtype object) is a
    TypeError, before the file is touched. (The encoding is ``optkern.save``'s:
    ``optkern._checkpoint_codec``.)"""
    path = _atomic.checked_path(path)  # (named before anything is encoded or written)
    arrays: list = []
    skeleton = json.dumps({"format": _FORMAT, "tree": _codec._encode(state, arrays, "state")}, allow_nan=False)
    with _atomic.replace_atomically(path, binary=True) as f:  # (no half file, no .tmp left)
        members: dict = {_SKELETON: np.array(skeleton)}
        members.update((f"a{k}", a) for k, a in enumerate(arrays))
        np.savez(f, **members)


def load_state(path):
    """Read a state_dict written by :func:`save_state` (CuPy arrays come back as CuPy, torch
    tensors as CPU torch tensors).

    A file that is not such a state (another ``.npz``, a damaged one) is a ValueError naming ``path``;
    one whose array bytes were damaged names the entry too (the zip's CRC-32 of every member, which
    ``np.savez`` writes and ``zipfile`` checks once a member is read to its end, is the file's
    integrity check: a flipped byte never loads as other values).
    """
    path = _atomic.checked_path(path)  # (a directory or a FIFO: named, not opened)
    # Our own file handle: np.load leaves the file it opened unclosed when the zip is damaged.
    with open(path, "rb") as fh:
        try:
            f = np.load(fh, allow_pickle=False)
            if not isinstance(f, np.lib.npyio.NpzFile):
                raise ValueError("a single .npy array, not an .npz file")
            with f:
                if _SKELETON not in f.files:
                    raise ValueError(f"it holds no {_SKELETON!r} entry")
                skeleton = json.loads(str(f[_SKELETON]))
                n = len(f.files) - 1
                if set(f.files) != {_SKELETON} | {f"a{k}" for k in range(n)}:
                    raise ValueError(f"its members are not {_SKELETON!r} and a0 ... a{n - 1}")
                if isinstance(skeleton, dict) and skeleton.get("format") == _FORMAT:
                    tree = skeleton["tree"]
                else:
                    tree = _from_legacy(skeleton)
                arrays = [_member(f, k, tree) for k in range(n)]
            return _codec._decode(tree, arrays, as_saved=True)
        # json / zip / a skeleton of the wrong shape; a truncated or altered file: EOFError (empty)
        # and zipfile.BadZipFile (cut short, a CRC mismatch) passed a caller catching ValueError, as
        # did zipfile's NotImplementedError (a damaged compression method or version) and
        # RuntimeError (a damaged flag byte: "encrypted"), and the OSError of a seek to a damaged
        # (negative) offset
        except _DAMAGE as e:
            if isinstance(e, OSError) and e.errno != errno.EINVAL:
                raise  # (a failing disk, not the file's content)
            raise ValueError(f"path: {str(path)!r} is not a state written by save_state ({e})") from None


#: what reading a damaged or foreign file raises (load_state's ValueError naming it)
_DAMAGE = (
    ValueError,
    KeyError,
    TypeError,
    AttributeError,
    IndexError,
    EOFError,
    zipfile.BadZipFile,
    NotImplementedError,
    RuntimeError,
    OSError,
)


def _member(f, k: int, tree):
    """Array member ``a<k>`` of the open file; a damaged one (its CRC-32) a ValueError naming the
    entry of the state that holds it."""
    try:
        return f[f"a{k}"]
    except (zipfile.BadZipFile, EOFError, ValueError) as e:
        raise ValueError(f"damaged entry {_codec._where_array(tree, k, 'state')} (member a{k}: {e})") from None


def _metric(value, name: str = "metric") -> float:
    """A real number (NaN and +-inf included) or a 1-element array or tensor of one, as a float
    (a torch tensor's ``size`` is a method: its loss, ``val_loss`` as a 0-d tensor, was refused)."""
    numel = getattr(value, "numel", None)
    n = numel() if callable(numel) else getattr(value, "size", 0)
    if hasattr(value, "item") and n == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    try:
        return float(value)
    except OverflowError:  # an int beyond float's range
        raise ValueError(f"{name}: an integer beyond float64's range") from None


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

    # the in-memory checkpoint a loaded state without one hid (load_state_dict); on the class, so a
    # stopper pickled before it existed has it too
    _set_aside = None

    def __init__(self, patience=10, min_delta=0.0, mode="min", path=None):
        self.patience = _backend.integer("patience", patience, 0)
        self.min_delta = _backend.nonnegative("min_delta", min_delta)
        # (_option: a NumPy array of strings made ``in`` raise an unnamed ValueError, or passed as one)
        self.mode = _option("mode", mode, ("min", "max"))
        # (checked now: a directory was taken, and the first improving check raised os's error)
        self.path = None if path is None else _atomic.checked_path(path)
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
        metric = _metric(metric)
        if self.is_better(metric):
            if state is not None:  # kept first: if taking or saving it fails, the counters stay as they were
                s = state() if callable(state) else state
                if self.path is None:
                    self._best_state = _snapshot(s)
                else:
                    save_state(self.path, s)
                    self._best_state = self.path
            self.best, self.best_step, self.num_bad = metric, self.steps, 0
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
        """Counters and best value, whether a checkpoint was kept (the checkpoint itself stays in
        memory / in ``path``), and the mode the best is one in."""
        return {
            "mode": self.mode,
            "best": self.best,
            "best_step": self.best_step,
            "num_bad": self.num_bad,
            "steps": self.steps,
            "should_stop": self.should_stop,
            "kept": self._best_state is not None,
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue counting from :meth:`state_dict` (all of ``state`` is checked before anything changes);
        ``should_stop`` is then this stopper's verdict on the counts (``num_bad > patience``), as
        :meth:`step` gives it, whatever patience the saved run had."""
        # (an unknown key refused: a typo'd 'num_bda' was ignored silently)
        _backend.state_keys(
            state, ("best", "best_step", "num_bad", "steps", "should_stop"), ("mode", "kept"), "an EarlyStopping's"
        )
        if "mode" in state:  # (a state without it, older, is taken in this stopper's mode)
            # a best is one only in its run's mode: a "max" run's accuracy loaded into a "min"
            # stopper was taken silently, and every later accuracy counted as no improvement
            _option("state['mode']", state["mode"], (self.mode,))
        best = _metric(state["best"], "state['best']")
        if math.isnan(best):
            raise ValueError("state['best']: must be a number or +-inf, got nan")
        steps = _backend.integer("state['steps']", state["steps"], 0)
        # best_step is -1 until a metric improved; at most steps counts since it can be bad ones
        best_step = _backend.integer("state['best_step']", state["best_step"], -1, steps - 1)
        num_bad = _backend.integer("state['num_bad']", state["num_bad"], 0, steps)
        _backend.flag("state['should_stop']", state["should_stop"])  # (checked; this patience decides: below)
        self._check_counts(best, best_step, num_bad, steps)
        # Whether that run kept a checkpoint: one whose checks improved without state= kept none
        # either, and took another run's file at path for its own (restore gave a stale state
        # where the uninterrupted run raises). A state without the key (older) counts an
        # improvement as kept.
        kept = _backend.flag("state['kept']", state["kept"]) if "kept" in state else best_step >= 0
        if kept and best_step < 0:
            raise ValueError("state['kept']: True, but state['best_step'] = -1 (no check improved: none was kept)")
        self.best, self.best_step, self.num_bad, self.steps = best, best_step, num_bad, steps
        # (this stopper's patience decides, as in step: the state's flag is its run's, and a run with
        # patience 3 that stopped, resumed with patience 10, said should_stop=True until the next
        # bad check set it back to False; one with patience 10 resumed with patience 0 kept
        # False past num_bad > 0)
        self.should_stop = num_bad > self.patience
        if self.path is not None:
            self._best_state = self.path if kept and os.path.exists(self.path) else None
        elif not kept:  # (restore raises, as it does in the run resumed)
            # set aside, not dropped: optkern.load undoes a load when a later target is refused by
            # loading the state from before, which says one was kept; dropped, it was lost there
            self._set_aside, self._best_state = self._best_state or self._set_aside, None
        elif self._best_state is None:
            self._best_state = self._set_aside  # (None for a stopper that never kept one)

    def _check_counts(self, best: float, best_step: int, num_bad: int, steps: int) -> None:
        """The counters of a state as ``step`` leaves them, else ValueError naming the key: every
        check after the best one was bad (``num_bad = steps - 1 - best_step``; before any
        improvement, ``best_step = -1``: all of them), and the best is still the start value
        (``inf`` in mode min, ``-inf`` in max) exactly when no check improved on it. Unchecked, a
        state of wrong counts loaded silently (``num_bad = 0`` five checks after the best: early
        stopping ``patience`` checks late), as did a best no step recorded."""
        want = steps - 1 - best_step
        if num_bad != want:
            raise ValueError(
                f"state['num_bad']: {num_bad}, but state['steps'] = {steps} and state['best_step'] = {best_step} "
                f"mean {want} checks after the best (every one bad)"
            )
        start = math.inf if self.mode == "min" else -math.inf
        if (best_step < 0) != (best == start):
            got = "no check improved" if best_step < 0 else f"check {best_step} improved"
            raise ValueError(
                f"state['best_step']: {best_step} ({got}), but state['best'] = {best} "
                f"(the start value in mode {self.mode!r} is {start})"
            )
