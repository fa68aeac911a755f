"""Small stateful modules (``BatchNorm``, ``LayerNorm``, ``GroupNorm``, ``RMSNorm``) over the functional forms."""

from __future__ import annotations

import math

import numpy as np

from .. import _backend, lowp
from .._foreign import shown_values
from .._pickling import NativeByName
from ._common import F32_STATS, _eps, _momentum, _shape_arg
from .functional import (
    batch_norm,
    batch_norm_backward,
    group_norm,
    group_norm_backward,
    layer_norm,
    layer_norm_backward,
    rms_norm,
    rms_norm_backward,
)


def _module_dtype(dtype, cupy: bool):
    """A module's dtype: float32, float64, float16 or bfloat16 (float32 statistics for the half types,
    as the kernels keep them on CPU and GPU). "bfloat16": on CuPy kept as the string; on NumPy
    ``ml_dtypes.bfloat16`` (what optkern takes as bfloat16 host arrays, :mod:`optkern.lowp`)."""
    if isinstance(dtype, str) and dtype == "bfloat16":
        if cupy:
            return dtype
        bf16 = lowp.bfloat16_dtype()
        if bf16 is None:
            raise TypeError("dtype: 'bfloat16' on NumPy needs ml_dtypes (pip install ml_dtypes)")
        return bf16
    try:
        dt = None if dtype is None else np.dtype(dtype)
    except (TypeError, ValueError):
        dt = None
    if dt is None or not (dt in _ALLOWED or (not cupy and _backend.is_bfloat16(dt))):
        raise TypeError(
            f"dtype: expected float32, float64, float16 or 'bfloat16', got {repr(dtype) if dt is None else dt}"
        )
    return dt


_ALLOWED = (np.float32, np.float64, np.float16)


def _state_value(xp, key, v, like):
    """``state_dict[key]`` checked and converted to the module's array ``like`` (its shape, its
    dtype), nothing written: bfloat16 values taken (ml_dtypes' bfloat16 is not of NumPy's kind "f":
    a bfloat16 module could not load its own state; torch's ``.numpy()`` refuses bfloat16 tensors,
    whose values float32 holds exactly), and a finite value past ``like``'s dtype refused (1e6 in
    float16 was written as inf, silently; non-finite ones load, as in torch)."""
    if hasattr(v, "detach"):  # (a torch tensor: its values, as NumPy takes them; a neg view's resolved)
        v = shown_values(v).cpu()
        v = (v.float() if str(v.dtype) == "torch.bfloat16" else v).numpy()
    else:
        # (a masked array refused, naming the key, as every array argument: asarray dropped its mask and
        # the hidden values loaded as data)
        v = _backend.as_array(v, f"state_dict[{key!r}]")
        if xp is np and _backend.is_cupy(v):
            v = v.get()  # (a CuPy module's state into a NumPy module: NumPy's asarray refuses device arrays)
    try:
        v = xp.asarray(v)
    except (TypeError, ValueError) as e:
        raise TypeError(f"state_dict[{key!r}]: expected an array, got {type(v).__name__} ({e})") from None
    if v.dtype.kind not in "fiu" and v.dtype.name != "bfloat16":
        raise TypeError(f"state_dict[{key!r}]: expected real numbers, got {v.dtype}")
    if tuple(v.shape) != tuple(like.shape):
        raise ValueError(f"state_dict[{key!r}]: expected shape {tuple(like.shape)}, got {tuple(v.shape)}")
    with np.errstate(over="ignore", invalid="ignore"):
        cast = v.astype(like.dtype)
    over = xp.isfinite(v) & ~xp.isfinite(cast)
    if bool(over.any()):
        bad = v[over][0]
        raise ValueError(f"state_dict[{key!r}]: {bad} overflows the module's dtype {like.dtype}")
    return cast


def _loaded_count(count) -> int:
    """``state_dict["num_batches_tracked"]`` as the count: an integer, or an array / tensor / NumPy
    scalar of one real value (a float truncated, as torch's copy into its int64 buffer does), named
    when it is none. (``int(count.item())`` raised Python's unnamed errors for NaN, inf, complex and
    NumPy's for several values, and took the string array ``np.array("3")`` as 3.)"""
    key = "state_dict['num_batches_tracked']"
    if hasattr(count, "item") and hasattr(count, "shape"):
        if math.prod(count.shape) != 1:
            raise ValueError(f"{key}: expected one count, got shape {tuple(count.shape)}")
        count = count.item()
        if isinstance(count, float):
            if not math.isfinite(count):
                raise ValueError(f"{key}: expected a finite count, got {count}")
            count = int(count)
        elif isinstance(count, bool):  # (torch's bool tensor loads as 0 / 1 too)
            count = int(count)
    # (the training forward's bound: 2**63 - 1 was loaded, and the next forward refused it)
    return _backend.integer(key, count, lo=0, hi=_backend.INT64_MAX - 1)


