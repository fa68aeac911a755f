"""optim.LBFGS against torch.optim.LBFGS (iterate by iterate, float64), its native kernels against
float64 references, state_dict round trips and bad input."""

import warnings

import numpy as np
import pytest

import exact_rounding
from optkern import _backend, get_num_threads, nn, optim, set_num_threads
from optkern.datasets import load_digits

torch = pytest.importorskip("torch")


# ---- problems -----------------------------------------------------------------------------


def rosen(x):
    a, b = x[:-1], x[1:]
    return float(np.sum(100.0 * (b - a * a) ** 2 + (1.0 - a) ** 2))


def rosen_grad(x):
    a, b = x[:-1], x[1:]
    g = np.zeros_like(x)
    g[:-1] += -400.0 * a * (b - a * a) - 2.0 * (1.0 - a)
    g[1:] += 200.0 * (b - a * a)
    return g


def run_pair(fg, x0, steps, **hp):
    """Both optimizers from x0 on fg(x) -> (loss, grad); returns the points each closure saw and the states."""
    xt = torch.tensor(x0.copy(), requires_grad=True)
    topt = torch.optim.LBFGS([xt], **hp)
    seen_t, seen_o = [], []

    def tclosure():
        p = xt.detach().numpy().copy()
        seen_t.append(p)
        loss, g = fg(p)
        xt.grad = torch.tensor(g)
        return torch.tensor(loss, dtype=torch.float64)

    x = x0.copy()
    opt = optim.LBFGS([x], **hp)

    def oclosure():
        seen_o.append(x.copy())
        return fg(x)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(steps):
            lt = float(topt.step(tclosure))
            lo = opt.step(oclosure)
            assert abs(lt - lo) <= 1e-10 * max(1.0, abs(lt))
    return seen_t, seen_o, topt.state[xt], opt.state, xt.detach().numpy(), x


def max_rel(a_list, b_list):
    assert len(a_list) == len(b_list)
    return max(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-300) for a, b in zip(a_list, b_list))


@pytest.mark.parametrize("line_search_fn,lr", [(None, 2e-3), ("strong_wolfe", 1.0)])
def test_rosenbrock_matches_torch(line_search_fn, lr):
    fg = lambda x: (rosen(x), rosen_grad(x))
    st, so, t_state, o_state, xt, x = run_pair(
        fg, np.array([-1.2, 1.0]), 5, lr=lr, max_iter=10, line_search_fn=line_search_fn
    )
    assert len(st) == len(so) >= 40  # every evaluation point, line-search trials included
    assert max_rel(st, so) <= 1e-10
    assert np.max(np.abs(xt - x)) <= 1e-10 * np.max(np.abs(xt))
    assert (t_state["n_iter"], t_state["func_evals"]) == (o_state["n_iter"], o_state["func_evals"])


def test_rosenbrock_stopping_criteria_match_torch():
    """Converges and stops (tolerance_grad / tolerance_change / max_eval) where torch stops."""
    fg = lambda x: (rosen(x), rosen_grad(x))
    st, so, t_state, o_state, _, x = run_pair(
        fg, np.array([-1.2, 1.0]), 6, max_iter=20, max_eval=23, line_search_fn="strong_wolfe"
    )
    assert rosen(x) < 1e-8
    assert len(st) == len(so) and max_rel(st, so) <= 1e-10
    assert (t_state["n_iter"], t_state["func_evals"]) == (o_state["n_iter"], o_state["func_evals"])


def test_rosenbrock_small_history_agrees_as_well_as_torch_with_itself():
    """In Rosenbrock's curved valley with history 3, iterates amplify rounding: torch started one ulp
    apart drifts by ~1e-7. optkern may differ from torch by no more than 100x that."""
    fg = lambda x: (rosen(x), rosen_grad(x))
    x0 = np.array([-1.2, 1.0, -0.5, 0.8, 1.3, -0.7, 0.3])
    hp = {
        "max_iter": 40,
        "history_size": 3,
        "line_search_fn": "strong_wolfe",
        "tolerance_grad": 0,
        "tolerance_change": 0,
    }
    st, so, *_ = run_pair(fg, x0, 1, **hp)
    st2, *_ = run_pair(fg, x0 * (1 + 2.0**-52), 1, **hp)
    k = min(len(st), len(so), len(st2))
    assert k >= 40
    assert max_rel(st[:k], so[:k]) <= max(1e-10, 100 * max_rel(st[:k], st2[:k]))


