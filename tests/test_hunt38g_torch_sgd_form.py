"""optkern.torch.SGD's momentum buffers are in the form they were written in: PyTorch's b, or the
textbook v = -lr b (opposite signs). A group's momentum_form changed between steps read them in the
other form and stepped uphill (3 steps at lr 0.1, momentum 0.9, grad +1: params -0.561, then +1.778
where about -0.9 was due), as did torch's state dict (no momentum_form: its buffers are b) loaded
into a textbook SGD. Now such a step raises ValueError naming the group's momentum_form, before
anything is written (tests/test_hunt38f_sgd_form.py: the same for optkern.optim.SGD)."""

import copy

import pytest

torch = pytest.importorskip("torch")
OT = pytest.importorskip("optkern.torch")


def _model(n=2):
    return [torch.nn.Parameter(torch.zeros(3, dtype=torch.float64)) for _ in range(n)]


def _steps(opt, ps, k):
    for _ in range(k):
        for p in ps:
            p.grad = torch.ones(3, dtype=torch.float64)
        opt.step()


@pytest.mark.parametrize("first, then", [("pytorch", "textbook"), ("textbook", "pytorch")])
def test_changing_the_form_with_buffers_held_raises_and_writes_nothing(first, then):
    ps = _model()
    opt = OT.SGD(ps, lr=0.1, momentum=0.9, momentum_form=first)
    _steps(opt, ps, 3)
    before = [p.detach().clone() for p in ps]
    bufs = [opt.state[p]["momentum_buffer"].clone() for p in ps]
    opt.param_groups[0]["momentum_form"] = then
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['momentum_form'\]"):
        _steps(opt, ps, 1)
    for p, b, q, c in zip(ps, before, ps, bufs):
        assert torch.equal(p.detach(), b) and torch.equal(opt.state[q]["momentum_buffer"], c)
    opt.param_groups[0]["momentum_form"] = first  # set back: steps on as before
    _steps(opt, ps, 1)
    assert all(float(p.detach()[0]) < float(b[0]) for p, b in zip(ps, before))


def test_changing_the_form_while_momentum_is_off_is_refused_when_it_comes_back_on():
    ps = _model(1)
    opt = OT.SGD(ps, lr=0.1, momentum=0.9)
    _steps(opt, ps, 2)
    opt.param_groups[0]["momentum"] = 0.0
    opt.param_groups[0]["momentum_form"] = "textbook"
    _steps(opt, ps, 1)  # (no buffer read)
    opt.param_groups[0]["momentum"] = 0.9
    with pytest.raises(ValueError, match="momentum_form"):
        _steps(opt, ps, 1)


def test_torch_state_dict_into_a_textbook_sgd_is_not_read_as_v():
    t = _model(1)
    topt = torch.optim.SGD(t, lr=0.1, momentum=0.9)
    _steps(topt, t, 3)
    sd = copy.deepcopy(topt.state_dict())
    assert "momentum_form" not in sd["param_groups"][0]
    ps = [torch.nn.Parameter(t[0].detach().clone())]
    opt = OT.SGD(ps, lr=0.1, momentum=0.9, momentum_form="textbook")
    opt.load_state_dict(sd)
    before = ps[0].detach().clone()
    with pytest.raises(ValueError, match="momentum_form"):
        _steps(opt, ps, 1)
    assert torch.equal(ps[0].detach(), before)
    # its own form said: steps on as torch does
    opt.param_groups[0]["momentum_form"] = "pytorch"
    _steps(opt, ps, 2)
    _steps(topt, t, 2)
    assert torch.equal(ps[0].detach(), t[0].detach())


def test_a_checkpoint_keeps_its_form():
    ps = _model(1)
    opt = OT.SGD(ps, lr=0.1, momentum=0.9, momentum_form="textbook")
    _steps(opt, ps, 2)
    sd = copy.deepcopy(opt.state_dict())  # (torch's state_dict holds the live tensors, as torch's)
    qs = [torch.nn.Parameter(ps[0].detach().clone())]
    other = OT.SGD(qs, lr=0.1, momentum=0.9, momentum_form="textbook")
    other.load_state_dict(sd)
    _steps(opt, ps, 2)
    _steps(other, qs, 2)
    assert torch.equal(ps[0].detach(), qs[0].detach())


def test_the_form_travels_with_a_pickled_optimizer():
    ps = _model(1)
    opt = OT.SGD(ps, lr=0.1, momentum=0.9, momentum_form="textbook")
    _steps(opt, ps, 2)
    ps2, opt2 = copy.deepcopy((ps, opt))
    opt2.param_groups[0]["momentum_form"] = "pytorch"
    with pytest.raises(ValueError, match="momentum_form"):
        _steps(opt2, ps2, 1)