class _NormModule(NativeByName):
    """Shared parts: parameters / grads lists and array allocation on NumPy or CuPy."""

    def __init__(self, dtype, like):
        if _backend.is_foreign(like):  # (a torch tensor, a DLPack exporter: its library is its view's)
            like = _backend.as_array(like, "like")
        if like is not None and _backend.is_cupy(like):
            import cupy

            self._xp = cupy
        elif like is None or isinstance(like, np.ndarray):
            self._xp = np
        else:
            raise TypeError(f"like: expected a numpy or cupy array, got {type(like).__name__}")
        self.dtype = _module_dtype(dtype, self._xp is not np)
        self.weight = self.bias = None
        self.grad_weight = self.grad_bias = None
        self._saved = None
        self._x = None

    def _own_eps(self, eps) -> float:
        """``eps`` by the forward's rule for this module's statistics (float32 unless the module is
        float64): one rounding to 0 or past float32's max there was taken and refused at the first forward."""
        return _eps(eps, None if self.dtype == np.float64 else F32_STATS)

    def _sized(self, name: str, n: int, stats, params: bool, shown=None) -> None:
        """``n`` (elements of each array built from ``name``: the parameters where ``params``, and
        statistics of dtype ``stats`` unless None) checked to fit one array, naming ``name``."""
        for dt, used in ((stats, stats is not None), (self.dtype, params)):
            if used:
                _backend.array_elements(name, n, dt, shown)

    def _full(self, shape, value, dtype=None):
        return self._xp.full(shape, value, dtype=self.dtype if dtype is None else dtype)

    def parameters(self) -> list:
        """The trainable arrays (weight, bias where present), for an optimizer."""
        return [p for p in (self.weight, self.bias) if p is not None]

    def grads(self) -> list:
        """Gradients matching :meth:`parameters`, set by :meth:`backward`."""
        return [g for p, g in ((self.weight, self.grad_weight), (self.bias, self.grad_bias)) if p is not None]

    def __call__(self, x, training=True):
        return self.forward(x, training=training)

    @staticmethod
    def _input(x):
        """x, a foreign array (a torch tensor...) as its NumPy / CuPy view, as the functional forms take
        it: the checks below read its dtype (``torch.float32`` read as another dtype than float32:
        "x: expected float32 (this BatchNorm's dtype), got torch.float32") and its shape."""
        return _backend.as_array(x, "x")

    def _check_dtype(self, x):
        """x in this module's dtype where the module holds arrays of it (weight, running buffers):
        the error names x, not the module's array that the native call would blame."""
        held = self.weight is not None or getattr(self, "running_mean", None) is not None
        dt = getattr(x, "dtype", None)
        if held and dt is not None and str(dt) != str(self.dtype):
            raise TypeError(f"x: expected {self.dtype} (this {type(self).__name__}'s dtype), got {dt}")

    def _check_channels(self, x, C, what):
        """x must be (N, C, ...) with this module's C (else the error would blame weight)."""
        shape = getattr(x, "shape", None)
        if shape is not None and (len(shape) < 2 or shape[1] != C):
            raise ValueError(
                f"x: expected shape (N, {C}, ...) for {type(self).__name__}({what}={C}), got {tuple(shape)}"
            )

    def _need_forward(self):
        if self._saved is None:
            raise RuntimeError(f"{type(self).__name__}.backward: call forward(x) first")

    # ---- state: torch's keys, so a torch module's state_dict loads here and back ----------------

    _BUFFERS: tuple = ()  # (array buffers beside weight and bias: BatchNorm's running statistics)

    def _arrays(self) -> dict:
        names = ("weight", "bias", *self._BUFFERS)
        return {k: getattr(self, k) for k in names if getattr(self, k, None) is not None}

    def state_dict(self) -> dict:
        """Copies of the module's arrays under torch's names (``weight``, ``bias``,
        ``running_mean``, ``running_var``, ``num_batches_tracked`` as a 0-d int64 array): what
        ``torch.nn.BatchNorm2d.state_dict()`` holds, for :meth:`load_state_dict` here or in torch
        (``{k: torch.from_numpy(v) for k, v in sd.items()}``)."""
        out = {k: a.copy() for k, a in self._arrays().items()}
        if "running_mean" in out:  # (the count checked by load_state_dict's rule: 2.5 was saved as 2)
            n = _backend.integer("num_batches_tracked", self.num_batches_tracked, lo=0, hi=_backend.INT64_MAX)
            out["num_batches_tracked"] = self._xp.asarray(n, dtype=np.int64)
        return out

    def load_state_dict(self, state_dict) -> None:
        """Load what :meth:`state_dict` (or the matching torch module's) returns: NumPy / CuPy
        arrays or CPU tensors (anything ``asarray`` takes), each of its array's shape, converted to
        its dtype. The keys must be exactly this module's; everything is checked before anything
        is written (ValueError / TypeError naming the key)."""
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict: expected a dict, got {type(state_dict).__name__}")
        own = self._arrays()
        want = set(own) | ({"num_batches_tracked"} if "running_mean" in own else set())
        if set(state_dict) != want:
            missing, extra = sorted(want - set(state_dict)), sorted(set(state_dict) - want)
            raise ValueError(f"state_dict: missing keys {missing}, unexpected keys {extra}")
        new = {k: _state_value(self._xp, k, state_dict[k], a) for k, a in own.items()}
        count = None
        if "num_batches_tracked" in want:
            count = _loaded_count(state_dict["num_batches_tracked"])
        for k, v in new.items():
            own[k][...] = v  # (in place: an optimizer holding these arrays keeps stepping them)
        if count is not None:
            self.num_batches_tracked = count