@pytest.fixture(scope="module")
def digits_problem():
    d = load_digits(np.float64)
    x, y = d.x[:256], d.y[:256]
    model = nn.MLP([64, 16, 10], activation="tanh", dtype=np.float64)
    return model, x, y


@pytest.mark.parametrize("line_search_fn,lr", [(None, 0.5), ("strong_wolfe", 1.0)])
def test_digits_mlp_50_iterations_match_torch(digits_problem, line_search_fn, lr):
    model, x, y = digits_problem
    fg = lambda p: model.loss_and_grad(p, x, y)
    st, so, t_state, o_state, _, p = run_pair(
        fg,
        model.init_params(seed=0),
        1,
        lr=lr,
        max_iter=50,
        history_size=10,
        line_search_fn=line_search_fn,
        tolerance_change=0.0,
    )
    assert t_state["n_iter"] == o_state["n_iter"] == 50 or t_state["func_evals"] == o_state["func_evals"]
    assert max_rel(st, so) <= 1e-10
    assert model.loss(p, x, y) < 0.5 * model.loss(model.init_params(seed=0), x, y)


def test_float32_follows_torch(digits_problem):
    _, x, y = digits_problem
    m32 = nn.MLP([64, 16, 10], activation="tanh", dtype=np.float32)
    x32 = x.astype(np.float32)
    fg = lambda p: m32.loss_and_grad(p, x32, y)
    st, so, *_ = run_pair(fg, m32.init_params(seed=0), 1, lr=0.5, max_iter=5, history_size=5)
    assert max_rel(st, so) <= 1e-4


def test_several_params_equal_one_flat_buffer():
    rng = np.random.default_rng(3)
    x0 = rng.uniform(-1.5, 1.5, 9)
    flat = x0.copy()
    parts = [x0[:4].copy(), x0[4:].reshape(5, 1).copy()]
    o1 = optim.LBFGS([flat], max_iter=15, line_search_fn="strong_wolfe", history_size=4)
    o2 = optim.LBFGS(parts, max_iter=15, line_search_fn="strong_wolfe", history_size=4)
    for _ in range(3):
        o1.step(lambda: (rosen(flat), rosen_grad(flat)))

        def c2():
            v = np.concatenate([p.ravel() for p in parts])
            g = rosen_grad(v)
            return rosen(v), [g[:4].copy(), g[4:].reshape(5, 1).copy()]

        o2.step(c2)
    np.testing.assert_array_equal(np.concatenate([p.ravel() for p in parts]), flat)


# ---- state dicts ------------------------------------------------------------------------------


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_state_dict_round_trip_is_exact(line_search_fn):
    x0 = np.array([-1.2, 1.0, 0.3, -0.4])
    a = x0.copy()
    oa = optim.LBFGS(
        [a], lr=0.01 if line_search_fn is None else 1, max_iter=4, history_size=3, line_search_fn=line_search_fn
    )
    ca = lambda: (rosen(a), rosen_grad(a))
    for _ in range(3):
        oa.step(ca)
    sd = oa.state_dict()
    b = a.copy()
    ob = optim.LBFGS([b], lr=5, max_iter=1)  # hyper-parameters come from the state dict
    ob.load_state_dict(sd)
    assert ob.param_groups[0]["max_iter"] == 4
    for _ in range(3):
        oa.step(ca)
        ob.step(lambda: (rosen(b), rosen_grad(b)))
    np.testing.assert_array_equal(a, b)
    assert oa.state == ob.state


def test_loads_a_torch_state_dict():
    """torch's layout (old_dirs = y, old_stps = s, ro, H_diag, ...): continue a torch run."""
    fg = lambda x: (rosen(x), rosen_grad(x))
    x0 = np.array([-1.2, 1.0, 0.5])
    hp = {"max_iter": 6, "history_size": 4, "line_search_fn": "strong_wolfe"}
    xt = torch.tensor(x0.copy(), requires_grad=True)
    topt = torch.optim.LBFGS([xt], **hp)

    def tc():
        loss, g = fg(xt.detach().numpy())
        xt.grad = torch.tensor(g)
        return torch.tensor(loss, dtype=torch.float64)

    topt.step(tc)
    tsd = topt.state_dict()
    st = {
        k: (
            v.numpy().copy()
            if torch.is_tensor(v) and v.dim() > 0
            else float(v)
            if torch.is_tensor(v)
            else [
                u.numpy().copy() if torch.is_tensor(u) and u.dim() else (float(u) if u is not None else None) for u in v
            ]
            if isinstance(v, list)
            else v
        )
        for k, v in tsd["state"][0].items()
    }
    x = xt.detach().numpy().copy()
    opt = optim.LBFGS([x], **hp)
    opt.load_state_dict({"state": {0: st}, "param_groups": tsd["param_groups"]})
    topt.step(tc)
    opt.step(lambda: fg(x))
    np.testing.assert_allclose(x, xt.detach().numpy(), rtol=1e-10, atol=1e-12)


