"""Tensors with torch's lazy negation bit (``torch._neg_view``; ``z.conj().imag`` of a complex
``z``) as optkern.torch params, grads and state.

torch.optim reads and writes them as the values they show. optkern's views cannot carry the bit:
NumPy refuses such a tensor (RuntimeError "Can't call numpy() on Tensor that has negative bit
set") and DLPack hands its memory over without the sign (a CUDA step would update the negated
values). optkern.torch refused only a negated grad of a first-order step by name
(``_refuse_neg_view``); a negated param (every optimizer, LBFGS, SAM), a negated grad given to
``clip_grad_norm_`` / ``clip_grad_value_``, or a negated state tensor raised NumPy's RuntimeError
from deep inside, naming nothing. Now: a ValueError naming the tensor, nothing written; a negated
state tensor in a checkpoint is loaded as the values it shows (as torch's step reads it).
"""

import copy

import pytest

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")

NEG = "negat"


def _neg(values):
    """A real leaf with the negative bit set, showing ``values``."""
    return torch._neg_view(-torch.tensor(values))


@pytest.mark.parametrize("name", ["SGD", "Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW", "NAdam", "AdagradNorm"])
def test_negated_param_refused_by_name(name):
    a = torch.ones(3)
    p = _neg([2.0, -1.0, 0.5])
    with pytest.raises(ValueError, match=NEG) as e:
        getattr(ot, name)([a, p], lr=0.1)
    assert "param_groups[0]['params'][1]" in str(e.value)


def test_negated_param_added_later_refused_by_name():
    opt = ot.Adam([torch.ones(3)])
    with pytest.raises(ValueError, match=NEG) as e:
        opt.add_param_group({"params": [_neg([1.0, 2.0])]})
    assert "param_groups[1]['params'][0]" in str(e.value)
    assert len(opt.param_groups) == 1


def test_lbfgs_negated_param_refused_by_name():
    with pytest.raises(ValueError, match=NEG) as e:
        ot.LBFGS([_neg([1.0, 2.0])])
    assert "param_groups[0]['params'][0]" in str(e.value)


def test_sam_negated_param_refused_by_name_nothing_moved():
    a = torch.ones(3)
    a.grad = torch.ones(3)
    opt = ot.SAM([a], ot.SGD, lr=0.1)
    p = _neg([2.0, -1.0])
    p.grad = torch.ones(2)
    opt.param_groups[0]["params"].append(p)  # (a param set after construction, as a user may)
    with pytest.raises(ValueError, match=NEG) as e:
        opt.first_step()
    assert "param_groups[0]['params'][1]" in str(e.value)
    assert a.tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("fn", ["norm", "value"])
def test_clip_negated_grad_refused_by_name(fn):
    a, b = torch.ones(3, requires_grad=True), torch.ones(3, requires_grad=True)
    a.grad = torch.full((3,), 10.0)
    b.grad = _neg([10.0, -10.0, 1.0])
    with pytest.raises(ValueError, match=NEG) as e:
        ot.clip_grad_norm_([a, b], 1.0) if fn == "norm" else ot.clip_grad_value_([a, b], 1.0)
    assert "parameters[1].grad" in str(e.value)
    assert torch.equal(a.grad, torch.full((3,), 10.0))


def test_negated_state_in_checkpoint_loads_as_its_values():
    src_p = torch.ones(3)
    src_p.grad = torch.tensor([1.0, -2.0, 0.5])
    src = torch.optim.Adam([src_p])
    src.step()
    out = []
    for mod in (torch.optim, ot):
        # (a checkpoint each: torch's loader keeps a checkpoint's tensors as its state, and steps them)
        sd = copy.deepcopy(src.state_dict())
        sd["state"][0]["exp_avg"] = torch._neg_view(-sd["state"][0]["exp_avg"])
        p = torch.ones(3)
        p.grad = torch.tensor([0.5, 1.0, -1.0])
        opt = mod.Adam([p])
        opt.load_state_dict(sd)
        opt.step()
        out.append((p, opt.state[p]["exp_avg"]))
    (p1, m1), (p2, m2) = out
    torch.testing.assert_close(p2, p1)
    torch.testing.assert_close(m2.resolve_neg(), m1.resolve_neg())


def test_negated_state_assigned_refused_by_name_nothing_written():
    a, p = torch.ones(2), torch.ones(3)
    a.grad, p.grad = torch.ones(2), torch.ones(3)
    opt = ot.Adam([a, p])
    opt.step()
    opt.state[p]["exp_avg"] = torch._neg_view(-opt.state[p]["exp_avg"].clone())
    before = [a.clone(), p.clone()]
    with pytest.raises(ValueError, match=NEG) as e:
        opt.step()
    assert "state[param_groups[0]['params'][1]]['exp_avg']" in str(e.value)
    assert torch.equal(a, before[0]) and torch.equal(p, before[1])
