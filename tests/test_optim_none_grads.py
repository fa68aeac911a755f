"""optkern.optim's step with None grads (torch's "skip params whose .grad is None"), opt.state, closure."""

import numpy as np
import pytest

import optkern.optim as O
from optim_registry import BY_NAME, CASES, IDS

SHAPES = [(7,), (3, 5), (1,), (11,), (2, 3)]
GROUP_OF = [0, 0, 0, 1, 1]  # two groups: the second with its own lr
#: which grads are None at each step (indices): partial, none, a whole group, the first, mixed
PATTERN = [{1}, set(), {0, 3}, {3, 4}, set(), {2}, {0, 1, 2, 3, 4}, {1, 4}]


def _params(rng, dtype=np.float64):
    return [rng.standard_normal(s).astype(dtype) for s in SHAPES]


def _grads(rng, step, dtype=np.float64):
    return [None if i in PATTERN[step] else rng.standard_normal(s).astype(dtype) for i, s in enumerate(SHAPES)]


def _groups(params, hp, cls_lr):
    first = [p for p, g in zip(params, GROUP_OF) if g == 0]
    second = [p for p, g in zip(params, GROUP_OF) if g == 1]
    return [{"params": first}, {"params": second, "lr": cls_lr * 0.5}]


def _lr(name, hp):
    return hp.get("lr", {"Adadelta": 1.0, "NAdam": 2e-3}.get(name, 1e-3))


@pytest.mark.parametrize(
    "name, hp",
    [c for c in CASES if BY_NAME[c[0]].in_torch(c[1])],
    ids=[i for c, i in zip(CASES, IDS) if BY_NAME[c[0]].in_torch(c[1])],
)
def test_none_grads_match_torch(name, hp):
    torch = pytest.importorskip("torch")
    info = BY_NAME[name]
    dt = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # torch keeps step counters and NAdam's mu_product in it
    try:
        _compare_with_torch(torch, info, name, hp)
    finally:
        torch.set_default_dtype(dt)


def _compare_with_torch(torch, info, name, hp):
    rng = np.random.default_rng(3)
    params = _params(rng)
    tparams = [torch.tensor(p.copy()) for p in params]
    lr = _lr(name, hp)
    kw = {k: v for k, v in hp.items() if k not in dict(info.not_in_torch)}
    topt = getattr(torch.optim, info.torch)(_groups(tparams, kw, lr), **{**kw, "foreach": False})
    opt = info.cls(_groups(params, hp, lr), **hp)
    for step in range(len(PATTERN)):
        grads = _grads(rng, step)
        before = {
            i: {k: np.array(v, copy=True) for k, v in opt.state[params[i]].items()}
            for i in PATTERN[step]
            if params[i] in opt.state
        }
        skipped = {i: params[i].copy() for i in PATTERN[step]}
        for t, g in zip(tparams, grads):
            t.grad = None if g is None else torch.tensor(g)
        topt.step()
        opt.step(grads)
        for i in PATTERN[step]:  # untouched: the param, its state arrays and step count
            assert np.array_equal(params[i], skipped[i])
            if i in before:
                assert set(opt.state[params[i]]) == set(before[i])
                for k, v in before[i].items():
                    np.testing.assert_array_equal(np.asarray(opt.state[params[i]][k]), v)
        for i, (p, t) in enumerate(zip(params, tparams)):
            np.testing.assert_allclose(p, t.numpy(), rtol=1e-12, atol=1e-14, err_msg=f"step {step} param {i}")
            tstate = topt.state[t]
            if not tstate or (name == "Adagrad" and float(tstate["step"]) == 0):
                assert p not in opt.state  # never stepped (torch's Adagrad makes its state up front)
                continue
            mine = opt.state[p]
            for k, v in tstate.items():
                if k == "step":
                    assert mine["step"] == int(float(v)), f"step {step} param {i}"
                elif k == "mu_product":
                    np.testing.assert_allclose(mine[k], float(v), rtol=1e-14)
                elif v is not None:
                    np.testing.assert_allclose(mine[k], v.numpy(), rtol=1e-12, atol=1e-14, err_msg=k)


