"""float32 parity with torch.optim: optkern rounds like torch.

Every scalar derived from hyper-parameters (1 - beta, bias corrections, step sizes, ...)
is computed in double and rounded once to float32, as torch does, and the rules follow
torch's operation order (addcdiv's (value t1) / t2, NAdam's float32 mu_product).

Three measures:
- Every optimizer and variant steps bitwise like torch.optim's for-loop implementation with an
  IEEE sqrt put in for torch's (tests/torch_ieee_sqrt.py): torch's CPU sqrt is not correctly
  rounded, optkern's is, and that is the one rounding the two do not share.
- After one step from fresh state, the moments (exp_avg, exp_avg_sq, square_avg, grad_avg)
  are bitwise torch's own for-loop's: they are then a single rounding of (1 - beta) g^2
  etc., and a (1 - beta) rounded differently shows as 3 to 100 ulps.
- After 20 steps against torch's own sqrt (the issue's parity measure), optkern's relative L2
  distance from torch's default (for-loop) float32 implementation, per array (params and every
  state array), is at most 4x torch's own distance from itself: its for-loop from its fused (or
  foreach) implementation, or from itself with an IEEE sqrt, whichever is larger.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import optkern.optim as O
from optim_registry import OPTIMIZERS
from torch_ieee_sqrt import ieee_sqrt

torch = pytest.importorskip("torch")

STEPS = 20
SHAPES = [(1000,), (7,), (3, 5), (1,)]
# torch's CPU implementations besides the for-loop: fused where it has one, else foreach
FUSED_ON_CPU = {"SGD", "Adagrad", "Adam", "AdamW"}

CASES = [(info.name, hp) for info in OPTIMIZERS if info.torch is not None for hp in info.valid if info.in_torch(hp)]


def _torch_run(name, hp, params, grads, **impl):
    tp = [torch.tensor(p.copy()) for p in params]
    opt = getattr(torch.optim, name)(tp, **hp, **impl)
    for gs in grads:
        for t, g in zip(tp, gs):
            t.grad = torch.tensor(g)
        opt.step()
    return [t.numpy() for t in tp], [opt.state[t] for t in tp]


def _err(a, b) -> float:
    """||a - b|| / ||b|| (0 for equal arrays)."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    n = float(np.linalg.norm(b))
    d = float(np.linalg.norm(a - b))
    return d / n if n > 0 else d


def _arrays(params, states, names):
    """{(param index, name): array} for params and the named state entries."""
    out = {(i, "param"): p for i, p in enumerate(params)}
    for i, s in enumerate(states):
        for n in names:
            if n in s:
                v = s[n]
                out[i, n] = v.numpy() if hasattr(v, "numpy") else np.asarray(v)
    return out


@pytest.mark.parametrize("name,hp", CASES, ids=[f"{n}-{hp}" for n, hp in CASES])
def test_float32_rounds_like_torch(name, hp):
    rng = np.random.default_rng(zlib.crc32(repr((name, hp)).encode()))
    params = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    grads = [[rng.standard_normal(s).astype(np.float32) for s in SHAPES] for _ in range(STEPS)]
    impl = "fused" if name in FUSED_ON_CPU else "foreach"
    loop_p, loop_s = _torch_run(name, hp, params, grads, foreach=False)
    fast_p, fast_s = _torch_run(name, hp, params, grads, **{impl: True})
    with ieee_sqrt():
        ieee_p, ieee_s = _torch_run(name, hp, params, grads, foreach=False)
    ours = [p.copy() for p in params]
    opt = getattr(O, name)(ours, **hp)
    for gs in grads:
        opt.step(gs)
    names = type(opt)._state_names
    sd = opt.state_dict()["state"]
    want = _arrays(loop_p, loop_s, names)
    fast = _arrays(fast_p, fast_s, names)
    ieee = _arrays(ieee_p, ieee_s, names)
    got = _arrays(ours, [sd.get(i, {}) for i in range(len(ours))], names)
    assert got.keys() == want.keys()
    for key, w in want.items():
        torch_gap = max(_err(fast[key], w), _err(ieee[key], w))
        assert _err(got[key], w) <= 4 * torch_gap, (
            f"{key}: optkern {_err(got[key], w):.3g} from torch's for-loop, torch's own gap {torch_gap:.3g}"
        )


