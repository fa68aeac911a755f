"""Hunt 51f: low-precision checkpoints cross between optkern.torch and optkern.optim both ways.

optkern.torch keeps an 8-bit entry's block size as ``block_size`` and tells the storage by the
tensors' dtypes; optkern.optim saves ``state_dtype`` and ``block`` with NumPy arrays. Each loader
refused the other's form (``unknown key 'block_size'``; ``expected a tensor, got ndarray``). The
translation lives in one place (``optkern._lowp_schema``); here a checkpoint saved by one side
after two steps is loaded by the other, both take a third step with the same grad, and their
params and states must agree bit for bit (8-bit codes copied exactly, bf16 states and the
stochastic-rounding seed carried), for 8-bit and bf16 states and for bf16 params with masters."""

import ml_dtypes
import numpy as np
import pytest

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")
import optkern.optim as oo  # noqa: E402

CASES = [
    ("Adam", {"lr": 1e-2}, {"state_dtype": "int8", "block_size": 64}),
    ("AdamW", {"lr": 1e-2, "weight_decay": 0.1}, {"state_dtype": "bfloat16"}),
    ("SGD", {"lr": 1e-2, "momentum": 0.9}, {"state_dtype": "int8"}),
    ("RMSprop", {"lr": 1e-3}, {"state_dtype": "bfloat16", "master_weights": True, "stochastic_rounding": True}),
    ("Adam", {"lr": 1e-2}, {"state_dtype": "int8", "master_weights": True}),
    ("Adam", {"lr": 1e-2}, {"master_weights": True, "stochastic_rounding": True, "seed": 7}),
]
SIZES = (0, 1, 7, 1023)


def _half(cfg) -> bool:
    return bool(cfg.get("master_weights"))


def _np(t):
    """A torch tensor's values as NumPy (bfloat16 as ml_dtypes')."""
    t = t.detach()
    if t.dtype is torch.bfloat16:
        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16).copy()
    return t.numpy().copy()


def _torch(a):
    if a.dtype == ml_dtypes.bfloat16:
        return torch.from_numpy(a.view(np.int16).copy()).view(torch.bfloat16)
    return torch.from_numpy(a.copy())


def _grads(rng, half, n):
    gs = [rng.standard_normal(s).astype(np.float32) for s in SIZES]
    return [g.astype(ml_dtypes.bfloat16) if half else g for g in gs][:n]


def _torch_opt(name, hyper, cfg, values):
    ps = [_torch(v).requires_grad_() for v in values]
    return getattr(ot, name)(ps, **hyper, **cfg), ps


def _torch_step(opt, ps, grads):
    for p, g in zip(ps, grads):
        p.grad = _torch(g)
    opt.step()


def _start(rng, half):
    vs = [rng.standard_normal(s).astype(np.float32) for s in SIZES]
    return [v.astype(ml_dtypes.bfloat16) if half else v for v in vs]


def _same_state(a: dict, b: dict):
    """optkern.torch's state (``a``, tensors) and optkern.optim's (``b``) hold the same values."""
    for k, v in a.items():
        if k in ("step", "seed", "block_size"):
            continue
        np.testing.assert_array_equal(_np(v).view(np.uint8), np.asarray(b[k]).view(np.uint8), err_msg=k)


@pytest.mark.parametrize("name, hyper, cfg", CASES)
def test_torch_checkpoint_loads_into_optim(name, hyper, cfg):
    rng = np.random.default_rng(5101)
    half = _half(cfg)
    start = _start(rng, half)
    t, ps = _torch_opt(name, hyper, cfg, start)
    for _ in range(2):
        _torch_step(t, ps, _grads(rng, half, len(SIZES)))
    sd = t.state_dict()
    qs = [_np(p) for p in ps]
    o = getattr(oo, name)(qs, **hyper, **cfg)
    o.load_state_dict(sd)
    g = _grads(rng, half, len(SIZES))
    _torch_step(t, ps, g)
    o.step(g)
    for p, q in zip(ps, qs):
        np.testing.assert_array_equal(_np(p).view(np.uint8), q.view(np.uint8))
    mine, theirs = t.state_dict()["state"], o.state_dict()["state"]
    for i in range(len(SIZES)):
        _same_state(mine[i], theirs[i])