@pytest.mark.parametrize(
    "name, hp",
    [c for c in CASES if c[0] != "AdagradNorm"],
    ids=[i for c, i in zip(CASES, IDS) if c[0] != "AdagradNorm"],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_none_grads_equal_one_optimizer_per_param(name, hp, dtype):
    # every per-element optimizer (optkern-only variants too): skipping a param is the same as that
    # param having an optimizer of its own that steps only when it has a grad -- bitwise
    info = BY_NAME[name]
    rng = np.random.default_rng(4)
    params = _params(rng, dtype)
    alone = [p.copy() for p in params]
    lr = _lr(name, hp)
    opt = info.cls(_groups(params, hp, lr), **hp)
    singles = [info.cls([{"params": [a], "lr": lr * (0.5 if GROUP_OF[i] else 1.0)}], **hp) for i, a in enumerate(alone)]
    for step in range(len(PATTERN)):
        grads = _grads(rng, step, dtype)
        opt.step(grads)
        for s, g in zip(singles, grads):
            if g is not None:
                s.step([g])
        for i, (p, a) in enumerate(zip(params, alone)):
            assert np.array_equal(p, a), f"step {step} param {i}"
    assert len(opt._runs[0]) + len(opt._runs[1]) >= 2  # the pattern did split runs


def _adagrad_norm_reference(params, grads_per_step, lr, b0, wd, maximize, groups):
    """float64 AdaGrad-Norm over the live params of each group: b^2 += ||g'||^2, p -= lr / b g'."""
    params = [p.astype(np.float64) for p in params]
    b_sq = {g: b0 * b0 for g in set(groups)}
    for grads in grads_per_step:
        for grp in b_sq:
            live = [i for i, g in enumerate(grads) if g is not None and groups[i] == grp]
            eff = {i: (-1.0 if maximize else 1.0) * grads[i] + wd * params[i] for i in live}
            b_sq[grp] += sum(float(np.sum(e * e)) for e in eff.values())
            for i in live:
                params[i] = params[i] - lr[grp] / np.sqrt(b_sq[grp]) * eff[i]
    return params


@pytest.mark.parametrize("hp", BY_NAME["AdagradNorm"].valid)
def test_none_grads_adagrad_norm_counts_live_params_only(hp):
    rng = np.random.default_rng(5)
    params = _params(rng)
    start = [p.copy() for p in params]
    lr = hp["lr"]
    opt = O.AdagradNorm(_groups(params, hp, lr), **hp)
    steps = [_grads(rng, s) for s in range(len(PATTERN))]
    for grads in steps:
        opt.step(grads)
    ref = _adagrad_norm_reference(
        start,
        steps,
        {0: lr, 1: lr * 0.5},
        hp.get("b0", 1e-2),
        hp.get("weight_decay", 0.0),
        hp.get("maximize", False),
        GROUP_OF,
    )
    for p, r in zip(params, ref):
        np.testing.assert_allclose(p, r, rtol=1e-12)


def test_bad_grad_next_to_none_changes_nothing():
    rng = np.random.default_rng(6)
    params = _params(rng)
    opt = O.Adam(params, lr=0.1)
    opt.step(_grads(rng, 4))
    before = [p.copy() for p in params]
    grads = _grads(rng, 0)
    grads[3] = grads[3].astype(np.float32)
    with pytest.raises(TypeError, match=r"grads\[3\]: expected float64, got float32"):
        opt.step(grads)
    grads = _grads(rng, 0)
    grads[2] = np.zeros(2)
    with pytest.raises(ValueError, match=r"grads\[2\]"):
        opt.step(grads)
    assert all(np.array_equal(p, b) for p, b in zip(params, before))
    assert all(opt.state[p]["step"] == 1 for p in params)


def test_all_none_is_a_no_op():
    rng = np.random.default_rng(7)
    params = _params(rng)
    opt = O.AdamW(params)
    before = [p.copy() for p in params]
    opt.step([None] * len(params))
    assert all(np.array_equal(p, b) for p, b in zip(params, before))
    assert len(opt.state) == 0
    with pytest.raises(ValueError, match=r"grads: expected 5 arrays"):
        opt.step([None] * 4)


def test_state_mapping_like_torch():
    rng = np.random.default_rng(8)
    params = _params(rng)
    opt = O.Adam(params, lr=0.1)
    assert len(opt.state) == 0 and params[0] not in opt.state
    opt.step(_grads(rng, 0))  # param 1 skipped
    assert len(opt.state) == 4 and params[1] not in opt.state and params[0] in opt.state
    st = opt.state[params[0]]
    assert st["step"] == 1 and set(st) == {"step", "exp_avg", "exp_avg_sq"}
    assert st["exp_avg"] is opt.state_dict()["state"][0]["exp_avg"]  # the live arrays
    assert [id(p) for p in opt.state] == [id(p) for i, p in enumerate(params) if i != 1]
    with pytest.raises(KeyError):
        opt.state[params[1]]
    with pytest.raises(KeyError):
        opt.state[np.zeros(3)]
    with pytest.raises(TypeError):
        opt.state[params[0]] = {}  # read-only view


def test_closure_returns_loss():
    rng = np.random.default_rng(9)
    params = _params(rng)
    twin = [p.copy() for p in params]
    grads = _grads(rng, 1)
    a, b = O.SGD(params, lr=0.1, momentum=0.9), O.SGD(twin, lr=0.1, momentum=0.9)
    assert a.step(closure=lambda: (1.5, grads)) == 1.5
    assert b.step(grads) is None
    assert all(np.array_equal(p, t) for p, t in zip(params, twin))
    with pytest.raises(TypeError, match="closure: expected it to return"):
        a.step(closure=lambda: 1.0)
    with pytest.raises(TypeError, match="grads or closure, not both"):
        a.step(grads, closure=lambda: (0.0, grads))
    with pytest.raises(TypeError, match="^grads: missing"):
        a.step()


def test_load_state_dict_after_none_steps_round_trips():
    rng = np.random.default_rng(10)
    params = _params(rng)
    opt = O.NAdam(_groups(params, {}, 2e-3))
    for s in range(4):
        opt.step(_grads(rng, s))
    twin_params = [p.copy() for p in params]
    twin = O.NAdam(_groups(twin_params, {}, 2e-3))
    twin.load_state_dict(opt.state_dict())
    for s in range(4, len(PATTERN)):
        g = _grads(rng, s)
        opt.step(g)
        twin.step(g)
    assert all(np.array_equal(p, t) for p, t in zip(params, twin_params))
