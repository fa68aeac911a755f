"""Low-precision storage for the optimizers (SGD, Adagrad, RMSprop, Adadelta, Adam/AdamW, NAdam;
AdaGrad-Norm's master weights: :mod:`._lowp_norm`): bf16/fp16 params with a float32 master copy,
bfloat16 or blockwise 8-bit states, stochastic rounding.

One native pass per step (``lowp_step``: ``_cpu``'s OpenMP loop ``cpp/lowp_loop.hpp`` for NumPy
arrays, ``_cuda``'s kernel ``cuda/lowp_step.cu`` for CuPy arrays, with the same bits) reads the
half gradient, updates the float32 master and the states with the fp32 optimizer's own rule
(``rules/optim.hpp``: the master comes out bit for bit as the fp32 optimizer computes it) and
writes the half param back, rounded to nearest even or stochastically. CuPy params keep their
state (master, states, scales) as CuPy arrays on their device.

State layout (``run.state``, and so ``state_dict()``'s entries):

* ``master_param``: the float32 master copy (``master_weights=True``): the weights the step
  updates; a half param replaced in its group's list between steps receives the master's
  rounding (write the new values into ``opt.state[new]['master_param']`` too, to move the weights);
* each state (``exp_avg``, ...) in ``state_dtype``: float32; bfloat16 (``ml_dtypes.bfloat16`` in
  the state dict when ml_dtypes is installed and the state is a NumPy array, else the raw uint16
  bits); or ``int8``: uint8 codes
  of the dynamic blockwise map (:mod:`optkern.lowp`) with ``<name>_scale``, one float32 per block;
* entries of a non-float32 state dict say so: ``state_dtype`` and, for int8, ``block``.

``load_state_dict`` converts: any state dict (fp32, bf16 or 8-bit) loads into any of these
optimizers (8-bit into 8-bit with the same block is copied exactly; otherwise values are
dequantized to float32, then stored in this optimizer's format: bf16 to nearest even, int8 by
blockwise quantization). A missing master copy starts from the half param.
"""

from __future__ import annotations

from operator import attrgetter, is_

import numpy as np

from .. import _backend, lowp
from .._array_checks import byte_span
from .._lowp_blocks import block_scale_name
from ._lowp_checks import STORAGE, check_state, native_check
from ._lowp_config import (
    _MASTER,
    LOWP_KEYWORDS,
    STATE_DTYPES,
    LowpConfig,
    _half_fmt,
    block_scale_names,
    element_starts,
    lowp_keywords,
)
from ._lowp_state_dict import LowpStateDictMixin
from ._lowp_state_dict import _saved_seed as _saved_seed  # (torch/_lowp.py imports it from here)

_dtype = attrgetter("dtype")

__all__ = ["LOWP_KEYWORDS", "STATE_DTYPES", "LowPrecisionMixin", "LowpConfig", "lowp_keywords"]


