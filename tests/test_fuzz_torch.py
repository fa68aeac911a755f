"""Fuzzing optkern.torch's SGD, Adam, AdamW and RMSprop, plain and with low-precision storage, against
the contract in fuzz_contract.py: a bad constructor keyword, param, grad, group hyper-parameter or
checkpoint entry raises TypeError / ValueError naming it, with no param, grad or state tensor
written (and a refused checkpoint loads nothing); valid calls give the very bits of optkern.optim's
step on NumPy copies of the same params and grads."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import event, given, note
from hypothesis import strategies as st

from fuzz_contract import BAD_SCALARS, check_call
from optkern import optim

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")
ml_dtypes = pytest.importorskip("ml_dtypes")

pytestmark = pytest.mark.fuzz
torch.set_num_threads(1)

VALID = [
    ("SGD", dict(lr=0.05)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)),
    ("Adam", dict(lr=1e-2, amsgrad=True)),
    ("AdamW", dict(lr=1e-2, weight_decay=0.1)),
    ("RMSprop", dict(lr=1e-2, momentum=0.5, centered=True)),
]
LOWP = [
    {},
    dict(master_weights=True),
    dict(master_weights=True, stochastic_rounding=True, state_dtype="int8", block_size=64),
    dict(master_weights=True, state_dtype="bfloat16"),
    dict(state_dtype="int8"),
]
#: numeric group entries that reject every value of BAD_SCALARS, by class
NUMERIC = {"SGD": ("lr", "weight_decay", "momentum"), "RMSprop": ("lr", "eps", "alpha", "momentum")}
NUMERIC_DEFAULT = ("lr", "eps", "weight_decay")
BAD_KEYWORDS = [
    ("master_weights", "yes"),
    ("master_weights", None),
    ("stochastic_rounding", 1),
    ("state_dtype", "int4"),
    ("state_dtype", np.float32),
    ("block_size", 100),
    ("block_size", 8192),
    ("block_size", 256.0),
    ("block_size", True),
    ("seed", -1),
    ("seed", 2**64),
    ("seed", 1.5),
]
SHAPES = [(0,), (1,), (7,), (3, 5), (513,)]
NP_HALF = {torch.bfloat16: np.dtype(ml_dtypes.bfloat16), torch.float16: np.dtype(np.float16)}


def _numpy(t):
    """A NumPy view of tensor ``t``'s memory (for snapshots) -- bfloat16 as int16."""
    t = t.detach()
    return (t.view(torch.int16) if t.dtype is torch.bfloat16 else t).numpy()


def _copy(t):
    """A NumPy copy of ``t`` in the dtype optkern.optim takes (bfloat16 as ml_dtypes')."""
    a = _numpy(t).copy()
    return a.view(NP_HALF[torch.bfloat16]) if t.dtype is torch.bfloat16 else a


def _tensors(opt, params):
    """NumPy views of every param, grad and state tensor (what must not change on an error)."""
    out = [_numpy(p) for p in params] + [_numpy(p.grad) for p in params if p.grad is not None and not p.grad.is_sparse]
    for s in opt.state.values():
        out += [_numpy(v) for v in s.values() if isinstance(v, torch.Tensor)]
    return out


@st.composite
def cases(draw):
    name, hp = draw(st.sampled_from(VALID))
    lp = draw(st.sampled_from(LOWP))
    dtype = draw(st.sampled_from([torch.bfloat16, torch.float16])) if lp.get("master_weights") else torch.float32
    shapes = draw(st.lists(st.sampled_from(SHAPES), min_size=1, max_size=3))
    what = draw(st.sampled_from(["none", "keyword", "param", "grad", "group", "state_dict"]))
    i = draw(st.integers(0, len(shapes) - 1))
    if what == "keyword":
        spoil = draw(st.sampled_from(BAD_KEYWORDS))
    elif what == "param":
        spoil = (i, draw(st.sampled_from(["dtype", "int", "strided"])))
    elif what == "grad":
        spoil = (i, draw(st.sampled_from(["dtype", "strided", "sparse", "nan"])))
    elif what == "group":
        spoil = (draw(st.sampled_from(NUMERIC.get(name, NUMERIC_DEFAULT))), draw(BAD_SCALARS))
    elif what == "state_dict":
        spoil = (i, draw(st.sampled_from(["scale", "block", "moment_size", "moment_str", "moment_int", "master"])))
    else:
        spoil = None
    return name, hp, lp, dtype, shapes, what, spoil, draw(st.integers(0, 2**32 - 1))


def _grads(params, rng):
    return [torch.from_numpy(rng.standard_normal(p.shape).astype(np.float32)).to(p.dtype) for p in params]


