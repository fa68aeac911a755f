"""Determinism as a tested promise: every CPU kernel with a reduction gives bitwise identical results
for 1, 2, 3 and 7 OpenMP threads and on repeated runs (fixed blocking from the shapes only, partials
folded in a fixed order). Sizes are above the serial threshold (32K elements) so the parallel paths run.
"""

import numpy as np
import pytest

import optkern
from optkern import functional, hessian, nn, norm, optim, regularize

THREADS = (1, 2, 3, 7)


def _rng(seed=0):
    return np.random.default_rng(seed)


def _data(shape, dtype, seed=0, shift=0.0):
    return (shift + _rng(seed).standard_normal(shape)).astype(dtype)


def _norm_fwd_bwd(fwd, bwd, x):
    y, s = fwd(x)
    dy = _data(x.shape, x.dtype, seed=9)
    return (y, *[a for a in s if isinstance(a, np.ndarray)], *[g for g in bwd(dy, x, s) if g is not None])


def _clip(p):
    def run(dtype):
        gs = [_data(n, dtype, seed=i) for i, n in enumerate((100_003, 7, 65_537))]
        total = optkern.clip_grad_norm_(gs, 1.0, norm_type=p)
        return (np.float64(total), *gs)

    return run


def _adagrad_norm(dtype):
    p = _data(200_001, dtype)
    opt = optim.AdagradNorm([p], lr=0.1)
    for s in range(3):
        opt.step([_data(200_001, dtype, seed=s + 1)])
    return (p,)


def _penalty(dtype):
    ps = [_data(n, dtype, seed=i) for i, n in enumerate((150_001, 33))]
    gs = [np.zeros_like(p) for p in ps]
    v = regularize.add_penalty_grad_(ps, gs, l1=1e-3, l2=1e-2, return_value=True)
    return (np.float64(regularize.penalty(ps, l1=1e-3, l2=1e-2)), np.float64(v), *gs)


def _lanczos(dtype):
    d = _data(100_003, dtype, seed=3)
    op = hessian.from_hvp(lambda v: d * v, d.size, dtype=dtype)
    alpha, beta = hessian.lanczos(op, 6, seed=1)
    return alpha, beta


def _xent(dtype):
    logits = _data((4001, 37), dtype)
    labels = _rng(1).integers(0, 37, 4001)
    loss, grad = nn.softmax_cross_entropy_grad(logits, labels, label_smoothing=0.1)
    return np.asarray(loss), grad


def _mlp_hvp(dtype):
    m = nn.MLP([16, 64, 10], norm="batch", dtype=dtype)
    p = m.init_params(seed=0)
    x = _data((2048, 16), dtype)
    y = _rng(2).integers(0, 10, 2048)
    loss, g = m.loss_and_grad(p, x, y)
    return np.asarray(loss), g, m.hvp(p, x, y, _data(p.size, dtype, seed=4))


def _adam_functional(dtype):
    p, g = _data(300_001, dtype), _data(300_001, dtype, seed=1)
    m, v = np.zeros_like(p), np.zeros_like(p)
    functional.adam_([p], [g], [m], [v], step=1, lr=1e-3)
    return p, m, v


CASES = {
    "batch_norm (N, C)": lambda dt: _norm_fwd_bwd(
        lambda x: norm.batch_norm(x),
        lambda dy, x, s: norm.batch_norm_backward(dy, x, None, s),
        _data((20_000, 7), dt, shift=3.0),
    ),
    "batch_norm (N, C, S)": lambda dt: _norm_fwd_bwd(
        lambda x: norm.batch_norm(x), lambda dy, x, s: norm.batch_norm_backward(dy, x, None, s), _data((64, 5, 300), dt)
    ),
    "layer_norm": lambda dt: _norm_fwd_bwd(
        lambda x: norm.layer_norm(x, 257),
        lambda dy, x, s: norm.layer_norm_backward(dy, x, None, s),
        _data((300, 257), dt),
    ),
    "layer_norm long rows": lambda dt: _norm_fwd_bwd(
        lambda x: norm.layer_norm(x, 20_001),
        lambda dy, x, s: norm.layer_norm_backward(dy, x, None, s),
        _data((5, 20_001), dt),
    ),
    "rms_norm": lambda dt: _norm_fwd_bwd(
        lambda x: norm.rms_norm(x, 129), lambda dy, x, s: norm.rms_norm_backward(dy, x, None, s), _data((700, 129), dt)
    ),
    "group_norm": lambda dt: _norm_fwd_bwd(
        lambda x: norm.group_norm(x, 3),
        lambda dy, x, s: norm.group_norm_backward(dy, x, None, s),
        _data((33, 6, 250), dt),
    ),
    "instance_norm": lambda dt: _norm_fwd_bwd(
        lambda x: norm.instance_norm(x),
        lambda dy, x, s: norm.instance_norm_backward(dy, x, None, s),
        _data((17, 9, 301), dt),
    ),
    "weight_norm": lambda dt: _norm_fwd_bwd(
        lambda v: norm.weight_norm(v, np.ones(37, dt)),
        lambda dw, v, s: norm.weight_norm_backward(dw, v, np.ones(37, dt), s),
        _data((37, 3001), dt),
    ),
    "clip_grad_norm_ p=2": _clip(2.0),
    "clip_grad_norm_ p=1": _clip(1.0),
    "clip_grad_norm_ p=3": _clip(3.0),
    "clip_grad_norm_ p=inf": _clip("inf"),
    "AdagradNorm": _adagrad_norm,
    "penalty": _penalty,
    "lanczos": _lanczos,
    "softmax cross-entropy": _xent,
    "MLP loss_and_grad / hvp": _mlp_hvp,
    "adam_": _adam_functional,
}


@pytest.fixture(autouse=True)
def _restore_threads():
    before = optkern.get_num_threads()
    yield
    optkern.set_num_threads(before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", list(CASES))
def test_bitwise_equal_across_thread_counts_and_runs(case, dtype):
    results = {}
    for n in THREADS:
        optkern.set_num_threads(n)
        results[n] = [np.array(a, copy=True) for a in CASES[case](dtype)]
    again = [np.array(a, copy=True) for a in CASES[case](dtype)]  # a repeated run (7 threads)
    ref = results[1]
    for n, got in [*results.items(), ("repeat", again)]:
        assert len(got) == len(ref)
        for i, (a, b) in enumerate(zip(got, ref)):
            assert a.dtype == b.dtype and a.shape == b.shape
            assert a.tobytes() == b.tobytes(), f"{case}: output {i} differs between 1 and {n} threads"
