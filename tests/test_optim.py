"""optkern.optim against the independent NumPy references (tests/reference.py) and torch.optim."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import optkern.optim as O
import reference as R
from optim_registry import BY_NAME, OPTIMIZERS, case_id
from optim_registry import CASES as REGISTRY_CASES

STEPS = 20
# Mixed sizes in one list: odd lengths, a 2-D array, an empty one, one above the
# serial threshold so the OpenMP path runs.
SHAPES = [(1,), (7,), (1000,), (100003,), (3, 5), (0,)]
# float32 drift checks need three runs each; a smaller long array keeps them quick.
SHAPES32 = [(1,), (7,), (1000,), (20011,), (3, 5), (0,)]

# every registered variant with a per-array reference (AdagradNorm has its own test below)
CASES = [(n, hp) for n, hp in REGISTRY_CASES if BY_NAME[n].reference is not None]
IDS = [case_id(n, hp) for n, hp in CASES]


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


@pytest.mark.parametrize("info", OPTIMIZERS, ids=[i.name for i in OPTIMIZERS])
def test_every_registered_optimizer_has_its_native_functions(info):
    """A missing native function fails here (never turns into a skip elsewhere)."""
    from optkern import _backend

    assert callable(getattr(_backend.cpu, info.native + "_"))
    if info.capturable:
        assert callable(getattr(_backend.cpu, info.native + "_capturable"))
    assert info.functional is not None or info.name == "AdagradNorm"


# ---- torch.optim cross-checks -------------------------------------------------------------

TORCH_CASES = [(n, hp) for n, hp in CASES if BY_NAME[n].in_torch(hp)]


@pytest.mark.parametrize("name,hp", TORCH_CASES, ids=[case_id(n, hp) for n, hp in TORCH_CASES])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_torch(name, hp, dtype):
    torch = pytest.importorskip("torch")
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
    @hypothesis.given(
        sizes=st.lists(st.integers(0, 3000), min_size=1, max_size=6),
        lr=st.floats(1e-4, 0.5),
        beta1=st.floats(0.0, 0.99),
        wd=st.sampled_from([0.0, 0.1]),
        amsgrad=st.booleans(),
        maximize=st.booleans(),
        seed=st.integers(0, 2**31),
    )
    def check(sizes, lr, beta1, wd, amsgrad, maximize, seed):
        hp = dict(lr=lr, betas=(beta1, 0.999), weight_decay=wd, amsgrad=amsgrad, maximize=maximize)
        params, grad_seq = _data(seed, np.float64, shapes=[(n,) for n in sizes], steps=4)
        got, _ = _train("Adam", hp, params, grad_seq)
        want, _ = R.run("Adam", params, grad_seq, hp)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-12)

    check()
