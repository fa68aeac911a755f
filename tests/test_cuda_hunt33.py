"""CUDA paths against the CPU's for the same call, on what no other CUDA test reaches (hunt 33):

- lowp_to_half / lowp_quantize_fixed_point / lowp_quantize_block_fp with stochastic rounding and a
  Philox offset whose offset + size passes 2**64 (public: optkern.lowp.to_half, stochastic_round,
  quantize_fixed_point, quantize_block_fp): the CPU's batched words ran on into the counter's upper
  half while the GPU's per-element index wrapped to 0, so the two modules rounded with different
  words (the promise: the same bits on both). Now refused by both, before anything is written, as
  dropout and the random fills refuse it (check_philox_counter); offsets ending at 2**64 still give
  the CPU's bits, and nearest rounding, which draws nothing, takes any offset.
- the CUDA optimizer steps, adagrad_norm_, sam_perturb_ and sam_restore_ given None for grads (or
  backups): the CPU raises TypeError naming it; the CUDA module skipped the list and raised a
  RuntimeError from its launch-depth check ("ListCall: op depth does not match the lists"), or,
  for an empty params list, returned as if nothing were wrong. Now the CPU's TypeError.
- grad_norm's norm_type and clamp_'s clip_value: checked by each module in its own words (the CUDA
  module's "must be a float >= 1 or inf"); now one check (optkern/reduce_args.hpp), one message.
- lbfgs_move_ took its dtype from x, the CPU from the params: a float64 x beside float32 params was
  "params[0]: expected float64" (the CPU: "x: expected float32"), and a float64 x with no params ran,
  where the CPU refuses it. Now the params' dtype, as on the CPU. Its shape errors and
  lbfgs_push_/_direction_'s for a 2-D g now read the same in both modules (the CPU's "x: expected
  shape (8,) (all params), got size 8" for a (2, 4) x; the CUDA module's bare "g: expected a 1-D array").
- dropout_ (both modules) took an out overlapping x without being x, and a mask sharing memory with
  x or out: the result then depended on the order of the writes (the CPU's chunks, the GPU's
  threads). Now refused by one check (optkern/dropout_args.hpp) before anything is written.
- penalty_grad_ / penalty_value's out: the CUDA penalty_grad_ refused an out sharing memory with a
  param or a grad, the CPU's took it (the element became the penalty's value), and neither
  penalty_value checked it. Now one check (optkern/regularize_args.hpp) in both modules.
- the CPU named its 1-element float64 buffers (out, total_norm_buf, b_sq, counters, lr_buffer) as
  list items in aliasing errors ("out[0] shares memory with grads[0]", clip_grad_norm_'s too), the
  CUDA module as the lone arrays they are; now both name them as the CUDA module does.

Skipped without CuPy / the CUDA module / a device; tools/cuda_emu runs it on the CPU.
"""

import math

import numpy as np
import pytest

from gpu import raised, require_gpu, same_bits
from optkern import _backend, lowp

cp, _cuda = require_gpu()
_cpu = _backend.cpu
TOP = 1 << 64


def _both(fn):
    """fn(module, xp) on the CPU and on the GPU: (cpu result, gpu result as NumPy)."""
    return fn(_cpu, np), fn(_cuda, cp)


_GRID = {
    "to_half": lambda m, x, out, off, sr: m.lowp_to_half(x, out, "bfloat16", sr, 5, 7, off),
    "fixed_point": lambda m, x, out, off, sr: m.lowp_quantize_fixed_point(x, out, 8, 4, sr, 5, 7, off),
    "block_fp": lambda m, x, out, off, sr: m.lowp_quantize_block_fp(x, out, 8, 0, sr, 5, 7, off),
}


def _x(n):
    return np.linspace(-1.7, 2.3, n, dtype=np.float32)


def _out(name, xp, n):
    return xp.full(n, 3, np.uint16 if name == "to_half" else np.float32)


