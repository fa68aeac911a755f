"""A value's result does not depend on where it sits in the array.

GCC's default for gnu++17 is -ffp-contract=fast: it fused a*b + c into an fma in some places and
not in others, and differently in a loop's vectorized body than in its scalar remainder (or an
alignment prologue). GELU's float64 f' then came out up to 3 ulps apart for the same z depending
on whether z was the last element of an array or the first. The CPU module now compiles with
-ffp-contract=off (cpp/CMakeLists.txt): the rules write every fma they intend as fma_t.

Each check puts a table of values at many positions of arrays of lengths 1..67, at offsets 0, 1
and 3 into a buffer (a misaligned start moves the vector body's boundary), and asserts that every
occurrence of a value gives the same bits -- the value alone at length 1 (all scalar remainder) and
the whole table as one array (mostly vector body) included.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import optkern.optim as O
from optim_registry import OPTIMIZERS, case_id
from optkern.nn.activations import ACTIVATIONS, activation

LENGTHS = range(1, 68)
OFFSETS = (0, 1, 3)


def _layouts(m: int):
    """(table index per element, offset) for every length and offset, plus the one-element arrays
    of every value and the whole table as one array."""
    out = []
    for n in LENGTHS:
        for off in OFFSETS:
            shift = (n * 37 + off * 101) % m  # a different rotation per array: values visit positions
            out.append(((np.arange(n) + shift) % m, off))
    out += [(np.array([k]), 0) for k in range(m)]
    out.append((np.arange(m), 0))
    return out


def _placed(values: np.ndarray, idx: np.ndarray, off: int) -> np.ndarray:
    buf = np.zeros(len(idx) + off, values.dtype)
    view = buf[off:]
    view[...] = values[idx]
    return view


def _assert_invariant(layouts, results, what: str) -> None:
    """Every occurrence of table entry k carries the same bits."""
    seen: dict[int, tuple[int, int]] = {}
    for (idx, off), res in zip(layouts, results):
        bits = np.ascontiguousarray(res).view(np.dtype(f"u{res.dtype.itemsize}"))
        for pos, (k, b) in enumerate(zip(idx.tolist(), bits.tolist())):
            first = seen.setdefault(k, (int(b), len(idx)))
            assert first[0] == b, (
                f"{what}: table value {k} gives bits {b:#x} at position {pos} of a length-{len(idx)} "
                f"array at offset {off}, {first[0]:#x} elsewhere (length {first[1]})"
            )


def _activation_inputs(dtype) -> np.ndarray:
    rng = np.random.default_rng(4527)
    z = np.concatenate(
        [
            rng.uniform(-6, 6, 300),
            rng.uniform(-1, 1, 120),
            rng.choice([-1, 1], 60) * np.geomspace(1e-5, 30, 60),
            [-0.69305, 0.69305, -0.75, 0.75, 0.0, -0.0, 20.0, -20.0],
        ]
    )
    return z[:499].astype(dtype)  # 499: prime, so the rotations spread every value


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ACTIVATIONS)
def test_activations_f_d1_d2(kind, dtype):
    table = _activation_inputs(dtype)
    layouts = _layouts(len(table))
    outs = [activation(kind, _placed(table, idx, off), order=2) for idx, off in layouts]
    for order, name in enumerate(("f", "f'", "f''")):
        _assert_invariant(layouts, [o[order] for o in outs], f"{kind} {name} {np.dtype(dtype).name}")


ELEMENTWISE = [(info.name, hp) for info in OPTIMIZERS if info.name != "AdagradNorm" for hp in info.valid]


def _run_steps(make_opt, dtype, steps: int = 3):
    """Three steps of one optimizer over params laid out as _layouts; returns (layouts, params)."""
    m = 61
    rng = np.random.default_rng(61)
    p_table = rng.standard_normal(m)
    g_tables = [rng.standard_normal(m) * rng.choice([1e-3, 1.0, 30.0], m) for _ in range(steps)]
    layouts = _layouts(m)
    params = [_placed(p_table.astype(dtype), idx, off) for idx, off in layouts]
    opt = make_opt(params)
    for g in g_tables:
        opt.step([_placed(g.astype(dtype), i, o) for i, o in layouts])
    return layouts, params, opt


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,hp", ELEMENTWISE, ids=[case_id(n, hp) for n, hp in ELEMENTWISE])
def test_optimizer_steps(name, hp, dtype):
    layouts, params, _ = _run_steps(lambda ps: getattr(O, name)(ps, **hp), dtype)
    _assert_invariant(layouts, params, f"{case_id(name, hp)} {np.dtype(dtype).name}")


LOWP = ["SGD", "Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW", "NAdam"]


@pytest.mark.parametrize("name", LOWP)
def test_bf16_params_with_float32_master(name):
    """bf16 params with a float32 master, rounded to nearest even: the element-wise low-precision
    step. (bf16 states round stochastically, on Philox words keyed by the element's index among all
    params; 8-bit states are blockwise, a code depends on its block's absmax: both by design.)"""
    hp = dict(lr=0.01, momentum=0.9) if name in ("SGD", "RMSprop") else dict(lr=0.01)
    layouts, params, opt = _run_steps(
        lambda ps: getattr(O, name)(ps, **hp, master_weights=True),
        ml_dtypes.bfloat16,
    )
    masters = [opt.state[p]["master_param"] for p in params]
    _assert_invariant(layouts, masters, f"{name} bf16 master")
    _assert_invariant(layouts, params, f"{name} bf16 param")
