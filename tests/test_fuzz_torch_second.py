"""Fuzzing optkern.torch's LBFGS and SAM against the contract in fuzz_contract.py: a bad keyword,
param, grad, group entry or checkpoint entry raises TypeError / ValueError naming it with no param,
grad or state tensor written (a refused checkpoint loads nothing); valid calls give the very bits
of optkern.optim's LBFGS / SAM on NumPy copies of the same params and gradients."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import event, given, note
from hypothesis import strategies as st

from fuzz_contract import BAD_SCALARS, check_call
from optkern import optim

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")

pytestmark = pytest.mark.fuzz
torch.set_num_threads(1)

DTYPES = [torch.float32, torch.float64]
SHAPES = [(0,), (1,), (7,), (3, 5), (513,)]
GRAD_SPOILS = ["dtype", "size", "strided", "sparse", "nan"]


def _params(shapes, dtype, rng):
    return [torch.from_numpy(rng.standard_normal(s)).to(dtype).requires_grad_() for s in shapes]


def _copy(t) -> np.ndarray:
    return t.detach().numpy().copy()


def _state_tensors(opt, params) -> list:
    """NumPy views of every param, grad and state tensor (what must not change on an error)."""
    out = [p.detach().numpy() for p in params]
    out += [p.grad.numpy() for p in params if p.grad is not None and p.grad.layout is torch.strided]
    for s in opt.state.values():
        for v in s.values():
            for t in v if isinstance(v, list) else [v]:
                if isinstance(t, torch.Tensor) and t.layout is torch.strided:
                    out.append(t.detach().numpy())
    return out


def _spoiled_grad(g: torch.Tensor, p: torch.Tensor, kind: str):
    """``g`` spoiled by ``kind`` (None: this shape cannot be spoiled so)."""
    if kind == "dtype":
        p.grad_dtype = None  # (torch >= 2.10 refuses a grad of another dtype unless told)
        return g.to(torch.float32 if g.dtype is torch.float64 else torch.float64)
    if kind == "size":
        return torch.zeros(g.numel() + 1, dtype=g.dtype)
    if kind == "strided":
        s = torch.stack([g, g], -1)[..., 0]
        return None if s.is_contiguous() else s
    if kind == "sparse":
        return None if g.dim() == 0 or g.numel() == 0 else g.to_sparse()
    g = g.clone()
    if g.numel() == 0:
        return None
    g.view(-1)[:1] = float("nan")
    return g


def _spoil_param(params: list, i: int, kind: str) -> bool:
    """Param ``i`` replaced by a spoiled tensor; False where this shape cannot be spoiled so (a
    0- or 1-element tensor is contiguous whatever its strides)."""
    p = params[i].detach()
    params[i] = {
        "int": lambda: p.to(torch.int32),
        "strided": lambda: torch.stack([p, p], -1)[..., 0],
        "float16": lambda: p.to(torch.float16),
    }[kind]()
    return kind != "strided" or not params[i].is_contiguous()


def _set_grad(p, g) -> None:
    if g.is_sparse or g.shape == p.shape:
        p.grad = g
    else:  # (past torch's own shape check, as a hook or `.data` assignment can get it)
        p.grad = torch.zeros_like(p)
        p.grad.data = g


# ---- SAM ----------------------------------------------------------------------------------------


@st.composite
def sam_cases(draw):
    dtype = draw(st.sampled_from(DTYPES))
    shapes = draw(st.lists(st.sampled_from(SHAPES), min_size=1, max_size=3))
    rho = draw(st.sampled_from([0.0, 0.05, 0.5, 2.0]))
    adaptive = draw(st.booleans())
    what = draw(st.sampled_from(["none", "keyword", "param", "grad", "group"]))
    i = draw(st.integers(0, len(shapes) - 1))
    if what == "keyword":
        spoil = draw(
            st.one_of(
                st.tuples(st.just("rho"), BAD_SCALARS),
                st.tuples(st.just("adaptive"), st.sampled_from(["yes", 1, None])),
            )
        )
    elif what == "param":
        spoil = (i, draw(st.sampled_from(["int", "strided", "float16"])))
    elif what == "grad":
        spoil = (i, draw(st.sampled_from(GRAD_SPOILS)))
    elif what == "group":
        spoil = draw(
            st.one_of(
                st.tuples(st.just("rho"), BAD_SCALARS), st.tuples(st.just("adaptive"), st.sampled_from(["yes", 1]))
            )
        )
    else:
        spoil = None
    return dtype, shapes, rho, adaptive, what, spoil, draw(st.integers(0, 2**32 - 1))


@given(sam_cases())
def test_sam_contract(case):
    dtype, shapes, rho, adaptive, what, spoil, seed = case
    note(f"{dtype} {shapes} rho={rho} adaptive={adaptive} {what} {spoil}")
    rng = np.random.default_rng(seed)
    params = _params(shapes, dtype, rng)
    hp = dict(lr=0.1, momentum=0.9)
    if what == "keyword":
        key, bad = spoil
        check_call(
            lambda: ot.SAM(params, ot.SGD, **{"rho": rho, "adaptive": adaptive, key: bad}, **hp), [key], ok=False
        )
        return
    if what == "param":
        if not _spoil_param(params, *spoil):
            return
        check_call(
            lambda: ot.SAM(params, ot.SGD, rho=rho, adaptive=adaptive, **hp), ["param_groups[0]['params']"], ok=False
        )
        return
    opt = ot.SAM(params, ot.SGD, rho=rho, adaptive=adaptive, **hp)
    copies = [_copy(p) for p in params]
    ref = optim.SAM(optim.SGD(copies, **hp), rho=rho, adaptive=adaptive)
    for _ in range(2):  # valid steps: optkern.optim.SAM's own bits
        g1, g2 = ([rng.standard_normal(s).astype(_copy(p).dtype) for s, p in zip(shapes, params)] for _ in range(2))
        for p, g in zip(params, g1):
            p.grad = torch.from_numpy(g.copy())
        opt.first_step(zero_grad=True)
        for p, g in zip(params, g2):
            p.grad = torch.from_numpy(g.copy())
        opt.second_step()
        ref.first_step(g1)
        ref.second_step(g2)
    for p, r in zip(params, copies):
        np.testing.assert_array_equal(_copy(p).view(np.uint8), r.view(np.uint8))
    if what == "grad":
        i, kind = spoil
        g = _spoiled_grad(params[i].grad, params[i], kind)
        if g is None:
            return
        _set_grad(params[i], g)
        event(f"SAM grad spoiled: {kind}")
        ok, _ = check_call(
            opt.first_step,
            [f"param_groups[0]['params'][{i}].grad"],
            state=_state_tensors(opt, params),
            ok=kind == "nan",
        )
        if ok:
            opt.second_step()
    elif what == "group":
        key, bad = spoil
        opt.param_groups[0][key] = bad
        check_call(opt.first_step, [f"param_groups[0][{key!r}]"], state=_state_tensors(opt, params), ok=False)


# ---- LBFGS --------------------------------------------------------------------------------------

LBFGS_KEYWORDS = ["lr", "max_iter", "max_eval", "tolerance_grad", "tolerance_change", "history_size"]
STATE_SPOILS = ["d_size", "dirs_size", "ro_negative", "H_diag_nan", "n_iter_negative", "t_string", "dirs_count"]


@st.composite
def lbfgs_cases(draw):
    dtype = draw(st.sampled_from(DTYPES))
    shapes = draw(st.lists(st.sampled_from(SHAPES), min_size=1, max_size=3))
    kw = dict(
        max_iter=draw(st.integers(1, 6)),
        history_size=draw(st.integers(1, 4)),
        line_search_fn=draw(st.sampled_from([None, "strong_wolfe"])),
        lr=draw(st.sampled_from([1.0, 0.5])),
    )
    what = draw(st.sampled_from(["none", "keyword", "param", "grad", "group", "state_dict"]))
    i = draw(st.integers(0, len(shapes) - 1))
    if what in ("keyword", "group"):
        key = draw(st.sampled_from(LBFGS_KEYWORDS + ["line_search_fn"]))
        bad = draw(st.sampled_from(["armijo", 1, None]) if key == "line_search_fn" else BAD_SCALARS)
        spoil = (key, bad)
    elif what == "param":
        spoil = (i, draw(st.sampled_from(["int", "strided", "float16"])))
    elif what == "grad":
        # (a sparse grad is no spoil here: torch.optim.LBFGS reads it as its dense values, and so does ours)
        spoil = (i, draw(st.sampled_from([k for k in GRAD_SPOILS if k != "sparse"])))
    elif what == "state_dict":
        spoil = draw(st.sampled_from(STATE_SPOILS))
    else:
        spoil = None
    return dtype, shapes, kw, what, spoil, draw(st.integers(0, 2**32 - 1))


def _quadratic(a: list):
    """(torch closure, NumPy closure) of f = sum a x^2 / 2: the same bits (one product per element,
    the loss summed in float64 from the params' values)."""

    def loss_of(xs):
        return float(sum(0.5 * np.sum(ai.astype(np.float64) * x.astype(np.float64) ** 2) for ai, x in zip(a, xs)))

    def for_torch(params):
        def closure():
            xs = [p.detach().numpy() for p in params]
            for p, ai in zip(params, a):
                p.grad = torch.from_numpy(ai) * p.detach()
            return torch.tensor(loss_of(xs), dtype=torch.float64)

        return closure

    def for_numpy(xs):
        return lambda: (loss_of(xs), [ai * x for ai, x in zip(a, xs)])

    return for_torch, for_numpy


@given(lbfgs_cases())
def test_lbfgs_contract(case):
    dtype, shapes, kw, what, spoil, seed = case
    note(f"{dtype} {shapes} {kw} {what} {spoil}")
    rng = np.random.default_rng(seed)
    params = _params(shapes, dtype, rng)
    if what == "keyword":
        key, bad = spoil
        valid = bad is None and key in ("max_eval", "line_search_fn")  # (their defaults)
        check_call(lambda: ot.LBFGS(params, **{**kw, key: bad}), [key], ok=valid)
        return
    if what == "param":
        if not _spoil_param(params, *spoil):
            return
        check_call(lambda: ot.LBFGS(params, **kw), ["param_groups[0]['params']"], ok=False)
        return
    a = [rng.uniform(0.5, 2.0, s).astype(_copy(p).dtype) for s, p in zip(shapes, params)]
    for_torch, for_numpy = _quadratic(a)
    opt = ot.LBFGS(params, **kw)
    copies = [_copy(p) for p in params]
    ref = optim.LBFGS(copies, **kw)
    for _ in range(2):  # valid steps: optkern.optim.LBFGS's own bits
        opt.step(for_torch(params))
        ref.step(for_numpy(copies))
    for p, r in zip(params, copies):
        np.testing.assert_array_equal(_copy(p).view(np.uint8), r.view(np.uint8))
    if what == "grad":
        i, kind = spoil
        good = for_torch(params)

        def spoiled():
            loss = good()
            g = _spoiled_grad(params[i].grad, params[i], kind)
            _set_grad(params[i], g)
            return loss

        if _spoiled_grad(torch.zeros(shapes[i], dtype=dtype), params[i], kind) is None:
            return
        event(f"LBFGS grad spoiled: {kind}")
        names = ["closure"] if kind == "nan" else [f"param_groups[0]['params'][{i}].grad"]
        state = _state_tensors(opt, params)
        check_call(lambda: opt.step(spoiled), names, state=state, ok=False)
    elif what == "group":
        key, bad = spoil
        opt.param_groups[0][key] = bad
        # (max_eval=None in a group is refused: torch resolves None only in the constructor)
        valid = key == "line_search_fn" and bad is None
        state = _state_tensors(opt, params)
        check_call(lambda: opt.step(for_torch(params)), [f"param_groups[0][{key!r}]"], state=state, ok=valid)
    elif what == "state_dict":
        _spoiled_checkpoint(opt, params, kw, spoil)


def _spoiled_checkpoint(opt, params, kw, kind):
    """A checkpoint with one entry spoiled: refused naming it, nothing loaded."""
    sd = opt.state_dict()
    e = dict(sd["state"].get(0, {}))
    if not e.get("n_iter"):
        return
    if kind == "d_size":
        e["d"] = torch.zeros(e["d"].numel() + 1, dtype=e["d"].dtype)
    elif kind == "dirs_size" and e["old_dirs"]:
        e["old_dirs"] = [torch.zeros(e["d"].numel() + 1, dtype=e["d"].dtype)] + list(e["old_dirs"][1:])
    elif kind == "ro_negative" and e["ro"]:
        e["ro"] = [-1.0] + list(e["ro"][1:])
    elif kind == "H_diag_nan":
        e["H_diag"] = float("nan")
    elif kind == "n_iter_negative":
        e["n_iter"] = -1
    elif kind == "t_string":
        e["t"] = "0.5"
    elif kind == "dirs_count" and e["old_dirs"]:
        e["old_dirs"] = list(e["old_dirs"][:-1])
    else:
        return
    event(f"LBFGS checkpoint spoiled: {kind}")
    fresh = ot.LBFGS([p.detach().clone().requires_grad_() for p in params], **kw)
    check_call(lambda: fresh.load_state_dict({**sd, "state": {0: e}}), ["state_dict['state'][0]"], ok=False)
    assert not fresh.state