# ---- kernels ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,k", [(1, 0), (7, 3), (1023, 5), (40000, 1), (70001, 4), (70001, 7)])
def test_push_and_direction_kernels_match_reference(n, k, dtype):
    rng = np.random.default_rng(n + k)
    S = [rng.standard_normal(n).astype(dtype) for _ in range(k)]
    Y = [rng.standard_normal(n).astype(dtype) for _ in range(k)]
    g, pg, d = (rng.standard_normal(n).astype(dtype) for _ in range(3))
    g0, pg0 = g.copy(), pg.copy()
    sn, yn = np.empty(n, dtype), np.empty(n, dtype)
    out = np.full(5 * k + 4, np.nan)
    t = 0.37
    _backend.cpu.lbfgs_push_(S, Y, sn, yn, g, pg, d, t, out)
    np.testing.assert_array_equal(yn, g0 - pg0)
    np.testing.assert_array_equal(sn, (dtype(t) * d).astype(dtype))
    np.testing.assert_array_equal(pg, g0)
    f = lambda a: a.astype(np.float64)
    pairs = []
    for j in range(k):
        pairs += [(sn, Y[j]), (yn, S[j]), (yn, Y[j]), (g, S[j]), (g, Y[j])]
    pairs += [(yn, sn), (yn, yn), (g, sn), (g, yn)]
    want = np.array([f(a) @ f(b) for a, b in pairs])
    size = np.array([np.abs(f(a)) @ np.abs(f(b)) for a, b in pairs])
    # sums in the array type within 32768-element sub-blocks (W = 32 / itemsize lanes: each lane adds
    # 32768 / W terms, then a log2(W) tree), float64 across sub-blocks: the standard bound of that many adds
    lanes = 32 // np.dtype(dtype).itemsize
    adds = 32768 // lanes + int(np.log2(lanes)) + 1
    assert np.all(np.abs(out - want) <= adds * np.finfo(dtype).eps * size + 1e-300)
    cs, cy = rng.standard_normal(k), rng.standard_normal(k)
    dd, o2 = np.empty(n, dtype), np.empty(2)
    _backend.cpu.lbfgs_direction_(S, Y, list(cs), list(cy), g, -0.8, dd, o2)
    ref = -0.8 * f(g) + sum(cy[j] * f(Y[j]) + cs[j] * f(S[j]) for j in range(k))
    # accumulated in the array type (like torch's axpys): error within (2k + 1) eps of the terms' sizes
    scale = 0.8 * np.abs(f(g)) + sum(abs(cy[j]) * np.abs(f(Y[j])) + abs(cs[j]) * np.abs(f(S[j])) for j in range(k))
    assert np.all(np.abs(dd - ref) <= (2 * k + 2) * np.finfo(dtype).eps * scale)
    if n <= 1023:  # and exactly in the rule's order: g_scale g, then per row two fmas, oldest first
        want_d = dtype(-0.8) * g
        for j in range(k):
            want_d = exact_rounding.fma(dtype(cs[j]), S[j], exact_rounding.fma(dtype(cy[j]), Y[j], want_d))
        np.testing.assert_array_equal(dd, want_d)
    np.testing.assert_allclose(o2, [f(g) @ f(dd), np.max(np.abs(dd))], rtol=1e-12)


