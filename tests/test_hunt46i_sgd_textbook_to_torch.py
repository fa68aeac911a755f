"""``to_torch_state_dict`` of a textbook-form SGD (``momentum_form="textbook"``: v = -lr b) handed the
buffers v to torch.optim.SGD as they were, which read them as its b: after 2 steps at lr 0.1 its
next steps were off by 0.39 (uphill, scaled by 1 / lr), without a word (optkern.save / load into a
torch.optim.SGD too). Now the buffers become torch's b = -v / lr (the group's lr, rounded as the
step rounds it) and the group's form "pytorch": torch's steps continue the textbook run, bit for
bit at a power-of-two lr, else to rounding; an lr that gives no such b is refused by name.
(Loading torch's buffers into a textbook SGD is refused at its step: test_hunt38g_torch_sgd_form.)"""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import optkern  # noqa: E402
import optkern.torch as ot  # noqa: E402


def _grad(k: int, shape=(7,), dtype=torch.float32):
    g = torch.Generator().manual_seed(100 + k)
    return torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)


def _run(opt, p, ks, dtype=torch.float32):
    for k in ks:
        p.grad = _grad(k, tuple(p.shape), dtype)
        opt.step()


def _start(dtype=torch.float32, shape=(7,)):
    return torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64).to(dtype)


def _textbook_then_torch(kw, lowp=None, dtype=torch.float32, split=3, total=6):
    """(params after ``total`` textbook steps in optkern.torch, params after ``split`` of them then
    torch.optim.SGD from the converted checkpoint, the converted checkpoint)."""
    w0 = _start(dtype)
    p = torch.nn.Parameter(w0.clone())
    ref = ot.SGD([p], momentum_form="textbook", **kw, **(lowp or {}))
    _run(ref, p, range(total), dtype)
    q = torch.nn.Parameter(w0.clone())
    mid = ot.SGD([q], momentum_form="textbook", **kw, **(lowp or {}))
    _run(mid, q, range(split), dtype)
    sd = ot.to_torch_state_dict(copy.deepcopy(mid.state_dict()))
    t = torch.optim.SGD([q], **kw)
    t.load_state_dict(sd)
    _run(t, q, range(split, total), dtype)
    return p.detach(), q.detach(), sd


