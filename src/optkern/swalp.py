"""SWALP (Yang et al., ICML 2019): stochastic weight averaging over low-precision SGD iterates.

Low-precision SGD, as the paper's training code runs it (quantizers after
``optkern.lowp.quantize_block_fp`` / ``quantize_fixed_point``, stochastic rounding):

    g_q = Q_G(g)                                  the gradient, quantized
    b <- momentum b + g_q + weight_decay w        (b <- g_q + weight_decay w on the first step)
    w <- w - lr b                                 in float32 (optkern.functional.sgd_)
    b <- Q_M(b),  w <- Q_W(w)                     buffers and weights stored quantized

so the weights the model sees are always on the low-precision grid. SWA in full precision: from
step ``swa_start`` on, every ``cycle`` steps the (quantized) weights are folded into a float32
running mean (``optkern.swa.AveragedParams``, mode "swa"); the average itself is not quantized.
The paper pairs this with a constant or cyclic learning rate after ``swa_start``
(``optkern.schedules.swalr``, or assign ``lr`` between steps).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np

from . import _backend, functional, lowp
from ._checked_values import cached, remember
from .optim._given import _bump_torch_versions, torch_tensors
from .optim._hyper import _check_dtype
from .optim.sgd import SGDHyper
from .random import _UINT64_MAX
from .swa import AveragedParams, _copy, check_disjoint, check_finite, check_uncrossed

__all__ = ["SWALP"]

_WHAT = ("weight", "grad", "momentum")


#: The constructor's arguments a checkpoint holds (with ``t``, ``buffers`` and ``swa``).
_CONFIG = (
    "lr",
    "momentum",
    "weight_decay",
    "number",
    "bits",
    "block",
    "frac",
    "swa_start",
    "cycle",
    "seed",
    "rounding",
)


def _checked_config(config, name) -> dict:
    """The constructor's arguments (``_CONFIG``) checked; ``name(key)`` is what an error calls each
    (the argument's name, or its key in a state dict)."""
    out: dict[str, Any] = {
        "rounding": lowp._option(name("rounding"), config["rounding"], ("stochastic", "nearest")),
        "number": lowp._option(name("number"), config["number"], ("block_fp", "fixed_point")),
    }
    bits = config["bits"]
    if not isinstance(bits, Mapping):
        if isinstance(bits, bool) or not isinstance(bits, numbers.Integral):  # (not as bits['weight']: none given)
            raise TypeError(
                f"{name('bits')}: expected an int or a dict with keys {_WHAT} of ints, got {type(bits).__name__}"
            )
        bits = dict.fromkeys(_WHAT, bits)
    bits = dict(bits)
    if set(bits) != set(_WHAT):
        raise ValueError(f"{name('bits')}: expected an int or a dict with keys {_WHAT}, got {sorted(bits, key=repr)}")
    out["bits"] = {k: lowp._grid_bits(f"{name('bits')}[{k!r}]", bits[k]) for k in _WHAT}
    out["block"] = lowp._fp_block(name("block"), config["block"])
    out["frac"] = lowp._grid_frac(name("frac"), config["frac"])
    out["swa_start"] = _backend.integer(name("swa_start"), config["swa_start"], lo=0)
    out["cycle"] = _backend.integer(name("cycle"), config["cycle"], lo=1)
    # the quantizers' Philox keys seed .. seed + 2 must all be uint64s
    out["seed"] = _backend.integer(name("seed"), config["seed"], lo=0, hi=_UINT64_MAX - (len(_WHAT) - 1))
    out["lr"] = _backend.in_range(name("lr"), config["lr"], 0.0)
    out["momentum"] = _backend.in_range(name("momentum"), config["momentum"], 0.0, 1.0)
    out["weight_decay"] = _backend.in_range(name("weight_decay"), config["weight_decay"], 0.0)
    # As sgd_ checks them against the float32 params at every step: checked only there, a value
    # it refuses (lr or weight_decay above float32's max ** (1/4), 4.3e9) was taken here and
    # raised at the first step, or on the step after a checkpoint holding it was loaded.
    hp = SGDHyper(out["lr"], out["momentum"], 0.0, out["weight_decay"], False, False, False)
    _check_dtype(hp, np.float32, names={k: name(k) for k in ("lr", "momentum", "weight_decay")})
    return out


def _bits_dict(bits) -> dict:
    """``bits`` as a dict {"weight", "grad", "momentum"} -> bits: a copy of a dict, or an int (the
    constructor's form, assigned between steps) for every quantizer."""
    return dict(bits) if isinstance(bits, Mapping) else dict.fromkeys(_WHAT, bits)


def _zeros_like(a):
    """Zeros of ``a``'s shape and dtype on its backend and device."""
    with _backend._device_of(a):
        return _backend.array_module(a).zeros_like(a)


class SWALP:
    """Low-precision SGD with momentum + SWA in full precision.

    Args:
      params: float32 arrays, NumPy or CuPy (all one kind), updated in place (quantized at
        construction).
      lr, momentum, weight_decay: SGD's (torch's form, no dampening).
      number: "block_fp" (one shared exponent per ``block`` elements; 0: per array, as the paper's
        per-tensor blocks) or "fixed_point" (``frac`` fractional bits).
      bits: word length of every quantizer, or a dict {"weight", "grad", "momentum"} -> bits.
      swa_start, cycle: average after step ``swa_start`` and then every ``cycle`` steps (steps
        count from 1).
      rounding: "stochastic" (the paper's) or "nearest" (to nearest even; an ablation).
      seed: stochastic rounding's Philox key; weights, gradients and momentum take seed, seed + 1,
        seed + 2, stream = the step, offset = the element's index in the list's flat order.

    Every argument is checked here (the quantizers' too), so that a step checks only its grads
    before it writes: a refused step leaves params, buffers, averages and ``t`` as they were.
    ``state_dict`` / ``load_state_dict`` checkpoint it (the params are saved beside it).
    """

    # (set from _checked_config, by the constructor and load_state_dict)
    lr: float
    momentum: float
    weight_decay: float
    number: str
    bits: dict
    block: int
    frac: int
    swa_start: int
    cycle: int
    seed: int
    rounding: str

    def __init__(
        self,
        params,
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        *,
        number: str = "block_fp",
        bits=8,
        block: int = 0,
        frac: int = 6,
        swa_start: int = 0,
        cycle: int = 1,
        seed: int = 0,
        rounding: str = "stochastic",
    ):
        config = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, number=number, bits=bits, block=block)
        config.update(frac=frac, swa_start=swa_start, cycle=cycle, seed=seed, rounding=rounding)
        self.__dict__.update(_checked_config(config, lambda k: k))
        self._config_checked: dict = {}  # (_check_config's: the attributes last found good)
        given = _backend.read_once(params)
        self.params = _backend.as_list(given, "params")
        # written through NumPy views autograd does not see: their versions bumped after each write
        self._given = [given] if _backend.is_array(given) else given
        self._tensors = torch_tensors(self._given)
        # NumPy arrays on the CPU or CuPy arrays on one GPU, all of one kind
        self._gpu = bool(self.params) and _backend.is_cupy(self.params[0])
        self._kind = "cupy.ndarray" if self._gpu else "numpy.ndarray"
        for i, p in enumerate(self.params):
            if not self._is_kind(p) or p.dtype != np.float32 or not p.flags.c_contiguous:
                raise TypeError(f"params[{i}]: expected a C-contiguous float32 {self._kind} (as params[0])")
            _backend.check_written(p, np.float32, f"params[{i}]")  # (read-only, misaligned)
        # all checked before the first is quantized in place: one array twice would be quantized twice
        check_disjoint(self.params, [f"params[{i}]" for i in range(len(self.params))])
        self.offsets = np.concatenate([[0], np.cumsum([p.size for p in self.params])]).tolist()
        self.t = 0
        self.buffers = [_zeros_like(p) for p in self.params] if self.momentum > 0 else None
        for i, p in enumerate(self.params):
            self._quantize("weight", i, p, 0, out=p)
        _bump_torch_versions(self._tensors)
        self.swa = AveragedParams(self.params, mode="swa")

    def _is_kind(self, a) -> bool:
        return _backend.is_cupy(a) if self._gpu else isinstance(a, np.ndarray)

    def _quantize(self, what: str, i: int, x, t: int, out=None):
        """Quantizer ``what`` of params[i]'s ``x`` at step ``t`` (its Philox stream)."""
        kw = dict(
            rounding=self.rounding,
            seed=self.seed + _WHAT.index(what),
            step=t,
            offset=self.offsets[i],
            out=out,
        )
        if self.number == "block_fp":
            return lowp.quantize_block_fp(x, self.bits[what], self.block, **kw)
        return lowp.quantize_fixed_point(x, self.bits[what], self.frac, **kw)

    def step(self, grads) -> None:
        """One low-precision SGD step with ``grads`` (float32, the params' shapes), then SWA.

        The grads are quantized into new arrays (a grad may be a view of anything), then
        ``sgd_`` checks params and buffers before it writes; the quantizers' arguments were
        checked at construction, so nothing after it can fail. ``t`` counts the step once it
        is taken."""
        self._check_config()
        grads = _backend.check_list_like(_backend.as_list(grads, "grads"), self.params, "grads")
        for i, g in enumerate(grads):  # (the quantizer copies a strided grad, refuses this one naming its "x")
            if isinstance(g, np.ndarray) and g.flags.c_contiguous and not g.flags.aligned:
                raise ValueError(f"grads[{i}]: array data is misaligned")
        # t, an attribute as load_state_dict sets it, by that rule, naming it: used as it stood, None
        # raised Python's unnamed TypeError, True went on as 1, and 2**63 - 1 stepped to a count
        # its own checkpoint could not load
        t = _backend.integer("t", self.t, lo=0, hi=_backend.INT64_MAX - 1) + 1
        # What the average's update refuses, refused before the step writes: a param reshaped in place
        # since construction (``p.shape = ...``, the same memory) was stepped, ``t`` counted, and then
        # the update raised (stepped, not averaged); so were the average's own attributes.
        self.swa._check_shapes(self.params)
        averaged = t >= self.swa_start and (t - self.swa_start) % self.cycle == 0
        if averaged:
            self.swa._weight()
        gq = [self._quantize("grad", i, g, t) for i, g in enumerate(grads)]
        # momentum assigned between steps: off drops the buffers (kept, the checkpoint held buffers
        # with momentum 0, which load_state_dict refuses); on starts them at zero, so that this
        # step's b = g, torch SGD's first buffer (sgd_ raised "momentum_buffers: required")
        buffers = None if self.momentum == 0 else self.buffers or [_zeros_like(p) for p in self.params]
        functional.sgd_(
            self.params,
            gq,
            buffers,
            lr=self.lr,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            first=t == 1,
        )
        self.t, self.buffers = t, buffers
        for i, p in enumerate(self.params):
            if self.buffers is not None:
                self._quantize("momentum", i, self.buffers[i], t, out=self.buffers[i])
            self._quantize("weight", i, p, t, out=p)
        # (a graph saved before the step refuses its backward, as after torch's in-place step)
        _bump_torch_versions(self._tensors)
        if averaged:
            self.swa.update(self.params)

    def _check_config(self) -> None:
        """The configuration attributes by the constructor's rules, naming them, before a step writes:
        they are assignable (an lr between steps), and a cycle of 0 raised ZeroDivisionError, a seed
        of -1 ValueError, after the params were stepped; a number of "block-fp" quantized in fixed
        point. Skipped while every attribute holds the very objects that last passed."""
        config = {k: getattr(self, k) for k in _CONFIG}
        key = dict(config)
        bits = config["bits"]
        if type(bits) is dict and len(bits) == len(_WHAT):  # (its entries compared one by one)
            del key["bits"]
            key.update({f"bits[{w!r}]": bits.get(w, bits) for w in _WHAT})
        cache = self.__dict__.setdefault("_config_checked", {})  # (a SWALP pickled before it had one)
        if cached(cache, "config", key):
            return
        checked = _checked_config(config, lambda k: k)
        if not isinstance(bits, Mapping):
            # an int (the constructor's form: every quantizer's word length) kept as the constructor
            # keeps it, a dict: _quantize indexes it ("'int' object is not subscriptable" after the
            # check had passed it)
            self.bits = checked["bits"]
        remember(cache, "config", key, True)

    @property
    def averages(self) -> list:
        """The SWA model (float32, full precision): the mean of the averaged iterates."""
        return self.swa.averages

    def state_dict(self) -> dict:
        """What resumes the run with the params (saved beside it): the step count, copies of the
        quantized momentum buffers (None without momentum), the SWA average and the configuration.
        The stochastic rounding draws from (seed, step, element): a run resumed from it takes the
        same steps, bit for bit, as the run that went on (``optkern.save`` / ``load`` take it).

        The buffers are those the next step takes (``step``'s rule for a momentum assigned between
        steps): None at momentum 0, zeros where momentum was turned on. Saved as they were held, a
        checkpoint after such an assignment had buffers that did not fit its momentum, and every
        ``load_state_dict`` (its own included) refused it: the run could not be resumed."""
        if self.momentum == 0:
            buffers = None
        elif self.buffers is None:
            buffers = [_zeros_like(p) for p in self.params]
        else:
            buffers = [_copy(b) for b in self.buffers]
        return {
            "t": self.t,
            **{k: _bits_dict(self.bits) if k == "bits" else getattr(self, k) for k in _CONFIG},
            "buffers": buffers,
            "swa": self.swa.state_dict(),
        }

    def load_state_dict(self, state_dict) -> None:
        """Restore :meth:`state_dict`'s output: its configuration checked as the constructor checks
        it, its buffers (one per param, finite float32 of the param's shape; present when its momentum is
        not 0) and its average; everything is checked before anything is assigned."""
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict: expected a dict, got {type(state_dict).__name__}")
        for key in ("t", *_CONFIG, "buffers", "swa"):
            if key not in state_dict:
                raise ValueError(f"state_dict: missing {key!r}")
        config = _checked_config(state_dict, lambda k: f"state_dict[{k!r}]")
        t = _backend.integer("state_dict['t']", state_dict["t"], lo=0, hi=_backend.INT64_MAX)
        buffers = state_dict["buffers"]
        if (buffers is None) != (config["momentum"] == 0):
            raise ValueError(
                f"state_dict['buffers']: {'missing' if buffers is None else 'given'} with momentum "
                f"{config['momentum']} (buffers exist exactly when momentum is not 0)"
            )
        if buffers is not None:
            buffers = _backend.as_list(buffers, "state_dict['buffers']")
            _backend.check_list_like(buffers, self.params, "state_dict['buffers']", kind=False)
            names = [f"state_dict['buffers'][{i}]" for i in range(len(buffers))]
            check_uncrossed(buffers, names, self.buffers or [], "buffers")
            check_finite(buffers, "state_dict['buffers']")
        swa = state_dict["swa"]
        if isinstance(swa, Mapping) and "mode" in swa:
            # SWALP's average is an SWA one (no mode argument): an "ema" checkpoint went on as an EMA
            lowp._option("state_dict['swa']['mode']", swa["mode"], ("swa",))
        self.swa._load(swa, "state_dict['swa']")  # (checks all of its own before it assigns)
        if buffers is None:
            self.buffers = None
        else:
            mine = self.buffers or [_zeros_like(p) for p in self.params]
            for b, src in zip(mine, buffers):
                b[...] = _backend.asarray_like(src, b)  # (a host checkpoint onto the GPU, or back)
            self.buffers = mine
        self.__dict__.update(config)
        self.t = t
