"""optkern.torch on channels_last models: params contiguous in another order of their dims are
stepped in place in memory order, with grads and state of the same layout, as torch.optim steps
them; a grad or state of another layout is read by index, as torch reads it; checkpoints cross layouts."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")

import optkern.torch as ot  # noqa: E402

NAMES = ["SGD", "Adagrad", "AdagradNorm", "RMSprop", "Adadelta", "Adam", "AdamW", "NAdam"]
HYPER = {
    "SGD": dict(lr=0.02, momentum=0.9, nesterov=True, weight_decay=1e-2),
    "RMSprop": dict(lr=1e-2, momentum=0.5, centered=True),
    "Adam": dict(lr=1e-2, amsgrad=True),
}
CL = torch.channels_last


pytestmark = pytest.mark.usefixtures("float64_default")  # (tests/conftest.py)


def cnn(layout=CL):
    torch.manual_seed(0)
    m = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.Tanh(), torch.nn.Conv2d(8, 4, 3), torch.nn.Flatten(), torch.nn.Linear(100, 3)
    )
    return m.to(memory_format=layout)


def batch(layout=CL):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(5, 3, 9, 9, generator=gen).to(memory_format=layout)
    return x, torch.randint(0, 3, (5,), generator=gen)


def train(model, opt, steps, layout=CL):
    x, y = batch(layout)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def rel(a, b) -> float:
    with torch.no_grad():
        return max(float((p - q).abs().max() / q.abs().max()) for p, q in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize("name", NAMES)
def test_trains_like_torch_on_a_channels_last_cnn(name):
    hp = HYPER.get(name, dict(lr=1e-2))
    ours, ref = cnn(), cnn()
    w = ours[0].weight
    assert not w.is_contiguous() and w.is_contiguous(memory_format=CL)
    start = w.detach().clone()
    opt = getattr(ot, name)(ours.parameters(), **hp)
    train(ours, opt, 6)
    assert not ours[0].weight.is_contiguous() and not torch.equal(ours[0].weight, start)  # in place, trained
    if hasattr(torch.optim, name):
        train(ref, getattr(torch.optim, name)(ref.parameters(), **hp, foreach=False), 6)
        assert rel(ours, ref) < 1e-12
    else:  # AdaGrad-Norm: the same as on the contiguous model, to the convolutions' rounding
        flat = cnn(torch.contiguous_format)
        train(flat, getattr(ot, name)(flat.parameters(), **hp), 6, torch.contiguous_format)
        assert rel(ours, flat) < 1e-9
    for p in ours[0].parameters():  # the state in its param's layout
        for t in opt.state[p].values():
            if isinstance(t, torch.Tensor) and t.shape == p.shape:
                assert t.stride() == p.stride()


def test_a_grad_or_state_of_another_layout_steps_as_torch():
    """Read by index, as torch.optim reads them (hunt 53d; refused by name before): the grad through
    a copy in its param's layout (put back), the state put in its param's layout in place."""
    model, ref = cnn(), cnn()
    opt = ot.Adam(model.parameters(), lr=1e-2)
    theirs = torch.optim.Adam(ref.parameters(), lr=1e-2, foreach=False)
    train(model, opt, 1)
    train(ref, theirs, 1)
    for m, o in ((model, opt), (ref, theirs)):
        w = m[0].weight
        w.grad = w.grad.contiguous()  # same values, NCHW memory
        o.step()
        assert w.grad.is_contiguous()
        w.grad = w.grad.to(memory_format=CL)
        o.state[w]["exp_avg"] = o.state[w]["exp_avg"].contiguous()
        o.step()
    assert opt.state[model[0].weight]["exp_avg"].stride() == model[0].weight.stride()
    assert rel(model, ref) < 1e-9


@pytest.mark.parametrize("there", [CL, torch.contiguous_format])
def test_checkpoints_cross_layouts(there):
    """A checkpoint of a model of one layout continues on the other as torch.optim continues it."""
    here = torch.contiguous_format if there is CL else CL
    src = cnn(here)
    opt = ot.AdamW(src.parameters(), lr=1e-2)
    train(src, opt, 3, here)
    saved = copy.deepcopy(opt.state_dict())
    ours, ref = cnn(there), cnn(there)
    for m in (ours, ref):
        m.load_state_dict(src.state_dict())
    mine = ot.AdamW(ours.parameters(), lr=1e-2)
    mine.load_state_dict(copy.deepcopy(saved))
    w = ours[0].weight
    assert mine.state[w]["exp_avg"].stride() == w.stride()  # put in the param's layout on loading
    theirs = torch.optim.AdamW(ref.parameters(), lr=1e-2, foreach=False)
    theirs.load_state_dict(copy.deepcopy(saved))
    train(ours, mine, 3, there)
    train(ref, theirs, 3, there)
    assert rel(ours, ref) < 1e-12


def test_clip_grad_norm_and_value_of_channels_last_grads():
    a, b = cnn(), cnn()
    for m in (a, b):
        x, y = batch()
        torch.nn.functional.cross_entropy(m(x), y).backward()
    assert not a[0].weight.grad.is_contiguous()
    total = ot.clip_grad_norm_(a.parameters(), 0.1)
    want = torch.nn.utils.clip_grad_norm_(b.parameters(), 0.1, foreach=False)
    torch.testing.assert_close(total, want, rtol=1e-13, atol=0)
    ot.clip_grad_value_(a.parameters(), 1e-3)
    torch.nn.utils.clip_grad_value_(b.parameters(), 1e-3)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-13, atol=0)
        assert p.grad.stride() == q.grad.stride()


def test_low_precision_storage_and_non_dense_params_are_refused_by_name():
    w = cnn()[0].weight.detach().to(torch.bfloat16).to(memory_format=CL).requires_grad_()
    with pytest.raises(ValueError, match=r"^param_groups\[0\]\['params'\]\[0\]: low-precision storage needs a contig"):
        ot.AdamW([w], lr=1e-2, master_weights=True)
    gappy = torch.zeros(4, 6)[:, ::2].requires_grad_()  # every other column: not dense in any order
    with pytest.raises(ValueError, match=r"^param_groups\[0\]\['params'\]\[0\]: tensor must be contiguous"):
        ot.Adam([gappy], lr=1e-2)