@pytest.mark.parametrize("name", sorted(_GRID))
@pytest.mark.parametrize("n", [2, 7, 40])
def test_stochastic_words_past_2_64_are_refused_by_both(name, n):
    call = _GRID[name]
    for off in (TOP - n + 1, TOP - 1):  # offset + n: 2**64 + 1 .. 2**64 + n - 1
        errs = []
        for mod, xp in ((_cpu, np), (_cuda, cp)):
            x, out = xp.asarray(_x(n)), _out(name, xp, n)
            errs.append(raised(lambda mod=mod, x=x, out=out, off=off: call(mod, x, out, off, True)))
            assert (_backend.to_numpy(out) == 3).all(), f"{name}: out written before the refusal"
            if name != "to_half":  # in place: x itself untouched
                y = xp.asarray(_x(n))
                errs.append(raised(lambda mod=mod, y=y, off=off: call(mod, y, y, off, True)))
                same_bits(_backend.to_numpy(y), _x(n), f"{name}: x written before the refusal")
        assert errs[0] == errs[-1] and errs[0][0] is ValueError and errs[0][1].startswith("offset:"), errs


@pytest.mark.parametrize("name", sorted(_GRID))
@pytest.mark.parametrize("n", [1, 7, 1023, 4097])
def test_stochastic_words_ending_at_2_64_match_the_cpu(name, n):
    call = _GRID[name]

    def run(mod, xp):
        out = _out(name, xp, n)
        call(mod, xp.asarray(_x(n)), out, TOP - n, True)
        return _backend.to_numpy(out)

    got_cpu, got_gpu = _both(run)
    same_bits(got_gpu, got_cpu, name)


@pytest.mark.parametrize("name", sorted(_GRID))
def test_nearest_rounding_takes_any_offset(name):
    call = _GRID[name]

    def run(mod, xp):
        out = _out(name, xp, 9)
        call(mod, xp.asarray(_x(9)), out, TOP - 1, False)
        return _backend.to_numpy(out)

    got_cpu, got_gpu = _both(run)
    same_bits(got_gpu, got_cpu, name)


@pytest.mark.parametrize(
    "fn",
    [
        lambda x, off: lowp.to_half(x, "bfloat16", rounding="stochastic", offset=off),
        lambda x, off: lowp.stochastic_round(x, "float16", offset=off),
        lambda x, off: lowp.quantize_fixed_point(x, offset=off, out=x),
        lambda x, off: lowp.quantize_block_fp(x, offset=off, out=x),
    ],
    ids=["to_half", "stochastic_round", "quantize_fixed_point", "quantize_block_fp"],
)
def test_public_wrappers_refuse_the_same_way_on_both(fn):
    errs = []
    for xp in (np, cp):
        x = xp.asarray(_x(40))
        errs.append(raised(lambda x=x: fn(x, TOP - 3)))
        same_bits(_backend.to_numpy(x), _x(40), "x written before the refusal")
    assert errs[0] == errs[1] and errs[0][1].startswith("offset:"), errs


def _none_calls(xp, mod):
    p, s, b = [xp.ones(5, np.float32)], [xp.zeros(5, np.float32)], [xp.zeros(5, np.float32)]
    out = xp.zeros(1)
    return {
        "sgd_ grads": lambda p=p: mod.sgd_(p, None, None, 0.1, 0.0, 0.0, 0.0, False, False, False, 1),
        "adam_ grads": lambda p=p, s=s, b=b: mod.adam_(
            p, None, s, b, None, 0.1, 0.9, 0.999, 1e-8, 0.0, False, False, False, 1
        ),
        "adagrad_norm_ grads": lambda p=p, out=out: mod.adagrad_norm_(p, None, out, 0.1, 0.0, False),
        "sam_perturb_ grads": lambda p=p, b=b, out=out: mod.sam_perturb_(p, None, b, 0.1, 1e-12, out),
        "sam_perturb_ backups": lambda p=p, out=out: mod.sam_perturb_(p, p, None, 0.1, 1e-12, out),
        "sam_restore_ backups": lambda p=p: mod.sam_restore_(p, None),
    }, (p, s, b, out)


@pytest.mark.parametrize("empty", [False, True], ids=["arrays", "no arrays"])
@pytest.mark.parametrize("case", sorted(_none_calls(np, _cpu)[0]))
def test_a_required_list_given_none_is_the_cpus_type_error(case, empty):
    errs = []
    for xp, mod in ((np, _cpu), (cp, _cuda)):
        calls, arrays = _none_calls(xp, mod)
        fn = calls[case]
        if empty:  # no params (then the CUDA call returned as if nothing were wrong)
            errs.append(raised(lambda fn=fn: fn(p=[])))
            continue
        errs.append(raised(fn))
        for a in arrays:
            for x in a if isinstance(a, list) else [a]:
                v = _backend.to_numpy(x)
                assert (v == v.flat[0]).all(), f"{case}: an array was written before the refusal"
    name = case.split()[1]
    assert [e[0] for e in errs] == [TypeError, TypeError], errs
    assert all(e[1].startswith(f"{name}: expected a list of arrays") for e in errs), errs


