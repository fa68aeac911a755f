"""``to_torch_state_dict`` of a checkpoint whose ``param_groups`` is a tuple (torch.optim's loader takes
any sequence, and so does optkern.torch's): SGD's textbook momentum buffers were left as they were,
their group still "textbook", and torch.optim.SGD loaded them as its b: a step uphill."""

import torch

import optkern.torch as ot


def _textbook_checkpoint():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    opt = ot.SGD([p], lr=0.5, momentum=0.9, momentum_form="textbook")
    p.grad = torch.tensor([1.0, 1.0, -1.0])
    opt.step()
    return p, opt.state_dict()


def test_tuple_param_groups_converted_as_a_list_is():
    p, sd = _textbook_checkpoint()
    want = ot.to_torch_state_dict(sd)
    got = ot.to_torch_state_dict({**sd, "param_groups": tuple(sd["param_groups"])})
    assert got["param_groups"][0]["momentum_form"] == "pytorch"
    assert torch.equal(got["state"][0]["momentum_buffer"], want["state"][0]["momentum_buffer"])
    # torch.optim.SGD then steps on as the textbook optimizer would have (lr 0.5: the same bits)
    q = torch.nn.Parameter(p.detach().clone())
    t = torch.optim.SGD([q], lr=0.5, momentum=0.9)
    t.load_state_dict(got)
    r = torch.nn.Parameter(p.detach().clone())
    mine = ot.SGD([r], lr=0.5, momentum=0.9, momentum_form="textbook")
    mine.load_state_dict(sd)
    q.grad = r.grad = torch.tensor([0.5, -1.0, 2.0])
    t.step()
    mine.step()
    assert torch.equal(q, r)