@pytest.mark.parametrize("name, hyper, cfg", CASES)
def test_optim_checkpoint_loads_into_torch(name, hyper, cfg):
    rng = np.random.default_rng(5102)
    half = _half(cfg)
    qs = _start(rng, half)
    o = getattr(oo, name)(qs, **hyper, **cfg)
    for _ in range(2):
        o.step(_grads(rng, half, len(SIZES)))
    t, ps = _torch_opt(name, hyper, cfg, qs)
    t.load_state_dict(o.state_dict())
    g = _grads(rng, half, len(SIZES))
    _torch_step(t, ps, g)
    o.step(g)
    for p, q in zip(ps, qs):
        np.testing.assert_array_equal(_np(p).view(np.uint8), q.view(np.uint8))
    mine, theirs = t.state_dict()["state"], o.state_dict()["state"]
    for i in range(len(SIZES)):
        _same_state(mine[i], theirs[i])


def test_torch_to_optim_and_back_keeps_the_state():
    """torch -> optim -> torch: the state is the one saved (8-bit codes exact)."""
    rng = np.random.default_rng(5103)
    start = _start(rng, False)
    t, ps = _torch_opt("Adam", {"lr": 1e-2}, {"state_dtype": "int8"}, start)
    _torch_step(t, ps, _grads(rng, False, len(SIZES)))
    o = oo.Adam([_np(p) for p in ps], lr=1e-2, state_dtype="int8")
    o.load_state_dict(t.state_dict())
    t2, ps2 = _torch_opt("Adam", {"lr": 1e-2}, {"state_dtype": "int8"}, [_np(p) for p in ps])
    t2.load_state_dict(o.state_dict())
    a, b = t.state_dict()["state"], t2.state_dict()["state"]
    for i in range(len(SIZES)):
        assert a[i].keys() == b[i].keys()
        for k in a[i]:
            assert torch.equal(torch.as_tensor(a[i][k]), torch.as_tensor(b[i][k])), k


def test_an_8bit_checkpoint_into_another_block_size():
    """8-bit codes of another block size are decoded and quantized again (not copied), both ways."""
    rng = np.random.default_rng(5104)
    t, ps = _torch_opt("Adam", {"lr": 1e-2}, {"state_dtype": "int8", "block_size": 64}, _start(rng, False))
    _torch_step(t, ps, _grads(rng, False, len(SIZES)))
    o = oo.Adam([_np(p) for p in ps], lr=1e-2, state_dtype="int8", block_size=128)
    o.load_state_dict(t.state_dict())
    got = o.state_dict()["state"][3]
    assert got["block"] == 128 and got["exp_avg_scale"].shape == (8,)
    t2, _ = _torch_opt("Adam", {"lr": 1e-2}, {"state_dtype": "int8", "block_size": 64}, [_np(p) for p in ps])
    t2.load_state_dict(o.state_dict())
    assert t2.state_dict()["state"][3]["exp_avg_scale"].shape == (16,)


def test_block_and_block_size_disagreeing_are_refused():
    rng = np.random.default_rng(5105)
    t, ps = _torch_opt("Adam", {"lr": 1e-2}, {"state_dtype": "int8", "block_size": 64}, _start(rng, False))
    _torch_step(t, ps, _grads(rng, False, len(SIZES)))
    sd = t.state_dict()
    sd["state"][0]["block"] = 128
    o = oo.Adam([_np(p) for p in ps], lr=1e-2, state_dtype="int8", block_size=64)
    with pytest.raises(ValueError, match=r"\[0\]\['block'\]: 128 disagrees with the entry's 'block_size' 64"):
        o.load_state_dict(sd)
    assert not o.state_dict()["state"]
    t2, _ = _torch_opt("Adam", {"lr": 1e-2}, {"state_dtype": "int8", "block_size": 64}, [_np(p) for p in ps])
    with pytest.raises(ValueError, match=r"\[0\]\['block'\]: 128 disagrees with the entry's 'block_size' 64"):
        t2.load_state_dict(sd)
    assert not t2.state


def test_an_unknown_state_dtype_is_refused_by_the_torch_loader():
    rng = np.random.default_rng(5106)
    o = oo.Adam(_start(rng, False), lr=1e-2, state_dtype="bfloat16")
    o.step(_grads(rng, False, len(SIZES)))
    sd = o.state_dict()
    sd["state"][1]["state_dtype"] = "int4"
    t, _ = _torch_opt("Adam", {"lr": 1e-2}, {"state_dtype": "bfloat16"}, _start(rng, False))
    with pytest.raises(ValueError, match=r"\[1\]\['state_dtype'\]: expected one of .*got 'int4'"):
        t.load_state_dict(sd)
    assert not t.state


