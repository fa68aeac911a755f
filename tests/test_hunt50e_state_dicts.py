"""State dicts and checkpoints (50th hunt, e): tampered entries are refused by name, before
anything changes; round trips continue bit-identically."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import optkern.optim as O
from hunt50e_states import assert_same as _same
from hunt50e_states import frozen as _frozen

torch = pytest.importorskip("torch")
OT = pytest.importorskip("optkern.torch")


def _stepped_torch(k: int = 2):
    g = torch.Generator().manual_seed(7)
    p = torch.randn(7, generator=g, requires_grad=True)
    opt = OT.Adam([p], lr=0.01)
    for _ in range(k):
        p.grad = torch.randn(7, generator=g)
        opt.step()
    return p, opt


def _stepped_numpy(k: int = 2):
    rng = np.random.default_rng(7)
    p = rng.standard_normal(7).astype(np.float32)
    opt = O.Adam([p], lr=0.01)
    for _ in range(k):
        opt.step([rng.standard_normal(7).astype(np.float32)])
    return p, opt


# ---- meta tensors: a checkpoint's shapes without values ------------------------------------------

_META_TORCH = [
    ("exp_avg", lambda sd: sd["state"][0].__setitem__("exp_avg", torch.empty(7, device="meta"))),
    ("step", lambda sd: sd["state"][0].__setitem__("step", torch.empty((), device="meta"))),
    ("lr", lambda sd: sd["param_groups"][0].__setitem__("lr", torch.empty((), device="meta"))),
]


@pytest.mark.parametrize("entry, spoil", _META_TORCH, ids=[e for e, _ in _META_TORCH])
def test_torch_adapter_refuses_meta_tensor_in_state_dict_by_name(entry, spoil):
    """A meta tensor (shapes only, e.g. a checkpoint loaded under ``torch.device("meta")``) in a state
    dict raised NotImplementedError / RuntimeError from inside torch ("Cannot copy out of meta
    tensor"), naming no entry: now a TypeError naming it, and the optimizer unchanged."""
    p, opt = _stepped_torch()
    sd = copy.deepcopy(opt.state_dict())
    spoil(sd)
    before, p0 = _frozen(opt), p.detach().clone()
    with pytest.raises(TypeError, match=rf"\[{entry!r}\].*meta"):
        opt.load_state_dict(sd)
    _same(before, _frozen(opt))
    assert torch.equal(p.detach(), p0)


_META_NUMPY = [
    ("exp_avg", lambda sd: sd["state"][0].__setitem__("exp_avg", torch.empty(7, device="meta"))),
    ("step", lambda sd: sd["state"][0].__setitem__("step", torch.empty((), device="meta"))),
    ("lr", lambda sd: sd["param_groups"][0].__setitem__("lr", torch.empty((), device="meta"))),
    ("betas", lambda sd: sd["param_groups"][0].__setitem__("betas", torch.empty(2, device="meta"))),
]


@pytest.mark.parametrize("entry, spoil", _META_NUMPY, ids=[e for e, _ in _META_NUMPY])
def test_optim_refuses_meta_tensor_in_state_dict_by_name(entry, spoil):
    """optkern.optim takes a torch checkpoint's tensors (lr, betas as tensors too): a meta ``lr``
    raised RuntimeError ("Tensor.item() cannot be called on meta tensors") naming nothing."""
    p, opt = _stepped_numpy()
    sd = copy.deepcopy(opt.state_dict())
    spoil(sd)
    before, p0 = _frozen(opt), p.copy()
    with pytest.raises(TypeError, match=rf"\[{entry!r}\].*meta"):
        opt.load_state_dict(sd)
    _same(before, _frozen(opt))
    assert np.array_equal(p, p0)


def test_torch_adapter_refuses_meta_lr_in_a_group_by_name():
    """``lr`` as a meta tensor given to the constructor (or put in a group) is named too."""
    p = torch.randn(3, requires_grad=True)
    with pytest.raises(TypeError, match=r"lr.*meta"):
        OT.Adam([p], lr=torch.empty((), device="meta"))
    opt = OT.Adam([p], lr=0.1)
    opt.param_groups[0]["lr"] = torch.empty((), device="meta")
    p.grad = torch.ones(3)
    p0 = p.detach().clone()
    with pytest.raises(TypeError, match=r"lr.*meta"):
        opt.step()
    assert torch.equal(p.detach(), p0)


def _meta_like(v):
    return torch.empty(
        tuple(v.shape), dtype=torch.uint8 if v.dtype in (np.uint8, torch.uint8) else torch.float32, device="meta"
    )


@pytest.mark.parametrize("state_dtype", ["int8", "bfloat16"])
def test_optim_lowp_refuses_meta_tensor_by_name(state_dtype):
    """The 8-bit loader read codes and scales with an unnamed TypeError ("can't convert meta device
    type tensor to numpy"): now each entry is named."""
    rng = np.random.default_rng(3)
    p = rng.standard_normal(7).astype(np.float32)
    opt = O.Adam([p], lr=0.1, state_dtype=state_dtype)
    opt.step([rng.standard_normal(7).astype(np.float32)])
    sd = copy.deepcopy(opt.state_dict())
    names = [k for k, v in sd["state"][0].items() if isinstance(v, np.ndarray)]
    assert {"exp_avg", "exp_avg_sq"} <= set(names)
    for k in names:
        bad = copy.deepcopy(sd)
        bad["state"][0][k] = _meta_like(sd["state"][0][k])
        before = _frozen(opt)
        with pytest.raises(TypeError, match=rf"\['state'\]\[0\]\[{k!r}\].*meta"):
            opt.load_state_dict(bad)
        _same(before, _frozen(opt))


@pytest.mark.parametrize("lowp", [dict(state_dtype="int8"), dict(state_dtype="bfloat16"), dict(master_weights=True)])
def test_torch_adapter_lowp_refuses_meta_tensor_by_name(lowp):
    """The adapter's low-precision loader (codes, scales, master) raised torch's NotImplementedError."""
    dt = torch.bfloat16 if lowp.get("master_weights") else torch.float32
    g = torch.Generator().manual_seed(5)
    p = torch.randn(7, generator=g).to(dt).requires_grad_()
    opt = OT.Adam([p], lr=0.1, **lowp)
    p.grad = torch.randn(7, generator=g).to(dt)
    opt.step()
    sd = copy.deepcopy(opt.state_dict())
    names = [k for k, v in sd["state"][0].items() if isinstance(v, torch.Tensor) and v.dim() > 0]
    assert {"exp_avg", "exp_avg_sq"} <= set(names)
    for k in names:
        bad = copy.deepcopy(sd)
        bad["state"][0][k] = _meta_like(sd["state"][0][k])
        before, p0 = _frozen(opt), p.detach().clone()
        with pytest.raises(TypeError, match=rf"\['state'\]\[0\]\[{k!r}\].*meta"):
            opt.load_state_dict(bad)
        _same(before, _frozen(opt))
        assert torch.equal(p.detach(), p0)


# ---- per-param scalars of the torch adapter: NAdam's mu_product, AdagradNorm's b_sq ----------------


def _stepped(cls, k: int = 3, **kw):
    g = torch.Generator().manual_seed(11)
    ps = [torch.randn(5, generator=g, requires_grad=True), torch.randn(1, 3, generator=g, requires_grad=True)]
    opt = cls(ps, **kw)
    for _ in range(k):
        for p in ps:
            p.grad = torch.randn(p.shape, generator=g)
        opt.step()
    return ps, opt


def _grads(ps, seed: int) -> list:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(p.shape, generator=g) for p in ps]