@pytest.mark.parametrize(
    "kw",
    [
        dict(lr=0.125, momentum=0.9),
        dict(lr=0.25, momentum=0.5, dampening=0.25, weight_decay=0.01),
        dict(lr=2.0**-7, momentum=0.99, maximize=True),
    ],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_power_of_two_lr_continues_bit_for_bit(kw, dtype):
    want, got, sd = _textbook_then_torch(kw, dtype=dtype)
    assert sd["param_groups"][0]["momentum_form"] == "pytorch"
    assert torch.equal(got, want)


@pytest.mark.parametrize(
    "kw",
    [
        dict(lr=0.1, momentum=0.9),
        dict(lr=0.03, momentum=0.9, nesterov=True, weight_decay=1e-3),
        dict(lr=0.07, momentum=0.8, dampening=0.1),
    ],
)
def test_any_lr_continues_to_rounding(kw):
    want, got, _ = _textbook_then_torch(kw)
    # (the buffers as they were read as b: off by ~0.4 after three steps)
    torch.testing.assert_close(got, want, rtol=0, atol=2e-6)


def test_the_buffer_is_the_nearest_float_to_minus_v_over_lr():
    p = torch.nn.Parameter(_start())
    opt = ot.SGD([p], lr=0.1, momentum=0.9, momentum_form="textbook")
    _run(opt, p, range(3))
    v = opt.state[p]["momentum_buffer"].clone()
    sd = opt.state_dict()
    b = ot.to_torch_state_dict(sd)["state"][0]["momentum_buffer"]
    lr32 = float(np.float32(0.1))  # (a float32 step multiplies by float32(lr))
    want = np.array([float(-(x / lr32)) for x in v.double().tolist()]).astype(np.float32)
    assert np.array_equal(b.numpy(), want) and b.dtype is torch.float32
    assert torch.equal(opt.state[p]["momentum_buffer"], v)  # (the optimizer's own untouched)
    assert sd["param_groups"][0]["momentum_form"] == "textbook"  # (the given dict untouched)


@pytest.mark.parametrize("lowp", [dict(state_dtype="int8"), dict(state_dtype="bfloat16"), dict(master_weights=True)])
def test_low_precision_textbook_checkpoints_convert_both_ways_of_storage(lowp):
    dtype = torch.bfloat16 if lowp.get("master_weights") else torch.float32
    kw = dict(lr=0.1, momentum=0.9)
    w0 = _start(dtype, (300,))
    p = torch.nn.Parameter(w0.clone())
    opt = ot.SGD([p], momentum_form="textbook", **kw, **lowp)
    _run(opt, p, range(3), dtype)
    v = ot.to_torch_state_dict(copy.deepcopy(opt.state_dict()))
    buf = opt.state[p]["momentum_buffer"]
    stored = buf if buf.dtype is not torch.uint8 else None
    b = v["state"][0]["momentum_buffer"]
    assert b.dtype is torch.float32 and v["param_groups"][0]["momentum_form"] == "pytorch"
    if stored is not None:
        torch.testing.assert_close(b, -stored.float() / 0.1, rtol=1e-6, atol=0)
    # the same moments as the float32 view of the checkpoint, times -1 / lr
    widened = ot.to_torch_state_dict({**opt.state_dict(), "param_groups": [{"params": [0]}]})
    torch.testing.assert_close(b, -widened["state"][0]["momentum_buffer"] / float(np.float32(0.1)), rtol=1e-6, atol=0)


def test_a_tensor_lr_and_complex_params():
    z0 = torch.complex(_start(), _start() * 0.5)
    z = torch.nn.Parameter(z0.clone())
    opt = ot.SGD([z], lr=torch.tensor(0.125), momentum=0.9, momentum_form="textbook")
    for k in range(3):
        z.grad = torch.complex(_grad(k), _grad(k + 50))
        opt.step()
    sd = ot.to_torch_state_dict(copy.deepcopy(opt.state_dict()))
    v = opt.state[z]["momentum_buffer"]
    assert torch.equal(sd["state"][0]["momentum_buffer"], -v * 8)


def test_the_round_trip_back_into_optkern_keeps_torchs_form():
    kw = dict(lr=0.1, momentum=0.9)
    p = torch.nn.Parameter(_start())
    opt = ot.SGD([p], momentum_form="textbook", **kw)
    _run(opt, p, range(2))
    sd = ot.to_torch_state_dict(copy.deepcopy(opt.state_dict()))
    q, r = torch.nn.Parameter(p.detach().clone()), torch.nn.Parameter(p.detach().clone())
    back, theirs = ot.SGD([q], **kw), torch.optim.SGD([r], **kw)
    back.load_state_dict(copy.deepcopy(sd))
    theirs.load_state_dict(copy.deepcopy(sd))
    _run(back, q, range(2, 5))
    _run(theirs, r, range(2, 5))
    assert torch.equal(q.detach(), r.detach())


@pytest.mark.parametrize("lr", [0.0, -0.1, float("inf"), float("nan")])
def test_an_lr_with_no_torch_form_is_refused_by_name(lr):
    p = torch.nn.Parameter(_start())
    opt = ot.SGD([p], lr=0.1, momentum=0.9, momentum_form="textbook")
    _run(opt, p, range(2))
    sd = copy.deepcopy(opt.state_dict())
    sd["param_groups"][0]["lr"] = lr
    before = sd["state"][0]["momentum_buffer"].clone()
    with pytest.raises(ValueError, match=r"^state_dict\['param_groups'\]\[0\]\['lr'\]: .*momentum_form='textbook'"):
        ot.to_torch_state_dict(sd)
    assert torch.equal(sd["state"][0]["momentum_buffer"], before)


def test_a_buffer_whose_b_overflows_is_refused_by_name():
    p = torch.nn.Parameter(_start())
    opt = ot.SGD([p], lr=0.1, momentum=0.9, momentum_form="textbook")
    _run(opt, p, range(2))
    sd = copy.deepcopy(opt.state_dict())
    sd["param_groups"][0]["lr"] = 1e-40  # (float32's subnormal: v / lr beyond its range)
    with pytest.raises(ValueError, match=r"\['lr'\]: 1e-40 turns the textbook momentum buffer of state 0 .*float32"):
        ot.to_torch_state_dict(sd)


def test_no_buffer_yet_and_momentum_off_groups_convert():
    p, q = torch.nn.Parameter(_start()), torch.nn.Parameter(_start())
    opt = ot.SGD([{"params": [p]}, {"params": [q], "momentum": 0.0}], lr=0.1, momentum=0.9, momentum_form="textbook")
    sd = ot.to_torch_state_dict(opt.state_dict())  # (nothing stepped: no buffers)
    assert [g["momentum_form"] for g in sd["param_groups"]] == ["pytorch", "pytorch"]
    t = torch.optim.SGD([{"params": [p]}, {"params": [q], "momentum": 0.0}], lr=0.1, momentum=0.9)
    t.load_state_dict(sd)


def test_optkern_load_into_torch_sgd_converts(tmp_path):
    kw = dict(lr=0.125, momentum=0.9)
    w0 = _start()
    p = torch.nn.Parameter(w0.clone())
    ref = ot.SGD([p], momentum_form="textbook", **kw)
    _run(ref, p, range(5))
    q = torch.nn.Parameter(w0.clone())
    mid = ot.SGD([q], momentum_form="textbook", **kw)
    _run(mid, q, range(2))
    optkern.save(tmp_path / "ck.npz", opt=mid)
    t = torch.optim.SGD([q], **kw)
    optkern.load(tmp_path / "ck.npz", opt=t)
    _run(t, q, range(2, 5))
    assert torch.equal(q.detach(), p.detach())
