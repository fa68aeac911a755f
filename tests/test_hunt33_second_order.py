"""Session 33's hunt in the second-order optimizers (L-BFGS, Newton-CG, SAM): each test failed
before its fix.

- L-BFGS: a closure raising at a trial point of the run's first iteration (Ctrl-C, or any error)
  put the params back but left the iteration counted: the repeat ran as a later iteration, with
  the step ``lr`` instead of the first iteration's ``min(1, 1 / |g|_1) lr`` -- a step ``|g|_1``
  times longer than the one interrupted (9.4 off the uninterrupted iterate here).
- NewtonCG: ``reuse_trial_gradient`` went through ``bool()`` ("no" and None were choices, an
  array raised NumPy's ambiguous-truth error naming nothing); a preconditioner diagonal of complex
  numbers was refused as cg's ``precond_diag``, one of strings by a bare NumPy ufunc error.
- SAM: ``adaptive`` set to a non-bool between steps reached the native call, whose TypeError named
  none of SAM's arguments (``rho`` was checked there, ``adaptive`` not).
"""

from __future__ import annotations

import numpy as np
import pytest

from optkern import hessian, optim

torch = pytest.importorskip("torch")


def _problem(n: int = 5):
    rng = np.random.default_rng(3)
    a = np.linspace(1.0, 30.0, n)
    x0 = 3.0 * rng.standard_normal(n)

    def f(x):
        return float(0.5 * x @ (a * x) + 0.05 * np.sum(x**4)), a * x + 0.2 * x**3

    return f, x0


def _lbfgs_run(line_search_fn, steps: int, interrupt_at: int | None = None):
    """The params after each completed step of an optkern L-BFGS (max_iter = 1) whose closure raises
    KeyboardInterrupt at call ``interrupt_at`` (that step then repeated), and the n_iter counts."""
    f, x0 = _problem()
    x = x0.copy()
    opt = optim.LBFGS([x], max_iter=1, max_eval=40, line_search_fn=line_search_fn)
    calls = [0]

    def closure():
        calls[0] += 1
        if calls[0] == interrupt_at:
            raise KeyboardInterrupt
        return f(x)

    ends, iters = [], []
    while len(ends) < steps:
        try:
            opt.step(closure)
        except KeyboardInterrupt:
            assert np.array_equal(x, ends[-1] if ends else x0)  # (back at the iterate)
            continue
        ends.append(x.copy())
        iters.append(opt.state["n_iter"])
    return ends, iters


def _torch_run(line_search_fn, steps: int):
    f, x0 = _problem()
    p = torch.tensor(x0, requires_grad=True)
    opt = torch.optim.LBFGS([p], max_iter=1, max_eval=40, line_search_fn=line_search_fn)

    def closure():
        loss, g = f(p.detach().numpy())
        p.grad = torch.from_numpy(g)
        return torch.tensor(loss, dtype=torch.float64)

    ends = []
    for _ in range(steps):
        opt.step(closure)
        ends.append(p.detach().numpy().copy())
    return ends


@pytest.mark.parametrize(
    "line_search_fn, interrupt_at",
    [("strong_wolfe", 2), ("strong_wolfe", 5)],
    ids=["first-iteration", "later-iteration"],
)
def test_lbfgs_trial_point_interrupted_then_repeated_follows_torch(line_search_fn, interrupt_at):
    """A Ctrl-C at a trial point, then the step called again: the run goes on as torch's
    uninterrupted run (the interrupted iteration repeated, the first one as a first one). (Without
    a line search at max_iter = 1 no call is at a trial point: the next test.)"""
    steps = 4
    ref = _torch_run(line_search_fn, steps)
    got, iters = _lbfgs_run(line_search_fn, steps, interrupt_at)
    plain, plain_iters = _lbfgs_run(line_search_fn, steps)
    assert iters == plain_iters == list(range(1, steps + 1))  # (the interrupted iteration not counted)
    for a, b in zip(got, ref):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_lbfgs_first_iteration_error_then_repeated_takes_torchs_first_step(line_search_fn):
    """max_iter > 1: the first iteration's trial point raising (a ValueError: a NaN loss), the
    step then repeated with a good closure, takes torch's first step."""
    f, x0 = _problem()
    x = x0.copy()
    opt = optim.LBFGS([x], max_iter=3, line_search_fn=line_search_fn)
    calls = [0]

    def bad_then_good():
        calls[0] += 1
        return (float("nan"), x.copy()) if calls[0] == 2 else f(x)

    with pytest.raises(ValueError, match="^closure: returned a non-finite loss"):
        opt.step(bad_then_good)
    assert np.array_equal(x, x0) and opt.state["n_iter"] == 0
    opt.step(bad_then_good)
    p = torch.tensor(x0, requires_grad=True)
    ref = torch.optim.LBFGS([p], max_iter=3, line_search_fn=line_search_fn)

    def closure():
        loss, g = f(p.detach().numpy())
        p.grad = torch.from_numpy(g)
        return torch.tensor(loss, dtype=torch.float64)

    ref.step(closure)
    np.testing.assert_allclose(x, p.detach().numpy(), rtol=1e-12, atol=1e-12)
    assert opt.state["n_iter"] == ref.state[p]["n_iter"]