def _refused_unchanged(opt, key: str, bad, message: str) -> None:
    """Param 1's saved ``key`` set to ``bad``: load_state_dict raises a ValueError naming that entry
    (then ``message``), and the optimizer's params and state are as before."""
    sd = copy.deepcopy(opt.state_dict())
    sd["state"][1][key] = bad
    before = _frozen(opt)
    with pytest.raises(ValueError, match=rf"state_dict\['state'\]\[1\]\['{key}'\]" + message):
        opt.load_state_dict(sd)
    _same(before, _frozen(opt))


@pytest.mark.parametrize("bad", [-0.5, 1.5, 3, torch.tensor(-1.0), torch.tensor(2.0)], ids=str)
def test_torch_nadam_refuses_mu_product_out_of_range_by_name(bad):
    """mu_product is a product of momentum factors in [0, 1] (optkern.optim's loader refuses others,
    _state_checks.SCALARS): optkern.torch.NAdam loaded -0.5 or 1.5 and then refused every step
    ("mu_product: must be in [0.0, 1.00000012]"), a checkpoint that could never be stepped."""
    _, opt = _stepped(OT.NAdam, lr=0.01)
    _refused_unchanged(opt, "mu_product", bad, r": must be in \[0.0, 1.0\]")


def test_torch_adagrad_norm_loads_a_number_b_sq_and_steps_on_bit_identically():
    """optkern.optim.AdagradNorm saves b_sq as a Python float (so does a JSON round trip of the
    adapter's): optkern.torch.AdagradNorm loaded it as a float and its next step raised
    AttributeError ('float' object has no attribute 'dtype')."""
    ps, opt = _stepped(OT.AdagradNorm, lr=0.1)
    sd = copy.deepcopy(opt.state_dict())
    for e in sd["state"].values():
        e["b_sq"] = float(e["b_sq"])
    qs = [p.detach().clone().requires_grad_() for p in ps]
    opt2 = OT.AdagradNorm(qs, lr=0.1)
    opt2.load_state_dict(sd)
    for k in range(2):
        for p, q, g in zip(ps, qs, _grads(ps, 40 + k)):
            p.grad, q.grad = g.clone(), g.clone()
        opt.step()
        opt2.step()
    for p, q in zip(ps, qs):
        assert torch.equal(p, q)
    b1, b2 = opt.state_dict()["state"][0]["b_sq"], opt2.state_dict()["state"][0]["b_sq"]
    assert b2.dtype == torch.float64 and torch.equal(b1, b2)


