"""optkern.optim against the independent NumPy references (tests/reference.py) and torch.optim."""
from __future__ import annotations

import zlib

import numpy as np
import pytest

import optkern.optim as O
import reference as R

STEPS = 20
# Mixed sizes in one list: odd lengths, a 2-D array, an empty one, one above the
# serial threshold so the OpenMP path runs.
SHAPES = [(1,), (7,), (1000,), (100003,), (3, 5), (0,)]
# float32 drift checks need three runs each; a smaller long array keeps them quick.
SHAPES32 = [(1,), (7,), (1000,), (20011,), (3, 5), (0,)]

CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.8, dampening=0.3, maximize=True)),
    ("SGD", dict(lr=0.05, momentum=0.9, momentum_form="textbook", weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, momentum_form="textbook")),
    ("Adagrad", dict(lr=0.1)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01, weight_decay=0.01, initial_accumulator_value=0.1, eps=1e-8)),
    ("Adagrad", dict(lr=0.05, maximize=True)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, centered=True)),
    ("RMSprop", dict(lr=0.01, momentum=0.9, weight_decay=0.01)),
    ("RMSprop", dict(lr=0.01, alpha=0.9, centered=True, momentum=0.5, maximize=True)),
    ("RMSprop", dict(lr=0.01, momentum=0.9, nesterov=True)),
    ("RMSprop", dict(lr=0.01, centered=True, momentum=0.7, nesterov=True, weight_decay=0.1)),
    ("Adadelta", dict()),
    ("Adadelta", dict(lr=0.5, rho=0.8, eps=1e-5, weight_decay=0.01, maximize=True)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.01)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), maximize=True)),
    ("Adam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
    ("AdamW", dict()),
    ("AdamW", dict(lr=0.01, amsgrad=True, weight_decay=0.1)),
    ("NAdam", dict()),
    ("NAdam", dict(lr=0.01, weight_decay=0.01, betas=(0.85, 0.995))),
    ("NAdam", dict(lr=0.01, weight_decay=0.1, momentum_decay=0.01, decoupled_weight_decay=True)),
]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in hp.items()) or 'defaults'}" for n, hp in CASES]
# Options PyTorch does not have.
NOT_IN_TORCH = {"momentum_form", "nesterov:RMSprop"}


def _seed(*key):
    """A fixed seed per case (random data, reproducible across runs)."""
    return zlib.crc32(repr(key).encode())


def _data(seed, dtype, shapes=SHAPES, steps=STEPS):
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(steps)]
    return params, grads


def _train(name, hp, params, grad_seq):
    params = [p.copy() for p in params]
    opt = getattr(O, name)(params, **hp)
    for grads in grad_seq:
        opt.step(grads)
    return params, opt


@pytest.mark.parametrize("name,hp", CASES, ids=IDS)
def test_float64_matches_reference(name, hp):
    params, grad_seq = _data(_seed(name, hp), np.float64)
    got, _ = _train(name, hp, params, grad_seq)
    want, _ = R.run(name, params, grad_seq, hp)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name,hp", CASES, ids=IDS)
def test_float32_matches_float32_reference(name, hp):
    params, grad_seq = _data(_seed(name, hp, 32), np.float32, shapes=SHAPES32)
    got, _ = _train(name, hp, params, grad_seq)
    want32, _ = R.run(name, params, grad_seq, hp)
    want64, _ = R.run(name, [p.astype(np.float64) for p in params], grad_seq, hp)
    for g, w32, w64 in zip(got, want32, want64):
        assert g.dtype == np.float32
        if g.size == 0:
            continue
        # About as close to the float64 truth as NumPy's own float32 evaluation of the formulas.
        err, ref_err = np.abs(g - w64).max(), np.abs(w32 - w64).max()
        assert err <= 4 * ref_err + 1e-6, (err, ref_err)


def test_param_groups_use_their_own_hyper_parameters():
    params, grad_seq = _data(1, np.float64, shapes=[(10,), (20,), (5,)])
    ps = [p.copy() for p in params]
    opt = O.Adam([{"params": ps[:2], "lr": 0.1}, {"params": ps[2:], "betas": (0.5, 0.9)}], lr=0.01)
    for grads in grad_seq:
        opt.step(grads)
    w0, _ = R.run("Adam", params[:2], [g[:2] for g in grad_seq], dict(lr=0.1))
    w1, _ = R.run("Adam", params[2:], [g[2:] for g in grad_seq], dict(lr=0.01, betas=(0.5, 0.9)))
    for g, w in zip(ps, w0 + w1):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)


def test_hyper_parameters_changed_between_steps():
    """A schedule edits param_groups; each step uses the current value."""
    params, grad_seq = _data(2, np.float64, shapes=[(50,)], steps=6)
    ps = [p.copy() for p in params]
    want = [p.copy() for p in params]
    opt = O.SGD(ps, lr=0.1, momentum=0.9)
    state = {}
    for t, grads in enumerate(grad_seq, start=1):
        lr = 0.1 / t
        opt.param_groups[0]["lr"] = lr
        opt.step(grads)
        R.sgd_step(want[0], grads[0], state, t, lr=lr, momentum=0.9)
    np.testing.assert_allclose(ps[0], want[0], rtol=1e-12)