def _newton(**kw):
    a = np.array([1.0, 2.0, 3.0])
    x = np.array([1.0, -2.0, 0.5])
    opt = optim.NewtonCG([x], hessian.from_hvp(lambda v: a * v, 3, np.float64), **kw)
    return x, opt, (lambda: (float(0.5 * x @ (a * x)), a * x))


@pytest.mark.parametrize("value", ["no", None, 1, np.array([True, False])])
def test_newton_cg_reuse_trial_gradient_must_be_a_bool(value):
    with pytest.raises(TypeError, match="^reuse_trial_gradient: expected a bool"):
        _newton(reuse_trial_gradient=value)


@pytest.mark.parametrize(
    "diag",
    [np.array([1j, 1.0, 1.0]), np.array(["a", "b", "c"]), np.array([object(), 1.0, 1.0], dtype=object)],
    ids=["complex", "str", "object"],
)
@pytest.mark.parametrize("as_callable", [False, True])
def test_newton_cg_preconditioner_of_non_real_numbers_named(diag, as_callable):
    if not as_callable:  # (a fixed one: refused where it is given, hunt40i; assigned later, at the step)
        with pytest.raises(TypeError, match="^preconditioner: expected real numbers"):
            _newton(preconditioner=diag)
    x, opt, closure = _newton(preconditioner=None)
    opt.preconditioner = (lambda: diag) if as_callable else diag
    x0 = x.copy()
    calls = []
    with pytest.raises(TypeError, match="^preconditioner: expected real numbers"):
        opt.step(lambda: calls.append(1) or closure())
    assert np.array_equal(x, x0) and not calls and opt.num_grad_evals == opt.num_hvps == 0
    assert opt.param_groups[0]["damping"] == 1.0


@pytest.mark.parametrize("value", ["yes", None, np.array([True, False])])
def test_sam_adaptive_set_between_steps_named(value):
    x = np.array([1.0, -2.0, 3.0])
    sam = optim.SAM(optim.SGD([x], lr=0.1, momentum=0.9), rho=0.05)
    sam.step(lambda: (float(x @ x), 2 * x))
    x0, state0 = x.copy(), sam.state_dict()
    sam.adaptive = value
    with pytest.raises(TypeError, match="^adaptive: expected a bool"):
        sam.step(lambda: (float(x @ x), 2 * x))
    assert np.array_equal(x, x0) and not sam._perturbed
    sam.adaptive = False
    assert sam.state_dict()["base"]["state"][0]["momentum_buffer"].tolist() == (
        state0["base"]["state"][0]["momentum_buffer"].tolist()
    )


def test_torch_lbfgs_first_iteration_interrupted_then_repeated_follows_torch():
    """optkern.torch.LBFGS (the same inner step): a Ctrl-C in the first line search's first trial,
    the step repeated, gives torch's uninterrupted step."""
    import optkern.torch as ot

    f, x0 = _problem()
    params = [torch.tensor(x0, requires_grad=True) for _ in range(2)]
    opts = [
        cls([p], max_iter=4, line_search_fn="strong_wolfe") for cls, p in zip((ot.LBFGS, torch.optim.LBFGS), params)
    ]
    calls = [0]

    def closure_of(p, count: bool):
        def closure():
            if count:
                calls[0] += 1
                if calls[0] == 2:
                    raise KeyboardInterrupt
            loss, g = f(p.detach().numpy())
            p.grad = torch.from_numpy(g)
            return torch.tensor(loss, dtype=torch.float64)

        return closure

    with pytest.raises(KeyboardInterrupt):
        opts[0].step(closure_of(params[0], True))
    assert np.array_equal(params[0].detach().numpy(), x0)
    opts[0].step(closure_of(params[0], True))
    opts[1].step(closure_of(params[1], False))
    np.testing.assert_allclose(params[0].detach().numpy(), params[1].detach().numpy(), rtol=1e-12, atol=1e-12)
    assert opts[0].state[params[0]]["n_iter"] == opts[1].state[params[1]]["n_iter"]


def _lbfgs_made(x):
    return optim.LBFGS([x], line_search_fn="strong_wolfe")


def _newton_made(x):
    return optim.NewtonCG([x], hessian.from_hvp(lambda v: 2.0 * v, x.size, x.dtype))