# The moments after one step are one rounding of (1 - beta) g^2 etc. when the gradient is
# the plain +-g (no L2 decay folded in: torch and optkern may fuse that multiply-add differently).
MOMENTS = ("exp_avg", "exp_avg_sq", "square_avg", "grad_avg")
FIRST = [
    (n, hp)
    for n, hp in CASES
    if n != "SGD"
    and n != "Adagrad"
    and (not hp.get("weight_decay", 0) or n == "AdamW" or hp.get("decoupled_weight_decay"))
]


@pytest.mark.parametrize("name,hp", FIRST, ids=[f"{n}-{hp}" for n, hp in FIRST])
def test_first_step_moments_within_one_ulp_of_torch(name, hp):
    rng = np.random.default_rng(zlib.crc32(repr((name, hp, 1)).encode()))
    params = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    grads = [[rng.standard_normal(s).astype(np.float32) for s in SHAPES]]
    loop_p, loop_s = _torch_run(name, hp, params, grads, foreach=False)
    ours = [p.copy() for p in params]
    opt = getattr(O, name)(ours, **hp)
    opt.step(grads[0])
    names = type(opt)._state_names
    sd = opt.state_dict()["state"]
    want = _arrays(loop_p, loop_s, names)
    got = _arrays(ours, [sd.get(i, {}) for i in range(len(ours))], names)
    checked = [key for key in want if key[1] in MOMENTS]
    assert checked
    for key in checked:
        np.testing.assert_array_max_ulp(got[key], want[key], maxulp=0)


@pytest.mark.parametrize("name,hp", CASES, ids=[f"{n}-{hp}" for n, hp in CASES])
def test_bitwise_torch_for_loop_with_ieee_sqrt(name, hp):
    # Pins every rounding of every rule: the operation order, the fused multiply-adds, the
    # step scalars. A 4099-element array runs the vector loops (and their tails) as well.
    rng = np.random.default_rng(zlib.crc32(repr((name, hp, "ieee")).encode()))
    shapes = SHAPES + [(4099,)]
    params = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [[rng.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(STEPS)]
    with ieee_sqrt():
        want_p, want_s = _torch_run(name, hp, params, grads, foreach=False)
    ours = [p.copy() for p in params]
    opt = getattr(O, name)(ours, **hp)
    for gs in grads:
        opt.step(gs)
    names = type(opt)._state_names
    sd = opt.state_dict()["state"]
    want = _arrays(want_p, want_s, names)
    got = _arrays(ours, [sd.get(i, {}) for i in range(len(ours))], names)
    assert got.keys() == want.keys()
    for key, w in want.items():
        np.testing.assert_array_equal(got[key], w, err_msg=str(key))


# SGD's momentum buffer, buf.mul_(momentum).add_(grad, alpha=1 - dampening), is one explicit fma
# over the rounded product (rules::Sgd): torch's vector kernels compute the same, so the params
# and buffers are bitwise torch's after several steps (before, GCC contracted either product of
# momentum * buf + (1 - dampening) * grad, and its AVX2 and AVX-512 clones chose differently).
# L2 weight decay, grad.add(param, alpha=weight_decay), likewise one explicit fma (rules::effective_grad):
# written g + wd * p, GCC contracted g * (+-1) instead and differed from torch in ~3e-5 of the elements.
SGD_BITWISE = [
    dict(lr=0.05, momentum=0.9),
    dict(lr=0.05, momentum=0.8, dampening=0.3, maximize=True),
    dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
    dict(lr=0.05, momentum=0.9, weight_decay=0.01, maximize=True),
]


@pytest.mark.parametrize("hp", SGD_BITWISE, ids=[str(hp) for hp in SGD_BITWISE])
def test_sgd_momentum_bitwise_torch(hp):
    rng = np.random.default_rng(7)
    shapes = [(1,), (7,), (1023,), (3, 5), (70001,)]
    params = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [[rng.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(5)]
    loop_p, loop_s = _torch_run("SGD", hp, params, grads, foreach=False)
    ours = [p.copy() for p in params]
    opt = O.SGD(ours, **hp)
    for gs in grads:
        opt.step(gs)
    sd = opt.state_dict()["state"]
    for i, (got, want) in enumerate(zip(ours, loop_p)):
        np.testing.assert_array_equal(got, want, err_msg=f"param {i}")
        np.testing.assert_array_equal(sd[i]["momentum_buffer"], loop_s[i]["momentum_buffer"].numpy())