@pytest.mark.parametrize(
    "call",
    [
        lambda mod, a, out: mod.grad_norm(a, 0.5, out),
        lambda mod, a, out: mod.grad_norm(a, float("nan"), out),
        lambda mod, a, out: mod.grad_norm(a, -math.inf, out),
        lambda mod, a, out: mod.clamp_(a, -1.0),
        lambda mod, a, out: mod.clamp_(a, float("nan")),
    ],
    ids=["p=0.5", "p=nan", "p=-inf", "clip=-1", "clip=nan"],
)
def test_reduction_scalars_refused_in_the_cpus_words(call):
    errs = []
    for xp, mod in ((np, _cpu), (cp, _cuda)):
        a, out = [xp.full(5, 2.0)], xp.full(1, 9.0)
        errs.append(raised(lambda mod=mod, a=a, out=out: call(mod, a, out)))
        assert (_backend.to_numpy(a[0]) == 2.0).all() and float(out[0]) == 9.0
    assert errs[0] == errs[1], errs


@pytest.mark.parametrize("n", [0, 6], ids=["no params", "one param"])
def test_lbfgs_move_takes_the_params_dtype(n):
    errs = []
    for xp, mod in ((np, _cpu), (cp, _cuda)):
        params = [xp.ones(n, np.float32)] if n else []
        x, d = xp.full(n, 2.0), xp.full(n, 3.0)
        errs.append(raised(lambda mod=mod, params=params, x=x, d=d: mod.lbfgs_move_(params, x, d, 0.5, True)))
        assert all((_backend.to_numpy(p) == 1.0).all() for p in params) and (_backend.to_numpy(x) == 2.0).all()
    assert errs[0] == errs[1] == (TypeError, "x: expected float32, got float64"), errs


_DROPOUT_ALIAS = {
    "out shifted": lambda mod, xp, buf: mod.dropout_(buf[:4], buf[1:5], 0.5, 3, 0),
    "mask in x": lambda mod, xp, buf: mod.dropout_(buf[:4], xp.empty(4), 0.5, 3, 0, buf[:4].view(np.uint8)[:4]),
    "mask in out": lambda mod, xp, buf: mod.dropout_(xp.ones(4), buf[:4], 0.5, 3, 0, buf[:4].view(np.uint8)[8:12]),
}


@pytest.mark.parametrize("case", sorted(_DROPOUT_ALIAS))
def test_dropout_overlaps_refused_as_on_the_cpu(case):
    errs = []
    for xp, mod in ((np, _cpu), (cp, _cuda)):
        buf = xp.linspace(1.0, 2.0, 6)
        errs.append(raised(lambda mod=mod, xp=xp, buf=buf: _DROPOUT_ALIAS[case](mod, xp, buf)))
        same_bits(_backend.to_numpy(buf), np.linspace(1.0, 2.0, 6), f"{case}: written before the refusal")
    assert errs[0] == errs[1] and errs[0][0] is ValueError, errs


@pytest.mark.parametrize("n", [1, 7, 1023, 4097])
def test_dropout_in_place_still_matches_the_cpu(n):
    outs = []
    for xp, mod in ((np, _cpu), (cp, _cuda)):
        x = xp.asarray(np.linspace(-3.0, 3.0, n, dtype=np.float32))
        mask = xp.empty(n, np.uint8)
        mod.dropout_(x, x, 0.3, 11, 5, mask)
        outs.append((_backend.to_numpy(x), _backend.to_numpy(mask)))
    same_bits(outs[1][0], outs[0][0], "y")
    same_bits(outs[1][1], outs[0][1], "mask")


_PENALTY_ALIAS = {
    "grad: out in a param": lambda mod, buf, g: mod.penalty_grad_([buf[:3]], [g[:3]], 0.1, 0.1, buf[2:3]),
    "grad: out in a grad": lambda mod, buf, g: mod.penalty_grad_([buf[:3]], [g[:3]], 0.1, 0.1, g[1:2]),
    "value: out in a param": lambda mod, buf, g: mod.penalty_value([buf[:3]], 0.1, 0.1, buf[0:1]),
}