class LowPrecisionMixin(LowpStateDictMixin):
    """Optimizer mixin: ``master_weights``, ``stochastic_rounding``, ``state_dtype``, ``seed``,
    ``block_size`` (``LOWP_KEYWORDS``; configured by ``_lowp_init`` before ``Optimizer.__init__``)."""

    _lowp: LowpConfig | None = None
    _amp_found_inf = None  # set by amp.GradScaler.step around a CuPy step: the device flag that skips it
    _amp_grad_scale = None  # set by amp.GradScaler.step around a step: the scale the step unscales grads by
    _lowp_seed0: int | None = None  # the constructor's seed (None: pickled before it was kept)
    # the global index of each param's element 0 where the params are slices of a larger numbering
    # (optkern.distributed's ZeRO-1: a rank's slice of the flat parameters draws the Philox words
    # of its global elements, as the unsharded optimizer does); None: from ``param_groups``
    _element_starts: list[int] | None = None
    # where a param's numbering jumps (ZeRO-1 with 8-bit states: a slice holds several params apart
    # by the gaps that align them to blocks, each numbered from its own unsharded element 0): per
    # param index, its pieces ``(first, stop, global index of first)``, each at a block boundary
    _element_runs: dict | None = None
    _state_names: tuple = ()

    def _lowp_init(self, capturable, **options) -> None:
        """Configure from the low-precision keywords given (``LOWP_KEYWORDS``; the rest default).
        ``capturable`` with them is refused by the group check (``CapturableMixin._checked``), however
        it is asked (the constructor's flag, a group's entry, one set between steps)."""
        unknown = sorted(set(options) - set(LOWP_KEYWORDS))
        if unknown:
            raise TypeError(f"{type(self).__name__}.__init__() got an unexpected keyword argument {unknown[0]!r}")
        o = {**LOWP_KEYWORDS, **options}
        master = _backend.flag("master_weights", o["master_weights"])
        sr = _backend.flag("stochastic_rounding", o["stochastic_rounding"])
        state_dtype = o["state_dtype"]
        if not isinstance(state_dtype, str) or state_dtype not in STATE_DTYPES:
            raise ValueError(f"state_dtype: expected one of {', '.join(map(repr, STATE_DTYPES))}, got {state_dtype!r}")
        seed = lowp._u64("seed", o["seed"])
        block = _backend.integer("block_size", o["block_size"], lo=1)
        if block < 64 or block > 4096 or block & (block - 1):
            raise ValueError(f"block_size: expected a power of two in [64, 4096], got {block}")
        if sr and not master:
            raise ValueError(
                "stochastic_rounding: rounds the float32 master into the half params; needs master_weights=True"
            )
        if not (master or state_dtype != "float32"):
            return
        self._lowp = LowpConfig(master, sr, state_dtype, seed, block)
        self._lowp_seed0 = seed
        base = type(self)._state_names
        self._state_names = base + ((_MASTER,) if master else ()) + block_scale_names(base, state_dtype)

    # ---- Optimizer hooks ---------------------------------------------------------------

    def _check_param_dtype(self, p, name: str) -> None:
        lp, half = self._lowp, self._half_format(p)
        if lp is not None and lp.master:
            if half is None:
                raise TypeError(f"{name}: expected float16 or bfloat16 with master_weights=True, got {p.dtype}")
        elif lp is not None:
            if p.dtype != np.float32:
                raise TypeError(f"{name}: state_dtype={lp.state_dtype!r} needs float32 params, got {p.dtype}")
        elif half is not None:
            raise TypeError(f"{name}: {half} params need master_weights=True (a float32 master copy)")
        else:
            super()._check_param_dtype(p, name)  # type: ignore[misc]

    def _math_dtype(self, dt):
        return np.dtype(np.float32) if self._lowp is not None else dt

    def _half_format(self, p) -> str | None:
        """'float16' / 'bfloat16' for a half-precision param (by its dtype), else None. (optkern.torch's
        adapter hands bfloat16 tensors over as their uint16 bits and says so here.)"""
        return _half_fmt(p.dtype)

    def _new_state(self, name, p, hp):
        lp = self._lowp
        if lp is None:
            return super()._new_state(name, p, hp)
        a = _backend.zeros(p, p.shape, STORAGE[lp.state_dtype])
        fill = self._lowp_initial(name, hp)[0]
        if fill:
            a[...] = fill
        return a

    def _lowp_initial(self, name: str, hp) -> tuple:
        """What a fresh state ``name`` holds in this storage, per element: (float32 value, bfloat16
        bits or 8-bit code; the 8-bit block scale or None), from the class's ``_initial_value`` (an
        8-bit block of one value v is code 255 of scale v, exactly)."""
        lp = self._lowp
        assert lp is not None  # low-precision mode only
        v = np.full(1, self._lowp_initial_value(name, hp), np.float32)
        if lp.state_dtype == "float32":
            return v[0], None
        if lp.state_dtype == "bfloat16":
            return lowp.to_half(v, "bfloat16", raw=True)[0], None
        codes, scales = lowp.quantize_blockwise(v, lp.block)
        return codes[0], scales[0]

    def _needed(self, hp) -> tuple:
        # the class's moments (its instance ``_state_names`` add the master and the 8-bit scales,
        # which ``_lowp_ensure`` makes)
        return type(self)._state_names

    def _lowp_initial_value(self, name: str, hp) -> float:
        """The float32 value state ``name`` starts at (the class's ``_initial_value``)."""
        return float(np.float32(self._initial_value(name, hp)))

    def _ensure_state(self, run, hp) -> None:
        super()._ensure_state(run, hp)
        if self._lowp is not None:
            self._lowp_ensure(run, self._needed(hp), hp)

    def _precheck(self, grads, group_runs=None) -> None:
        if self._lowp is None:
            return super()._precheck(grads, group_runs)  # type: ignore[misc]
        group_runs = self._runs if group_runs is None else group_runs
        self._lowp_check([(run, run.grads(grads)) for runs in group_runs for run in runs])

    # ---- the step -----------------------------------------------------------------------

    def _lowp_check(self, pairs, full: bool = True) -> None:
        """Every run's grads against its params (format, shape, layout), and nothing that a step
        reads overlapping anything it writes, before the first native call writes. ``full=False``:
        only what one native call cannot see (bfloat16 and float16 both travel as uint16)."""
        lp = self._lowp
        if full and native_check(lp, pairs, self.__dict__.setdefault("_lowp_checked", {})):
            return
        written = []
        for run, gs in pairs:
            for i, p, g in zip(run.index, run.params, gs):
                name = f"grads[{i}]"
                _backend.check_like(g, p, name, shape=full)
                if not full:
                    continue
                if not g.flags.c_contiguous:
                    raise ValueError(f"{name}: array must be C-contiguous")
                if isinstance(g, np.ndarray) and not g.flags.aligned:  # (as precheck_step_ refuses it)
                    raise ValueError(f"{name}: array data is misaligned")
                # the param's layout, as each native call checks it (a step of several calls: before
                # the first; a later group's param replaced by a strided or misaligned array was
                # refused after the earlier groups had stepped, named by its place in that call)
                if not p.flags.c_contiguous:
                    raise ValueError(f"params[{i}]: array must be C-contiguous")
                if type(p) is np.ndarray and not p.flags.writeable:
                    raise _backend.read_only(f"params[{i}]", p)
                if isinstance(p, np.ndarray) and not p.flags.aligned:
                    raise ValueError(f"params[{i}]: array data is misaligned")
            if not full:
                continue
            check_state(lp, run)  # (the state too: before the first of several calls writes)
            named = [("params[{}]", run.params)] + [(f"state[{{}}][{k!r}]", v) for k, v in run.state.items()]
            for fmt, arrays in named:
                # (None: a float32 param's master, beside half ones in optkern.torch's AdaGrad-Norm)
                written += [
                    (*byte_span(a), fmt.format(i)) for i, a in zip(run.index, arrays) if a is not None and a.nbytes
                ]
        if not full:
            return
        read = [(*byte_span(g), f"grads[{i}]") for run, gs in pairs for i, g in zip(run.index, gs) if g.nbytes]
        _backend.check_disjoint(written, read)

    def _lowp_ensure(self, run, names, hp) -> None:
        """The master copies and 8-bit scales of states ``names`` a step needs, made with the states
        (the scales of a fresh state: its initial value's, ``_lowp_initial``)."""
        lp = self._lowp
        assert lp is not None  # low-precision mode only
        st = run.state
        if lp.master and _MASTER not in st and any(map(self._half_format, run.params)):
            st[_MASTER] = [lowp.from_half(p) for p in run.params]
        if lp.state_dtype == "int8":
            for n in names:
                if block_scale_name(n) not in st:
                    scale = self._lowp_initial(n, hp)[1]
                    st[block_scale_name(n)] = [
                        _backend.zeros(p, lowp.n_blocks(p.size, lp.block), np.float32) + scale for p in run.params
                    ]

    def _element_bases(self, run) -> list[int]:
        """The global index of each of ``run``'s params' element 0: every element of every param
        in ``param_groups`` order has its own Philox counter, so no two params of a step round
        with the same words (param groups, formats and runs split by None grads step in separate
        native calls)."""
        if getattr(run, "bases", None) is not None:  # (getattr: a run pickled before runs had bases)
            return run.bases
        starts = self._element_starts
        if starts is None:
            starts = element_starts(self.param_groups)
        return [starts[i] for i in run.index]

    def _lowp_plan(self, run) -> tuple:
        """(param positions by format, the params' uint16 views, the params' element bases) of
        ``run``, kept while the run holds
        the same arrays (a step of 200 arrays spent half its Python time re-deriving them). A param
        replaced in the group's list makes new views; a half NumPy param made read-only since is
        refused here, as the step's checks refuse any other: its view keeps the flag it was made
        with, and a single-call step checks nothing else before the native call writes."""
        plans = self.__dict__.setdefault("_lowp_plans", {})
        hit = plans.get(id(run))
        if hit is not None and hit[0] is run.params and all(map(is_, hit[1], run.params)):
            held = hit[4]
            if held and (k := _backend.cpu.first_readonly_(held)) >= 0:
                raise _backend.read_only(f"params[{run.index[hit[5][k]]}]", held[k])  # (DLPack: why)
            return hit[2], hit[3], hit[6]
        by_fmt: dict[str, list[int]] = {}
        for k, p in enumerate(run.params):
            by_fmt.setdefault(self._half_format(p) or "float32", []).append(k)
        pbits = [p.view(np.uint16) if self._half_format(p) else p for p in run.params]
        viewed = [k for k, p in enumerate(run.params) if type(p) is np.ndarray and pbits[k] is not p]
        if len(plans) >= 64:  # (runs come and go with None grads and loaded state dicts)
            plans.clear()
        bases = self._element_bases(run)
        plans[id(run)] = (run.params, tuple(run.params), by_fmt, pbits, [run.params[k] for k in viewed], viewed, bases)
        return by_fmt, pbits, bases

    def _lowp_update(self, run, grads, rule: str, scalars: list, flags: list, names):
        """One native low-precision step of ``run`` (one call per param format in the run), on the
        params' backend (``run.mod``: ``_cpu``, or ``_cuda`` on CuPy's current stream). Returns what
        the native step returns (NAdam: the new mu_product, the same from every call; else None)."""
        lp = self._lowp
        assert lp is not None  # low-precision mode only
        by_fmt, pbits, bases = self._lowp_plan(run)
        p0 = run.params[0]
        kind, dt = type(p0), p0.dtype
        # the grads' type and dtype against the params' (a float16 and a bfloat16 grad both travel
        # as uint16): one C-level pass when every param has one dtype, the naming loop otherwise
        if len(by_fmt) > 1 or set(map(type, grads)) != {kind} or set(map(_dtype, grads)) != {dt}:
            self._lowp_check([(run, grads)], full=len(by_fmt) > 1)
        st = run.state
        amp: dict = {"grad_scale": self._amp_grad_scale}
        if self._amp_found_inf is not None:
            amp["found_inf"] = self._amp_found_inf  # (CUDA's lowp_step only)
        out = None
        for fmt, ks in by_fmt.items():
            whole = len(ks) == len(run.params)

            def sel(arrays, ks=ks, whole=whole):
                return arrays if whole else [arrays[k] for k in ks]

            half = fmt != "float32"
            ps = sel(pbits) if half else sel(run.params)
            bits = not half or (len(by_fmt) == 1 and dt == np.uint16)  # (optkern.torch: uint16 already)
            gs = sel(grads) if bits else [g.view(np.uint16) for g in sel(grads)]
            arrays = (
                ps,
                gs,
                sel(st[_MASTER]) if half else None,
                [sel(st[n]) for n in names],
                [sel(st[block_scale_name(n)]) for n in names] if lp.state_dtype == "int8" else None,
                sel(bases),
            )
            if self._element_runs:
                arrays = _cut(arrays, sel([self._element_runs.get(i) for i in run.index]), lp.block)
            p_, g_, m_, s_, sc_, b_ = arrays
            try:
                out = run.mod.lowp_step(
                    rule,
                    scalars,
                    flags,
                    p_,
                    g_,
                    m_,
                    s_,
                    sc_,
                    fmt,
                    lp.state_dtype,
                    lp.sr,
                    lp.seed,
                    run.step + 1,
                    lp.block,
                    bases=b_,
                    **amp,
                )
            except (TypeError, ValueError):
                # One native call refuses bad input before it writes, naming its own arguments
                # (``masters[0]``, ``states[0][0]``, ``scales[0][0]``): a bad state array, or a
                # grad sharing memory with one, is named as its entry (the full check raises it).
                self._lowp_check([(run, grads)])  # (check_state too)
                raise
        return out


def _cut(arrays: tuple, runs: list, block: int) -> tuple:
    """(params, grads, masters, states, scales, bases) of one native call with each param that has
    ``runs`` (``_element_runs``: pieces at block boundaries, each with its own first Philox word)
    cut into those pieces: the same elements and 8-bit blocks, each numbered as its own param."""
    if not any(runs):
        return arrays
    ps, gs, ms, ss, scs, bs = arrays
    out: tuple = ([], [], None if ms is None else [], [[] for _ in ss], None if scs is None else [[] for _ in scs], [])
    for k, pieces in enumerate(runs):
        for a, b, base in pieces or ((0, int(ps[k].size), bs[k]),):

            def cut(x, a=a, b=b):
                return x.reshape(-1)[a:b]

            out[0].append(cut(ps[k]))
            out[1].append(cut(gs[k]))
            if ms is not None:
                out[2].append(cut(ms[k]))
            for dst, src in zip(out[3], ss):
                dst.append(cut(src[k]))
            for dst, src in zip(out[4] or (), scs or ()):
                dst.append(src[k].reshape(-1)[a // block : -(-b // block)])
            out[5].append(base)
    return out