@pytest.mark.parametrize("make", [_lbfgs_made, _newton_made], ids=["LBFGS", "NewtonCG"])
@pytest.mark.parametrize(
    "new, exc, match",
    [
        (np.ones(4), ValueError, r"^param_groups\[0\]\['params'\]: hold 4 elements, the optimizer's state 3"),
        (np.ones(2), ValueError, r"^param_groups\[0\]\['params'\]: hold 2 elements, the optimizer's state 3"),
        (np.ones(3, np.float32), TypeError, r"^param_groups\[0\]\['params'\]\[0\]: expected float64, got float32"),
        ([1.0, 2.0, 3.0], TypeError, r"^param_groups\[0\]\['params'\]\[0\]: expected an array, got list"),
    ],
    ids=["larger", "smaller", "float32", "list"],
)
def test_param_replaced_between_steps_named_before_the_closure(make, new, exc, match):
    """A param replaced in param_groups[0]['params'] by one of another size or dtype: the step
    names it before calling the closure (LBFGS named its history ``S[0]`` after the closure ran;
    NewtonCG raised a bare NumPy broadcast error, or took a float32 param into its float64 state)."""
    x = np.array([1.0, -2.0, 0.5])
    opt = make(x)
    opt.step(lambda: (float(x @ x), 2 * x))
    y = new.copy()
    opt.param_groups[0]["params"][0] = y
    before = np.array(y, copy=True)
    calls = []
    with pytest.raises(exc, match=match):
        opt.step(lambda: calls.append(1) or (float(np.dot(y, y)), 2 * np.asarray(y)))
    assert not calls and np.array_equal(np.asarray(y), before)


def test_lbfgs_huge_history_size_checkpoint_and_torch_step():
    """history_size = 2**40 (a cap: only the pairs stored are allocated): state_dict() padded
    torch's ``al`` list to 2**40 entries (MemoryError), and optkern.torch.LBFGS, which shows that
    state after every step, raised MemoryError with its params already moved. The checkpoint, without
    ``al``, continues in torch.optim.LBFGS (torch makes its own) as in optkern."""
    import optkern.torch as ot

    f, x0 = _problem()
    x = x0.copy()
    opt = optim.LBFGS([x], history_size=2**40, max_iter=3)
    opt.step(lambda: f(x))
    sd = opt.state_dict()
    assert "al" not in sd["state"][0] and len(sd["state"][0]["old_dirs"]) >= 1
    p = torch.tensor(x.copy(), requires_grad=True)
    # (torch's own step allocates history_size slots: its run here holds 50; with fewer pairs stored
    # the iterates do not depend on history_size)
    ref = torch.optim.LBFGS([p], history_size=50, max_iter=3)

    def tensors(v):
        return (
            [tensors(a) for a in v] if isinstance(v, list) else torch.from_numpy(v) if isinstance(v, np.ndarray) else v
        )

    entry = {k: tensors(v) for k, v in sd["state"][0].items() if not k.startswith("gram_")}
    ref.load_state_dict({"state": {0: entry}, "param_groups": [dict(sd["param_groups"][0], history_size=50)]})

    def closure():
        loss, g = f(p.detach().numpy())
        p.grad = torch.from_numpy(g)
        return torch.tensor(loss, dtype=torch.float64)

    ref.step(closure)
    opt.step(lambda: f(x))
    np.testing.assert_allclose(x, p.detach().numpy(), rtol=1e-12, atol=1e-12)

    q = torch.tensor(x0, requires_grad=True)
    topt = ot.LBFGS([q], history_size=2**40, max_iter=3)

    def tclosure():
        topt.zero_grad()
        loss = (q * q).sum() + q.sum()
        loss.backward()
        return loss

    topt.step(tclosure)
    assert topt.state[q]["n_iter"] >= 2 and "al" not in topt.state[q]
    np.testing.assert_allclose(q.detach().numpy(), -0.5, rtol=1e-12)


@pytest.mark.parametrize(
    "make_base",
    [
        lambda x: optim.LBFGS([x]),
        lambda x: optim.NewtonCG([x], hessian.from_hvp(lambda v: v, x.size, x.dtype)),
        lambda x: optim.SAM(optim.SGD([x], lr=0.1)),
    ],
    ids=["LBFGS", "NewtonCG", "SAM"],
)
def test_sam_refuses_a_base_whose_step_takes_a_closure(make_base):
    """SAM calls base.step(grads): LBFGS, NewtonCG (and SAM) take a closure there. They were
    accepted, and every SAM step ran the closure twice before a TypeError naming ``closure``."""
    x = np.array([1.0, 2.0, 3.0])
    with pytest.raises(TypeError, match=r"^base: \w+\.step takes a closure, not grads"):
        optim.SAM(make_base(x), rho=0.05)