class BatchNorm(_NormModule):
    """Batch normalization over (N, C) or (N, C, *spatial) input, like ``torch.nn.BatchNorm{1,2,3}d``.

    Holds ``weight`` (ones), ``bias`` (zeros), ``running_mean`` (zeros),
    ``running_var`` (ones) and ``num_batches_tracked``. ``forward(x,
    training=True)`` uses batch statistics and updates the running buffers;
    ``training=False`` uses the running buffers. ``backward(dy)`` returns dx
    and stores ``grad_weight`` / ``grad_bias``. ``momentum=None`` makes the
    running buffers the cumulative average of every batch's statistics since
    the last :meth:`reset_running_stats` (torch's momentum=None; what
    ``optkern.swa.update_bn`` uses).
    """

    def __init__(
        self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True, dtype=np.float32, like=None
    ):
        super().__init__(dtype, like)
        C = _backend.integer("num_features", num_features, lo=1, hi=_backend.INT64_MAX)
        self.eps = self._own_eps(eps)
        self.momentum = None if momentum is None else _momentum(momentum)
        # bools, as torch's: a string like "no" must not read as a choice
        affine = _backend.flag("affine", affine)
        track_running_stats = _backend.flag("track_running_stats", track_running_stats)
        sdt = np.float64 if self.dtype == np.float64 else np.float32
        self._sized("num_features", C, sdt if track_running_stats else None, affine)
        if affine:
            self.weight, self.bias = self._full(C, 1), self._full(C, 0)
        self.running_mean = self._full(C, 0, sdt) if track_running_stats else None
        self.running_var = self._full(C, 1, sdt) if track_running_stats else None
        self.num_batches_tracked = 0
        self.num_features = C

    _BUFFERS = ("running_mean", "running_var")

    def forward(self, x, training=True):
        """Normalize x; returns y."""
        # a bool, checked before anything changes: "False" would train and update the running buffers
        training = _backend.flag("training", training)
        x = self._input(x)
        self._check_channels(x, self.num_features, "num_features")
        self._check_dtype(x)
        use_batch = training or self.running_mean is None
        counted = training and self.running_mean is not None
        # the count (an assignable attribute) checked before the running statistics change: with a
        # momentum, None or "3" raised Python's unnamed TypeError after they were updated, 2.5 went on
        n = 0
        if counted or self.momentum is None:
            n = _backend.integer("num_batches_tracked", self.num_batches_tracked, lo=0, hi=_backend.INT64_MAX - 1)
        # momentum None: batch n + 1 enters the running average with weight 1 / (n + 1), in double as torch
        momentum = 1.0 / (n + 1) if self.momentum is None else self.momentum
        y, self._saved = batch_norm(
            x,
            self.weight,
            self.bias,
            self.running_mean,
            self.running_var,
            training=use_batch,
            momentum=momentum,
            eps=self.eps,
        )
        if counted:
            self.num_batches_tracked = n + 1
        self._x = x
        return y

    def reset_running_stats(self) -> None:
        """running_mean = 0, running_var = 1, num_batches_tracked = 0 (in place)."""
        if self.running_mean is not None:
            self.running_mean.fill(0)
            self.running_var.fill(1)
        self.num_batches_tracked = 0

    def backward(self, dy):
        """dx for the last forward; sets grad_weight and grad_bias."""
        self._need_forward()
        dx, dw, db = batch_norm_backward(dy, self._x, self.weight, self._saved)
        if self.weight is not None:
            self.grad_weight, self.grad_bias = dw, db
        return dx