@pytest.mark.parametrize("case", sorted(_PENALTY_ALIAS))
def test_penalty_out_sharing_memory_is_refused_by_both(case):
    errs = []
    for xp, mod in ((np, _cpu), (cp, _cuda)):
        buf, g = xp.linspace(1.0, 2.0, 6), xp.linspace(-1.0, 1.0, 6)
        errs.append(raised(lambda mod=mod, buf=buf, g=g: _PENALTY_ALIAS[case](mod, buf, g)))
        same_bits(_backend.to_numpy(buf), np.linspace(1.0, 2.0, 6), f"{case}: params written")
        same_bits(_backend.to_numpy(g), np.linspace(-1.0, 1.0, 6), f"{case}: grads written")
    assert errs[0] == errs[1] and errs[0][0] is ValueError and "shares memory" in errs[0][1], errs


def test_penalty_out_beside_the_arrays_still_runs():
    got = []
    for xp, mod in ((np, _cpu), (cp, _cuda)):
        buf, g = xp.linspace(1.0, 2.0, 6), xp.linspace(-1.0, 1.0, 6)
        mod.penalty_grad_([buf[:3]], [g[:3]], 0.1, 0.1, buf[3:4])  # adjacent, not overlapping
        got.append((_backend.to_numpy(buf), _backend.to_numpy(g)))
    np.testing.assert_allclose(got[1][0], got[0][0], rtol=1e-15)
    same_bits(got[1][1], got[0][1], "grads")


_BUFFER_ALIAS = {
    "grad_norm out": lambda mod, a: mod.grad_norm([a[:4]], 2.0, a[3:4]),
    "clip_scale_ total_norm_buf": lambda mod, a: mod.clip_scale_([a[:4]], 1.0, a[3:4]),
    "all_finite out": lambda mod, a: mod.all_finite([a[:4]], a[0:1]),
    "sam_perturb_ out": lambda mod, a: mod.sam_perturb_([a[:2]], [a[2:4]], [a[4:6]], 0.1, 0.0, a[5:6]),
    "adagrad_norm_ b_sq": lambda mod, a: mod.adagrad_norm_([a[:2]], [a[2:4]], a[1:2], 0.1, 0.0, False),
    "sgd_capturable counters": lambda mod, a: mod.sgd_capturable(
        [a[:2]], [a[2:4]], None, 0.1, 0.0, 0.0, 0.0, False, False, False, 0.0, a[1:2], None
    ),
}


@pytest.mark.parametrize("case", sorted(_BUFFER_ALIAS))
def test_a_float64_buffer_sharing_memory_is_named_as_on_the_gpu(case):
    """The CPU named its 1-element float64 buffers as list items ("out[0] shares memory with
    grads[0]", through clip_grad_norm_ too); the CUDA module names them as the lone arrays they are."""
    errs = []
    for xp, mod in ((np, _cpu), (cp, _cuda)):
        a = xp.linspace(1.0, 2.0, 6)
        errs.append(raised(lambda mod=mod, a=a: _BUFFER_ALIAS[case](mod, a)))
        same_bits(_backend.to_numpy(a), np.linspace(1.0, 2.0, 6), f"{case}: written before the refusal")
    name = case.split()[1]
    assert errs[0] == errs[1] and "shares memory" in errs[0][1] and f"{name}[" not in errs[0][1], errs


_LBFGS_SHAPES = {
    "move: 2-D x": lambda mod, xp: mod.lbfgs_move_([xp.zeros(8)], xp.ones((2, 4)), xp.ones(8), 0.5, True),
    "move: 2-D d": lambda mod, xp: mod.lbfgs_move_([xp.zeros(8)], xp.ones(8), xp.ones((2, 4)), 0.5, False),
    "push: 2-D g": lambda mod, xp: mod.lbfgs_push_(
        [], [], xp.ones(8), xp.ones(8), xp.ones((2, 4)), xp.ones(8), xp.ones(8), 1.0, xp.zeros(4)
    ),
    "direction: 2-D g": lambda mod, xp: mod.lbfgs_direction_(
        [], [], [], [], xp.ones((2, 4)), 1.0, xp.ones(8), xp.zeros(2)
    ),
}


@pytest.mark.parametrize("case", sorted(_LBFGS_SHAPES))
def test_lbfgs_shape_errors_read_the_same(case):
    errs = [raised(lambda mod=mod, xp=xp: _LBFGS_SHAPES[case](mod, xp)) for xp, mod in ((np, _cpu), (cp, _cuda))]
    assert errs[0] == errs[1] and errs[0][0] is ValueError, errs