@pytest.mark.parametrize("misaligned", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,k", [(1, 0), (7, 3), (1023, 2), (70001, 5)])
def test_push_and_direction_streamed_equal_plain_stores(n, k, dtype, misaligned):
    """The push writes s_new, y_new and the direction d with streamed stores above a size
    (cpp/stream_store.hpp; 16 MiB): with the threshold at 0 every output is streamed, bit for bit
    what plain stores write, also into outputs that start off a 16-byte boundary (the unaligned
    ends are stored plainly)."""
    rng = np.random.default_rng(n * 7 + k)
    S = [rng.standard_normal(n).astype(dtype) for _ in range(k)]
    Y = [rng.standard_normal(n).astype(dtype) for _ in range(k)]
    g, pg0, d = (rng.standard_normal(n).astype(dtype) for _ in range(3))
    runs = []
    for threshold in (1 << 62, 0):
        old = _backend.cpu._set_stream_bytes(threshold)
        try:
            base = np.full(2 * n + 2, np.nan, dtype)  # s_new, y_new inside one buffer, maybe misaligned
            o = 1 if misaligned else 0
            sn, yn = base[o : o + n], base[o + n + 1 : o + 2 * n + 1]
            pg, out = pg0.copy(), np.empty(5 * k + 4)
            _backend.cpu.lbfgs_push_(S, Y, sn, yn, g, pg, d, 0.37, out)
            dd, o2 = np.full(n + 1, np.nan, dtype)[o : o + n], np.empty(2)  # the direction's d, streamed too
            _backend.cpu.lbfgs_direction_(S, Y, [0.3] * k, [-0.6] * k, g, -0.8, dd, o2)
            runs.append((base.tobytes(), pg.tobytes(), out.tobytes(), dd.tobytes(), o2.tobytes()))
        finally:
            _backend.cpu._set_stream_bytes(old)
    assert runs[0] == runs[1]
    np.testing.assert_array_equal(yn, g - pg0)


def test_two_loop_coefficients_equal_the_vector_recursion():
    """The coefficient-space recursion (rules/second_order.hpp) against torch's two loops in float64."""
    rng = np.random.default_rng(0)
    n, k = 50, 6
    S = rng.standard_normal((k, n))
    Y = S @ np.diag(rng.uniform(0.5, 2.0, n)) + 0.01 * rng.standard_normal((k, n))  # s.y > 0
    g = rng.standard_normal(n)
    ro = 1.0 / np.einsum("ij,ij->i", S, Y)
    h = 0.7
    q, al = -g.copy(), np.zeros(k)
    for i in range(k - 1, -1, -1):
        al[i] = S[i] @ q * ro[i]
        q -= al[i] * Y[i]
    r = h * q
    for i in range(k):
        r += (al[i] - Y[i] @ r * ro[i]) * S[i]
    a, cs, cy, gs = _backend.cpu.lbfgs_two_loop(k, S @ Y.T, Y @ Y.T, S @ g, Y @ g, ro, h)
    np.testing.assert_allclose(a, al, rtol=1e-12)
    np.testing.assert_allclose(gs * g + np.asarray(cy) @ Y + np.asarray(cs) @ S, r, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("save", [True, False])
def test_move_rounds_once_like_torchs_add_with_alpha(dtype, save):
    """p = x + t d is one fma (torch's add_(d, alpha=t)): the exactly rounded value, bit for bit,
    over params of odd sizes that cut x and d at unaligned offsets (past one 65536 chunk)."""
    rng = np.random.default_rng(17)
    sizes = [0, 1, 7, 1023, 65536 + 3]
    hp = [rng.standard_normal(n).astype(dtype) for n in sizes]
    n = sum(sizes)
    x, d = rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)
    start = np.concatenate(hp) if save else x.copy()
    ps = [a.copy() for a in hp]
    t = 0.3718
    _backend.cpu.lbfgs_move_(ps, x, d, t, save)
    got = np.concatenate(ps)
    sl = np.r_[0:1100, n - 600 : n]  # the exact reference is slow: both ends of the long param
    np.testing.assert_array_equal(got[sl], exact_rounding.fma(dtype(t), d[sl], start[sl]))
    want = torch.from_numpy(start).add(torch.from_numpy(d), alpha=t).numpy()
    np.testing.assert_array_equal(got, want)
    if save:
        np.testing.assert_array_equal(x, start)


def test_kernels_are_bitwise_independent_of_threads():
    rng = np.random.default_rng(1)
    n, k = 300001, 3
    S = [rng.standard_normal(n).astype(np.float32) for _ in range(k)]
    Y = [rng.standard_normal(n).astype(np.float32) for _ in range(k)]
    g, d = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    results = []
    old = get_num_threads()
    try:
        for threads in (1, 2):
            set_num_threads(threads)
            out, o2 = np.empty(5 * k + 4), np.empty(2)
            pg = np.zeros(n, np.float32)
            _backend.cpu.lbfgs_push_(S, Y, np.empty(n, np.float32), np.empty(n, np.float32), g, pg, d, 0.5, out)
            dd = np.empty(n, np.float32)
            _backend.cpu.lbfgs_direction_(S, Y, [0.1] * k, [-0.2] * k, g, -1.0, dd, o2)
            results.append((out.tobytes(), o2.tobytes(), dd.tobytes()))
    finally:
        set_num_threads(old)
    assert results[0] == results[1]


# ---- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ret,exc,match",
    [
        (lambda x: 1.0, TypeError, "closure: expected it to return"),
        (lambda x: (float("nan"), rosen_grad(x)), ValueError, "non-finite loss"),
        (lambda x: (rosen(x), rosen_grad(x)[:2]), ValueError, r"closure: grads\[0\]: expected shape"),
        (lambda x: (rosen(x), rosen_grad(x).astype(np.float32)), TypeError, r"closure: grads\[0\]: expected float64"),
        (lambda x: (rosen(x), [rosen_grad(x), rosen_grad(x)]), ValueError, r"closure: grads: expected 1 array "),
        (lambda x: (rosen(x), rosen_grad(x) * np.inf), ValueError, "NaN or Inf"),
        (lambda x: ("abc", rosen_grad(x)), TypeError, "loss must be a real scalar"),
    ],
)
def test_bad_closure_raises_and_writes_nothing(ret, exc, match):
    x = np.array([-1.2, 1.0, 0.4])
    x0 = x.copy()
    opt = optim.LBFGS([x], line_search_fn="strong_wolfe")
    with pytest.raises(exc, match=match):
        opt.step(lambda: ret(x))
    np.testing.assert_array_equal(x, x0)
    assert opt.state == {"func_evals": 0, "n_iter": 0}