def test_textbook_momentum_differs_once_lr_changes():
    params, grad_seq = _data(3, np.float64, shapes=[(30,)], steps=5)
    runs = {}
    for form in ("pytorch", "textbook"):
        ps = [p.copy() for p in params]
        opt = O.SGD(ps, lr=0.1, momentum=0.9, momentum_form=form)
        for t, grads in enumerate(grad_seq):
            opt.param_groups[0]["lr"] = 0.1 if t < 3 else 0.01
            opt.step(grads)
            if t == 2:
                runs[form + "@3"] = ps[0].copy()
        runs[form] = ps[0]
    np.testing.assert_allclose(runs["pytorch@3"], runs["textbook@3"], rtol=1e-12)
    assert not np.allclose(runs["pytorch"], runs["textbook"], rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kw", [dict(lr=0.1), dict(lr=0.5, b0=1.0, weight_decay=0.01, maximize=True)])
def test_adagrad_norm_matches_reference(dtype, kw):
    params, grad_seq = _data(4, dtype)
    got, opt = _train("AdagradNorm", kw, params, grad_seq)
    want, b_sq = R.adagrad_norm_run(params, grad_seq, **kw)
    rtol = 1e-10 if dtype == np.float64 else 2e-5
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol)
    assert opt.state_dict()["state"][0]["b_sq"] == pytest.approx(b_sq, rel=1e-12 if dtype == np.float64 else 1e-6)


def test_state_names_follow_pytorch():
    p = [np.ones(3)]
    g = [np.ones(3)]
    expect = {
        O.SGD(p, momentum=0.9): {"momentum_buffer"},
        O.Adagrad(p): {"step", "sum"},
        O.RMSprop(p, momentum=0.9, centered=True): {"step", "square_avg", "momentum_buffer", "grad_avg"},
        O.Adadelta(p): {"step", "square_avg", "acc_delta"},
        O.Adam(p, amsgrad=True): {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"},
        O.NAdam(p): {"step", "mu_product", "exp_avg", "exp_avg_sq"},
        O.AdagradNorm(p): {"step", "b_sq"},
    }
    for opt, names in expect.items():
        assert opt.state_dict()["state"] == {}
        opt.step(g)
        sd = opt.state_dict()
        assert set(sd["state"][0]) == names, type(opt).__name__
        assert sd["param_groups"][0]["params"] == [0]
    assert O.SGD(p).state_dict()["param_groups"][0]["momentum"] == 0.0


def test_step_overhead_is_small():
    """100 tiny arrays: the Python + native overhead of one step (loose bound; bench/ measures it)."""
    import time
    params = [np.ones(4, np.float32) for _ in range(100)]
    grads = [np.ones(4, np.float32) for _ in range(100)]
    opt = O.Adam(params)
    opt.step(grads)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(20):
            opt.step(grads)
        best = min(best, (time.perf_counter() - t0) / 20)
    assert best < 2e-3, f"{best * 1e6:.0f} us per step"


# ---- torch.optim cross-checks -------------------------------------------------------------

def _torch_case(name, hp):
    if "momentum_form" in hp or (name == "RMSprop" and hp.get("nesterov")):
        return None
    return name, hp


@pytest.mark.parametrize("name,hp", CASES, ids=IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_torch(name, hp, dtype):
    torch = pytest.importorskip("torch")
    if _torch_case(name, hp) is None:
        pytest.skip("option not in torch.optim")
    params, grad_seq = _data(_seed(name, hp, 7), dtype, shapes=[(1,), (7,), (1000,), (100003,), (3, 5)])
    got, _ = _train(name, hp, params, grad_seq)
    tp = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    topt = getattr(torch.optim, name)(tp, **hp)
    for grads in grad_seq:
        for t, g in zip(tp, grads):
            t.grad = torch.tensor(g)
        topt.step()
    rtol, atol = (2e-5, 2e-6) if dtype == np.float32 else (1e-10, 1e-12)
    if name == "NAdam" and dtype == np.float64:
        rtol, atol = 1e-7, 1e-9  # torch keeps mu_product in a float32 tensor
    for g, t in zip(got, tp):
        np.testing.assert_allclose(g, t.detach().numpy(), rtol=rtol, atol=atol)


@pytest.mark.parametrize("name,hp", [("SGD", dict(lr=0.1, momentum=0.9)), ("Adam", dict(lr=0.01, amsgrad=True))])
def test_chunk_boundaries(name, hp):
    """Arrays just below, at and above the 64K-element chunk size, and spanning several chunks."""
    shapes = [(65535,), (65536,), (65537,), (3 * 65536 + 5,), (2,)]
    params, grad_seq = _data(_seed(name, "chunks"), np.float64, shapes=shapes, steps=3)
    got, _ = _train(name, hp, params, grad_seq)
    want, _ = R.run(name, params, grad_seq, hp)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)


def test_random_lists_and_hyper_parameters():
    """A few random layouts and Adam/RMSprop settings (hypothesis, kept small)."""
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies

    @hypothesis.settings(max_examples=15, deadline=None, derandomize=True)
    @hypothesis.given(sizes=st.lists(st.integers(0, 3000), min_size=1, max_size=6),
                      lr=st.floats(1e-4, 0.5), beta1=st.floats(0.0, 0.99), wd=st.sampled_from([0.0, 0.1]),
                      amsgrad=st.booleans(), maximize=st.booleans(), seed=st.integers(0, 2**31))
    def check(sizes, lr, beta1, wd, amsgrad, maximize, seed):
        hp = dict(lr=lr, betas=(beta1, 0.999), weight_decay=wd, amsgrad=amsgrad, maximize=maximize)
        params, grad_seq = _data(seed, np.float64, shapes=[(n,) for n in sizes], steps=4)
        got, _ = _train("Adam", hp, params, grad_seq)
        want, _ = R.run("Adam", params, grad_seq, hp)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-12)

    check()