def test_torch_adagrad_norm_loads_optim_checkpoint():
    """The same from optkern.optim.AdagradNorm's own state dict (the adapter loads "each other's")."""
    g = np.random.default_rng(2)
    x = g.standard_normal(6).astype(np.float32)
    opt = O.AdagradNorm([x], lr=0.1)
    for _ in range(2):
        opt.step([g.standard_normal(6).astype(np.float32)])
    t = torch.from_numpy(x.copy()).requires_grad_()
    opt2 = OT.AdagradNorm([t], lr=0.1)
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))
    grad = g.standard_normal(6).astype(np.float32)
    opt.step([grad])
    t.grad = torch.from_numpy(grad.copy())
    opt2.step()
    assert np.array_equal(t.detach().numpy(), x)


_B_SQ_BAD = [
    ("zero", lambda e: e.__setitem__("b_sq", 0.0), r"\['b_sq'\]: must be in \(0.0, inf\)"),
    ("zero tensor", lambda e: e.__setitem__("b_sq", torch.zeros(1, dtype=torch.float64)), r"\['b_sq'\]: must be in"),
    ("negative", lambda e: e.__setitem__("b_sq", -4.0), r"\['b_sq'\]: must be in"),
    ("None", lambda e: e.__setitem__("b_sq", None), r": missing 'b_sq'"),
    ("missing", lambda e: e.pop("b_sq"), r": missing 'b_sq'"),
]