def test_nan_mid_line_search_restores_the_iterate():
    x = np.array([-1.2, 1.0])
    calls = [0]

    def closure():
        calls[0] += 1
        return (rosen(x) if calls[0] < 3 else float("nan")), rosen_grad(x)

    opt = optim.LBFGS([x], line_search_fn="strong_wolfe")
    with pytest.raises(ValueError, match="non-finite loss"):
        opt.step(closure)
    np.testing.assert_array_equal(x, opt._x)  # the iterate the failing trial started from
    assert np.isfinite(x).all()


@pytest.mark.parametrize(
    "kw,exc,match",
    [
        ({"lr": -1.0}, ValueError, "lr"),
        ({"history_size": 0}, ValueError, "history_size"),
        ({"max_iter": 0}, ValueError, "max_iter"),
        ({"line_search_fn": "armijo"}, ValueError, "line_search_fn"),
        ({"tolerance_grad": float("nan")}, ValueError, "tolerance_grad"),
        ({"max_eval": 1.5}, TypeError, "max_eval"),
    ],
)
def test_bad_hyper_parameters(kw, exc, match):
    with pytest.raises(exc, match=match):
        optim.LBFGS([np.zeros(3)], **kw)


def test_bad_params_and_kernel_arguments():
    with pytest.raises(TypeError, match=r"params\[0\]"):
        optim.LBFGS([np.zeros(3, np.int32)])
    with pytest.raises(ValueError, match="parameter groups"):  # (one group is taken, as torch takes it)
        optim.LBFGS([{"params": [np.zeros(3)]}, {"params": [np.zeros(2)]}])
    ro = np.zeros(3)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        optim.LBFGS([ro])
    g = np.ones(5)
    with pytest.raises(ValueError, match="shares memory"):  # prev_g aliasing g
        _backend.cpu.lbfgs_push_([], [], np.empty(5), np.empty(5), g, g, np.ones(5), 1.0, np.empty(4))
    with pytest.raises(ValueError, match=r"S\[0\]: expected 5 elements"):
        _backend.cpu.lbfgs_direction_([np.ones(4)], [np.ones(5)], [1.0], [1.0], g, -1.0, np.empty(5), np.empty(2))
    with pytest.raises(ValueError, match="coef_s, coef_y"):
        _backend.cpu.lbfgs_direction_([np.ones(5)], [np.ones(5)], [1.0, 2.0], [1.0], g, -1.0, np.empty(5), np.empty(2))
    with pytest.raises(ValueError, match="t: must be finite"):
        _backend.cpu.lbfgs_move_([np.ones(5)], np.ones(5), np.ones(5), float("inf"), False)
    with pytest.raises(TypeError, match="closure"):
        optim.LBFGS([np.zeros(3)]).step(None)