def _bf16_optim_checkpoint():
    rng = np.random.default_rng(5107)
    o = oo.Adam(_start(rng, False), lr=1e-2, state_dtype="bfloat16")
    o.step(_grads(rng, False, len(SIZES)))
    return o.state_dict()


def test_an_archived_optim_checkpoint_loads_into_torch():
    """Values as an archive gives them back: a 0-d step (torch's count stays a float32 tensor, not
    an int64 one), a NumPy str format, raw uint16 bf16 bits (no ml_dtypes), big-endian bits."""
    sd = _bf16_optim_checkpoint()
    want = [torch.from_numpy(sd["state"][i]["exp_avg"].view(np.int16).copy()).view(torch.bfloat16) for i in range(4)]
    sd["state"][1]["step"] = np.array(1)
    sd["state"][1]["state_dtype"] = np.str_("bfloat16")
    sd["state"][2]["exp_avg"] = sd["state"][2]["exp_avg"].view(np.uint16)
    sd["state"][3]["exp_avg"] = sd["state"][3]["exp_avg"].view(np.uint16).astype(">u2")
    t, _ = _torch_opt("Adam", {"lr": 1e-2}, {"state_dtype": "bfloat16"}, _start(np.random.default_rng(1), False))
    t.load_state_dict(sd)
    got = t.state_dict()["state"]
    assert got[1]["step"].dtype is torch.float32 and float(got[1]["step"]) == 1.0
    for i in range(4):
        assert got[i]["exp_avg"].dtype is torch.bfloat16
        assert torch.equal(got[i]["exp_avg"].view(torch.int16), want[i].view(torch.int16)), i


def test_a_numpy_integer_block_size_loads_both_ways():
    rng = np.random.default_rng(5108)
    t, ps = _torch_opt("Adam", {"lr": 1e-2}, {"state_dtype": "int8", "block_size": 64}, _start(rng, False))
    _torch_step(t, ps, _grads(rng, False, len(SIZES)))
    sd = t.state_dict()
    sd["state"][3]["block_size"] = np.int64(64)
    t2, _ = _torch_opt("Adam", {"lr": 1e-2}, {"state_dtype": "int8", "block_size": 64}, [_np(p) for p in ps])
    t2.load_state_dict(sd)
    assert torch.equal(t2.state_dict()["state"][3]["exp_avg"], t.state_dict()["state"][3]["exp_avg"])
    o = oo.Adam([_np(p) for p in ps], lr=1e-2, state_dtype="int8", block_size=64)
    o.load_state_dict(sd)
    assert np.array_equal(o.state_dict()["state"][3]["exp_avg"], t.state_dict()["state"][3]["exp_avg"].numpy())


@pytest.mark.parametrize("cfg", [{}, {"state_dtype": "int8"}, {"state_dtype": "bfloat16"}])
def test_to_torch_state_dict_of_an_optim_checkpoint_is_what_torch_optim_loads(cfg):
    """``to_torch_state_dict`` passed an optkern.optim checkpoint's NumPy arrays on (torch.optim's
    loader then raised "expected a sequence of integers", naming nothing). Now torch.optim.Adam
    loads it and steps as an optkern.optim float32 optimizer loaded with it does."""
    rng = np.random.default_rng(5109)
    start = _start(rng, False)
    o = oo.Adam([v.copy() for v in start], lr=1e-2, **cfg)
    o.step(_grads(rng, False, len(SIZES)))
    sd = o.state_dict()
    ref = oo.Adam([v.copy() for v in start], lr=1e-2)  # float32 states: the decoded values
    ref.load_state_dict(sd)
    ps = [_torch(v).requires_grad_() for v in start]
    t = torch.optim.Adam(ps, lr=1e-2)
    t.load_state_dict(ot.to_torch_state_dict(sd))
    for i in range(len(SIZES)):
        want = ref.state_dict()["state"][i]
        for k in ("exp_avg", "exp_avg_sq"):
            np.testing.assert_array_equal(t.state[ps[i]][k].numpy(), want[k])
