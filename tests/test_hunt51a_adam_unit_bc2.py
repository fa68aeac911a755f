"""Adam's UnitBc2 form (rules/optim.hpp): from the step where bc2_sqrt = float32(sqrt(1 - beta2^t))
rounds to 1, the CPU step with 8-bit or bf16 states (cpp/lowp_loop.hpp) runs the rule without its
division by bc2_sqrt. The fp32 optimizer and the fp32-state step keep the division, so they are an
independent check: the master must come out bit for bit as they compute it from the decoded old
states, on both sides of the switch, with AMSGrad, AdamW, maximize, and states whose sqrt is 0, inf
or NaN."""

import math

import numpy as np
import pytest

from optkern import _cpu, functional, lowp
from q8_rule import quantize_rule

pytest.importorskip("ml_dtypes")
BLOCK = 256
LR, B1, EPS = 1e-2, 0.9, 1e-8


def bc2_sqrt(beta2, t):
    return np.float32(math.sqrt(1.0 - beta2**t))  # as Adam::at rounds it


def first_unit_step(beta2):
    t = 1
    while bc2_sqrt(beta2, t) != 1.0:
        t += 1
    return t


T_999 = first_unit_step(0.999)  # ~16,600: the first step at beta2 = 0.999 that takes the form


def bits(x):
    return np.ascontiguousarray(x).view(np.uint32)


def run_case(rng, sizes, beta2, t, amsgrad=False, decoupled=False, maximize=False, wd=0.0, special=False):
    """One 8-bit step at step t from random (quantized) states; the master vs functional.adam_."""
    K = 3 if amsgrad else 2
    ws = [rng.standard_normal(n).astype(np.float32) for n in sizes]
    ps = [lowp.to_half(w, "bfloat16", raw=True) for w in ws]
    masters = [lowp.from_half(p, "bfloat16") for p in ps]
    gs32 = [rng.standard_normal(n).astype(np.float32) * np.float32(1e-2) for n in sizes]
    if special:  # v = 0 (zero grad and states), v = inf (g^2 overflows), a NaN grad
        for g in gs32:
            g[: len(g) // 4] = 0.0
            g[len(g) // 4 : len(g) // 4 + 2] = np.float32(3e38)
            g[-1:] = np.nan
    gs = [lowp.to_half(g, "bfloat16", raw=True) for g in gs32]
    states = []
    for k in range(K):  # random old states, first moments signed, the others >= 0
        vals = [rng.standard_normal(n).astype(np.float32) * np.float32(1e-3) for n in sizes]
        if k > 0:
            vals = [np.abs(v) * np.float32(1e-2) for v in vals]
        if special:
            for v in vals:
                v[: len(v) // 4] = 0.0
        states.append([quantize_rule(v, BLOCK) for v in vals])
    codes = [[c.copy() for c, _ in st] for st in states]
    scales = [[s.copy() for _, s in st] for st in states]
    old = [[lowp.dequantize_blockwise(c, s, BLOCK) for c, s in st] for st in states]
    ref = [m.copy() for m in masters]
    g_ref = [lowp.from_half(g, "bfloat16") for g in gs]
    kw = dict(step=t, lr=LR, beta1=B1, beta2=beta2, eps=EPS, weight_decay=wd)
    kw |= dict(decoupled_weight_decay=decoupled, maximize=maximize)
    functional.adam_(ref, g_ref, old[0], old[1], old[2] if amsgrad else None, **kw)
    _cpu.lowp_step(
        "adam", [LR, B1, beta2, EPS, wd], [maximize, decoupled, False], ps, gs, masters, codes, scales,
        "bfloat16", "int8", False, 0, t, BLOCK,
    )  # fmt: skip
    for i in range(len(sizes)):
        np.testing.assert_array_equal(np.isnan(masters[i]), np.isnan(ref[i]))
        ok = ~np.isnan(ref[i])
        np.testing.assert_array_equal(bits(masters[i])[ok], bits(ref[i])[ok])  # (-0 vs +0 too)
        for k in range(K):
            c, s = quantize_rule(old[k][i], BLOCK)
            np.testing.assert_array_equal(codes[k][i], c)
            np.testing.assert_array_equal(scales[k][i], s)
    return masters, ref


SIZES = [1, 7, 255, 1023, 70_001]


@pytest.mark.parametrize(
    "beta2, t",
    [(0.0, 1), (0.5, 30), (0.999, T_999), (0.999, T_999 + 7), (0.95, 400)]
    + [(0.999, T_999 - 1), (0.999, 10), (0.5, 20)],  # (plain form: bc2_sqrt < 1)
)
def test_master_bits_equal_fp32_adam_on_both_sides_of_the_switch(beta2, t):
    assert (bc2_sqrt(beta2, t) == 1.0) == (t >= first_unit_step(beta2))
    run_case(np.random.default_rng(5100 + t), SIZES, beta2, t)


@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("decoupled, maximize, wd", [(False, False, 0.0), (True, False, 0.1), (False, True, 0.01)])
def test_unit_form_with_amsgrad_adamw_maximize(amsgrad, decoupled, maximize, wd):
    rng = np.random.default_rng(5101)
    run_case(rng, [7, 1023, 4099], 0.999, T_999 + 1, amsgrad=amsgrad, decoupled=decoupled, maximize=maximize, wd=wd)


@pytest.mark.parametrize("t", [1, 40])  # 0.5: plain at 1, the unit form at 40
def test_zero_inf_nan_second_moments(t):
    masters, ref = run_case(np.random.default_rng(5102), [7, 1023, 4099], 0.5, t, special=True)
    for m in masters:  # the cases were met: a NaN lane and finite ones
        assert np.isnan(m).any() and np.isfinite(m).any()


@pytest.mark.parametrize("beta2, t", [(0.999, T_999), (0.5, 40), (0.999, T_999 - 1)])
def test_bf16_states_master_bits_equal_the_fp32_state_step(beta2, t):
    """bf16 states (stochastic rounding) take the form too: the master equals the fp32-state step's
    (plain form) from the same state values, and each new state is that step's value rounded down
    or up to bf16 (the rounding itself: tests/test_lowp_step.py)."""
    rng = np.random.default_rng(5103)
    sizes = [1, 7, 1023, 4097]

    def bf16(x):
        return lowp.to_half(x.astype(np.float32), "bfloat16", raw=True)

    ps = [bf16(rng.standard_normal(n)) for n in sizes]
    gs = [bf16(rng.standard_normal(n) * 1e-2) for n in sizes]
    s16 = [[bf16(np.abs(rng.standard_normal(n)) * 1e-4) for n in sizes] for _ in range(2)]
    x = [LR, B1, beta2, EPS, 0.0]

    def run(states, fmt):
        masters = [lowp.from_half(p, "bfloat16") for p in ps]
        p_ = [p.copy() for p in ps]
        _cpu.lowp_step("adam", x, [False, False], p_, gs, masters, states, None, "bfloat16", fmt, False, 3, t, 256)
        return masters, states

    m_ref, s_ref = run([[lowp.from_half(s, "bfloat16") for s in sk] for sk in s16], "float32")
    m_got, s_got = run([[s.copy() for s in sk] for sk in s16], "bfloat16")
    for i in range(len(sizes)):
        np.testing.assert_array_equal(bits(m_got[i]), bits(m_ref[i]))
        for k in range(2):
            down = (bits(s_ref[k][i]) >> 16).astype(np.uint16)  # (all finite and positive)
            assert np.all((s_got[k][i] == down) | (s_got[k][i] == down + 1)), (k, i)