@given(cases())
def test_optkern_torch_contract(case):
    name, hp, lp, dtype, shapes, what, spoil, seed = case
    note(f"{name} {hp} {lp} {dtype} {shapes} {what} {spoil}")
    rng = np.random.default_rng(seed)
    params = [torch.from_numpy(rng.standard_normal(s).astype(np.float32)).to(dtype) for s in shapes]
    cls = getattr(ot, name)
    if what == "keyword":
        key, bad = spoil
        check_call(lambda: cls(params, **hp, **{**lp, key: bad}), [key], ok=False)
        return
    if what == "param":
        i, kind = spoil
        # a dtype this configuration refuses: master copies are for halves, compact states for float32
        wrong = {torch.float32: torch.float64 if lp else torch.bfloat16, torch.bfloat16: torch.float64}
        wrong[torch.float16] = torch.float64
        p = params[i]
        params[i] = {
            "dtype": lambda: p.to(wrong[dtype]),
            "int": lambda: p.to(torch.int32),
            "strided": lambda: torch.stack([p, p], -1)[..., 0],
        }[kind]()
        if kind == "strided" and params[i].is_contiguous():
            return  # (a 0- or 1-element tensor is contiguous whatever its strides)
        check_call(lambda: cls(params, **hp, **lp), ["param_groups[0]['params']"], ok=False)
        return
    opt = cls(params, **hp, **lp, seed=5) if lp else cls(params, **hp)
    copies = [_copy(p) for p in params]
    ref = getattr(optim, name)(copies, **hp, **lp, **({"seed": 5} if lp else {}))
    for gs in (_grads(params, rng), _grads(params, rng)):
        for p, g in zip(params, gs):
            p.grad = g
        opt.step()
        ref.step([_copy(g) for g in gs])
    for p, r in zip(params, copies):  # valid calls: optkern.optim's own bits
        np.testing.assert_array_equal(_copy(p).view(np.uint8), r.view(np.uint8))
    if what == "grad":
        i, kind = spoil
        g = _grads(params, rng)
        if kind == "dtype":
            params[i].grad_dtype = None  # (torch >= 2.10 refuses a grad of another dtype unless told)
            g[i] = g[i].to(torch.float64 if dtype is torch.float32 else torch.float32)
        elif kind == "strided":
            g[i] = torch.stack([g[i], g[i]], -1)[..., 0]
            if g[i].is_contiguous():
                return
        elif kind == "sparse":
            if g[i].dim() == 0 or g[i].numel() == 0:
                return
            g[i] = g[i].to_sparse()
        else:
            g[i] = g[i].clone()
            g[i].view(-1)[:1] = float("nan")
        for p, x in zip(params, g):
            p.grad = x
        event(f"grad spoiled: {kind}")
        name = f"param_groups[0]['params'][{i}].grad"
        # (a sparse grad follows torch class by class: SGD without momentum and Adagrad step it, the
        # others raise torch's own RuntimeError -- read here as the refusal it is, nothing written)
        step = _torch_sparse_refusal(opt.step, name) if kind == "sparse" else opt.step
        check_call(step, [name], state=_tensors(opt, params), ok=kind in ("nan", "sparse"))
    elif what == "group":
        key, bad = spoil
        opt.param_groups[0][key] = bad
        check_call(opt.step, [f"param_groups[0][{key!r}]"], state=_tensors(opt, params), ok=False)
    elif what == "state_dict":
        _spoiled_checkpoint(opt, cls, hp, lp, params, *spoil)


def _torch_sparse_refusal(step, name):
    """``step`` with torch's RuntimeError for a sparse grad ("... does not support sparse gradients")
    raised as a ValueError naming the grad, for :func:`check_call`."""

    def call():
        try:
            return step()
        except RuntimeError as e:
            if "sparse" not in str(e):
                raise
            raise ValueError(f"{name}: {e}") from e

    return call


def _spoiled_checkpoint(opt, cls, hp, lp, params, i, kind):
    """A checkpoint with entry ``i`` spoiled: refused naming it, nothing loaded (low precision only:
    torch's own loader takes what a plain optimizer's checkpoint holds as it is)."""
    sd = opt.state_dict()
    entry = sd["state"].get(i)
    if not lp or entry is None:
        return
    moment = (
        next(k for k in ("exp_avg", "momentum_buffer", "square_avg") if k in entry)
        if any(k in entry for k in ("exp_avg", "momentum_buffer", "square_avg"))
        else None
    )
    e = dict(entry)
    if kind == "scale" and f"{moment}_scale" in e and e[f"{moment}_scale"].numel():
        e[f"{moment}_scale"] = e[f"{moment}_scale"][:-1]
    elif kind == "block" and "block_size" in e:
        e["block_size"] = "64"
    elif kind == "moment_size" and moment:
        e[moment] = torch.zeros(e[moment].numel() + 1, dtype=e[moment].dtype)
    elif kind == "moment_str" and moment:
        e[moment] = "x"
    elif kind == "moment_int" and moment:
        e[moment] = torch.zeros(e[moment].shape, dtype=torch.int32)
    elif kind == "master" and "master_param" in e:
        e["master_param"] = torch.zeros(e["master_param"].numel() + 1)
    else:
        return
    event(f"checkpoint spoiled: {kind}")
    fresh = cls([p.detach().clone() for p in params], **hp, **lp)
    check_call(
        lambda: fresh.load_state_dict({**sd, "state": {**sd["state"], i: e}}), [f"state_dict['state'][{i}]"], ok=False
    )
    assert not fresh.state
