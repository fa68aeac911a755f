"""torch.optim's implementation keywords given to ``add_param_group`` (``{"params": ..., "capturable":
True}``) are checked as the constructor checks them. The constructor refuses ``capturable=True`` and
``differentiable=True`` by name (optkern.torch cannot do either), but a group that asked for them
was added and stepped as if it had not (torch.optim's CPU step refuses a capturable group; on CUDA
it steps it graph-safely), and ``foreach="yes"`` was kept unchecked. Now such a group is refused
by name and not added; what the constructor takes (None / bools, ``capturable`` and
``differentiable`` False) is taken and changes nothing. A checkpoint's groups (a CUDA run's
``capturable=True``) still load: the values are torch's own, its step the same."""

import copy

import pytest

torch = pytest.importorskip("torch")
OT = pytest.importorskip("optkern.torch")

NAMES = ["SGD", "Adagrad", "AdagradNorm", "RMSprop", "Adadelta", "Adam", "AdamW", "NAdam"]


def _pair(name):
    torch.manual_seed(0)
    p, q = torch.nn.Parameter(torch.randn(4)), torch.nn.Parameter(torch.randn(3))
    return p, q, getattr(OT, name)([p], lr=1e-2)


REFUSED = [
    (dict(capturable=True), ValueError, r"^param_groups\[1\]\['capturable'\]: optkern.torch keeps step counts"),
    (dict(differentiable=True), ValueError, r"^param_groups\[1\]\['differentiable'\]: optkern.torch's steps"),
    (dict(foreach="yes"), TypeError, r"^param_groups\[1\]\['foreach'\]: expected None or a bool, got str"),
    (dict(fused=1), TypeError, r"^param_groups\[1\]\['fused'\]: expected None or a bool, got int"),
    (dict(capturable=None), TypeError, r"^param_groups\[1\]\['capturable'\]: expected a bool, got NoneType"),
]


# (a key the class's torch namesake does not take is kept and ignored: test_hunt46i_torch_impl_names)
@pytest.mark.parametrize(
    "name, kw, err, match",
    [(n, *case) for case in REFUSED for n in NAMES if set(case[0]) <= set(getattr(OT, n)._impl_names)],
)
def test_a_group_asking_what_cannot_be_done_is_refused_by_name(name, kw, err, match):
    p, q, opt = _pair(name)
    with pytest.raises(err, match=match):
        opt.add_param_group({"params": [q], **kw})
    assert len(opt.param_groups) == 1  # not added
    p0, q0 = p.detach().clone(), q.detach().clone()
    p.grad, q.grad = torch.ones(4), torch.ones(3)
    opt.step()  # (the optimizer steps on, the refused param untouched)
    assert torch.equal(q.detach(), q0) and not torch.equal(p.detach(), p0)


@pytest.mark.parametrize(
    "kw", [dict(foreach=True), dict(fused=False), dict(capturable=False, differentiable=False, foreach=None)]
)
@pytest.mark.parametrize("name", NAMES)
def test_what_the_constructor_takes_a_group_takes_and_it_changes_nothing(name, kw):
    runs = []
    for extra in ({}, kw):
        p, q, opt = _pair(name)
        opt.add_param_group({"params": [q], "lr": 5e-2, **extra})
        for s in range(3):
            p.grad, q.grad = torch.full((4,), 1.0 + s), torch.full((3,), 2.0 - s)
            opt.step()
        runs.append((p.detach().clone(), q.detach().clone()))
    for a, b in zip(*runs):
        assert torch.equal(a, b)


def test_a_checkpoint_of_a_capturable_run_still_loads_and_steps_as_torch():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(5, dtype=torch.float64))
    ref = torch.optim.Adam([w], lr=1e-2)
    w.grad = torch.ones(5, dtype=torch.float64)
    ref.step()
    saved = copy.deepcopy(ref.state_dict())
    saved["param_groups"][0]["capturable"] = True  # (as a CUDA capturable run saves it)
    mine = torch.nn.Parameter(w.detach().clone())
    opt = OT.Adam([mine], lr=1e-2)
    opt.load_state_dict(saved)
    mine.grad = torch.ones(5, dtype=torch.float64) * 2
    w.grad = torch.ones(5, dtype=torch.float64) * 2
    opt.step()
    ref.step()
    torch.testing.assert_close(mine.detach(), w.detach(), rtol=1e-14, atol=0)