@pytest.mark.parametrize("label, spoil, msg", _B_SQ_BAD, ids=[b[0] for b in _B_SQ_BAD])
def test_torch_adagrad_norm_refuses_a_bad_or_missing_b_sq_by_name(label, spoil, msg):
    """b^2 >= b0^2 > 0 is divided by: a zero one loaded (and stepped with a float it could not read);
    a stepped checkpoint whose entries lost b_sq loaded and restarted from b0^2, every later step
    as large as the first, silently (optkern.optim's loader refuses both)."""
    ps, opt = _stepped(OT.AdagradNorm, lr=0.1)
    sd = copy.deepcopy(opt.state_dict())
    for e in sd["state"].values():
        spoil(e)
    before, p0 = _frozen(opt), [p.detach().clone() for p in ps]
    with pytest.raises(ValueError, match=r"state_dict\['state'\]\[0\]" + msg):
        opt.load_state_dict(sd)
    _same(before, _frozen(opt))
    assert all(torch.equal(p, q) for p, q in zip(ps, p0))


# ---- torch.optim's checkpoint of a bfloat16 model into optkern.optim ----------------------------


def _torch_bf16_checkpoint(k: int = 2):
    g = torch.Generator().manual_seed(13)
    t = torch.randn(9, generator=g).to(torch.bfloat16).requires_grad_()
    opt = torch.optim.Adam([t], lr=0.01)
    for _ in range(k):
        t.grad = torch.randn(9, generator=g).to(torch.bfloat16)
        opt.step()
    sd = opt.state_dict()
    assert sd["state"][0]["exp_avg"].dtype is torch.bfloat16  # (torch keeps a bf16 param's state in bf16)
    return t, sd


@pytest.mark.parametrize("lowp", [{}, dict(state_dtype="bfloat16"), dict(state_dtype="int8")], ids=str)
def test_optim_loads_torch_bfloat16_state_tensors(lowp):
    """optkern.optim loads CPU torch tensors (a torch.optim checkpoint): float16 ones loaded, but
    bfloat16 ones -- torch.optim's state of a bfloat16 model -- were refused ("cannot be read as a
    NumPy array (Tensor: Got unsupported ScalarType BFloat16)"). They load as the values they hold."""
    t, sd = _torch_bf16_checkpoint()
    x = t.detach().float().numpy()
    opt = O.Adam([x], lr=0.01, **lowp)
    opt.load_state_dict(copy.deepcopy(sd))
    got = opt.state_dict()["state"][0]
    assert got["step"] == 2
    for name in ("exp_avg", "exp_avg_sq"):
        want = sd["state"][0][name].float().numpy()
        v = got[name]
        if lowp.get("state_dtype") == "int8":
            from optkern import lowp as L

            v = L.dequantize_blockwise(v.reshape(-1), got[name + "_scale"], got["block"]).reshape(v.shape)
            np.testing.assert_allclose(v, want, rtol=0, atol=np.abs(want).max() / 100)
        else:
            assert np.array_equal(np.asarray(v, np.float32), want)  # bf16 -> float32 (-> bf16) is exact


def test_optim_master_weights_resumes_torch_bfloat16_checkpoint():
    """Master weights over bfloat16 params take the same checkpoint (its master made from the params)."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    t, sd = _torch_bf16_checkpoint()
    x = t.detach().float().numpy().astype(ml_dtypes.bfloat16)
    opt = O.Adam([x], lr=0.01, master_weights=True, state_dtype="bfloat16")
    opt.load_state_dict(copy.deepcopy(sd))
    got = opt.state_dict()["state"][0]
    assert np.array_equal(np.asarray(got["exp_avg"], np.float32), sd["state"][0]["exp_avg"].float().numpy())


# ---- step counts past 2**53 ----------------------------------------------------------------------


@pytest.mark.parametrize("big", [2**54, torch.tensor(2.0**60), 2**63], ids=str)
@pytest.mark.parametrize("cls", [OT.Adam, OT.Adagrad, OT.NAdam], ids=lambda c: c.__name__)
def test_torch_adapter_refuses_a_step_count_past_2_53_by_name(cls, big):
    """optkern.optim's loader refuses a step count beyond 2**53 (where the bias corrections' doubles
    stop counting exactly; ``_state_checks._MAX_STEP``): the adapter loaded it, and then every step
    refused it ("step: must be an integer in [1, 2**53]"), naming no entry of the checkpoint."""
    _, opt = _stepped(cls, k=1, lr=0.01)
    _refused_unchanged(opt, "step", big, r": .*2\*\*53")