class LayerNorm(_NormModule):
    """Layer normalization over the trailing ``normalized_shape``, like ``torch.nn.LayerNorm``."""

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, dtype=np.float32, like=None):
        super().__init__(dtype, like)
        self.normalized_shape = _shape_arg(normalized_shape)
        self.eps = self._own_eps(eps)
        bias = _backend.flag("bias", bias)
        if _backend.flag("elementwise_affine", elementwise_affine):
            self._sized(
                "normalized_shape", math.prod(d for d in self.normalized_shape if d), None, True, self.normalized_shape
            )
            self.weight = self._full(self.normalized_shape, 1)
            self.bias = self._full(self.normalized_shape, 0) if bias else None

    def forward(self, x, training=True):
        """Normalize x (``training`` is accepted for a uniform interface and ignored)."""
        x = self._input(x)
        self._check_dtype(x)
        y, self._saved = layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        self._x = x
        return y

    def backward(self, dy):
        """dx for the last forward; sets grad_weight and grad_bias."""
        self._need_forward()
        dx, dw, db = layer_norm_backward(
            dy, self._x, self.weight, self._saved, self.normalized_shape, param_grads=self.weight is not None
        )
        self.grad_weight, self.grad_bias = dw, (db if self.bias is not None else None)
        return dx


class GroupNorm(_NormModule):
    """Group normalization, like ``torch.nn.GroupNorm(num_groups, num_channels)``."""

    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True, dtype=np.float32, like=None):
        super().__init__(dtype, like)
        self.num_groups = _backend.integer("num_groups", num_groups, lo=1, hi=_backend.INT64_MAX)
        C = _backend.integer("num_channels", num_channels, lo=1, hi=_backend.INT64_MAX)
        if C % self.num_groups:
            raise ValueError(f"num_groups: must divide num_channels={C}, got {self.num_groups}")
        self.eps = self._own_eps(eps)
        self.num_channels = C
        if _backend.flag("affine", affine):
            self._sized("num_channels", C, None, True)
            self.weight, self.bias = self._full(C, 1), self._full(C, 0)

    def forward(self, x, training=True):
        """Normalize x (``training`` is ignored)."""
        x = self._input(x)
        self._check_channels(x, self.num_channels, "num_channels")
        self._check_dtype(x)
        y, self._saved = group_norm(x, self.num_groups, self.weight, self.bias, self.eps)
        self._x = x
        return y

    def backward(self, dy):
        """dx for the last forward; sets grad_weight and grad_bias."""
        self._need_forward()
        dx, dw, db = group_norm_backward(dy, self._x, self.weight, self._saved, param_grads=self.weight is not None)
        self.grad_weight, self.grad_bias = dw, db
        return dx


class RMSNorm(_NormModule):
    """RMS normalization, like ``torch.nn.RMSNorm(normalized_shape, eps=None)``."""

    def __init__(self, normalized_shape, eps=None, elementwise_affine=True, dtype=np.float32, like=None):
        super().__init__(dtype, like)
        self.normalized_shape = _shape_arg(normalized_shape)
        self.eps = None if eps is None else self._own_eps(eps)
        if _backend.flag("elementwise_affine", elementwise_affine):
            self._sized(
                "normalized_shape", math.prod(d for d in self.normalized_shape if d), None, True, self.normalized_shape
            )
            self.weight = self._full(self.normalized_shape, 1)

    def forward(self, x, training=True):
        """Normalize x (``training`` is ignored)."""
        x = self._input(x)
        self._check_dtype(x)
        y, self._saved = rms_norm(x, self.normalized_shape, self.weight, self.eps)
        self._x = x
        return y

    def backward(self, dy):
        """dx for the last forward; sets grad_weight."""
        self._need_forward()
        dx, dw = rms_norm_backward(
            dy, self._x, self.weight, self._saved, self.normalized_shape, param_grads=self.weight is not None
        )
        self.grad_weight = dw
        return dx
