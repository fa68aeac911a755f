"""optkern.torch: a param's state changed between steps, entry by entry or in place, against
torch.optim doing the same.

The adapter caches a group's run layout (params of one step count share one native call) and
the views of each run's state; torch reads every param's own state at every step. Each test
changes one param's state between steps -- its step count reset or changed in place, its dict
cleared, SGD's momentum buffer deleted or set to None -- and compares every param and state
entry with torch's for-loop optimizer after more steps.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")

torch.set_num_threads(1)

pytestmark = pytest.mark.usefixtures("float64_default")  # (tests/conftest.py)

# every adapter that counts steps (NAdam: mu_product too), with the step count in its math where torch has it
COUNTED = [
    ("Adam", dict(lr=0.1)),
    ("AdamW", dict(lr=0.1)),
    ("NAdam", dict(lr=0.1)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.5)),
    ("RMSprop", dict(lr=0.01, momentum=0.5, centered=True)),
    ("Adadelta", dict(lr=0.5)),
]
ALL = COUNTED + [("SGD", dict(lr=0.1, momentum=0.9)), ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True))]


def _train(mod, name: str, hp: dict, change, at: int = 3, steps: int = 6):
    """Three params (one group, so one native call while their step counts agree) stepped
    ``steps`` times under ``mod.<name>`` with fresh grads each step; ``change(opt, params)`` runs
    before step ``at``. Returns (params, optimizer)."""
    g = torch.Generator().manual_seed(0)
    ps = [torch.nn.Parameter(torch.randn(4 + i, generator=g)) for i in range(3)]
    kw = {"foreach": False} if mod is torch.optim else {}
    opt = getattr(mod, name)(ps, **hp, **kw)
    for s in range(steps):
        for p in ps:
            p.grad = torch.randn(p.shape, generator=g)
        if s == at:
            change(opt, ps)
        opt.step()
    return ps, opt


def _compare(name: str, hp: dict, change, **kw) -> None:
    """optkern.torch.<name> against torch.optim.<name>, both changed by ``change``: every param
    and every state entry (the state alone tells a reset apart where the params hardly do)."""
    ref, ref_opt = _train(torch.optim, name, hp, change, **kw)
    mine, opt = _train(ot, name, hp, change, **kw)
    for j, (a, b) in enumerate(zip(ref, mine)):
        np.testing.assert_allclose(b.detach().numpy(), a.detach().numpy(), rtol=1e-13, atol=1e-300, err_msg=f"{j}")
        assert set(opt.state[b]) == set(ref_opt.state[a])
        for k, v in ref_opt.state[a].items():
            got = opt.state[b][k]
            assert type(got) is type(v), (j, k)
            if isinstance(v, torch.Tensor):
                assert got.dtype == v.dtype, (j, k)
                np.testing.assert_allclose(got.numpy(), v.numpy(), rtol=1e-13, atol=1e-300, err_msg=f"{j} {k}")


def _reset_entries(opt, ps, j=1):
    """One param's state reset entry by entry: a new step tensor, zeroed moments."""
    st = opt.state[ps[j]]
    for k in list(st):
        if k == "step":
            st[k] = torch.tensor(0.0)
        elif k == "mu_product":
            st[k] = torch.tensor(1.0)
        else:
            st[k] = torch.zeros_like(st[k])


@pytest.mark.parametrize("name, hp", COUNTED, ids=[n for n, _ in COUNTED])
@pytest.mark.parametrize("j", [0, 1])
def test_step_entry_replaced_steps_that_param_with_its_own_count(name, hp, j):
    """Replacing a step entry (and the moments) of one param: it no longer shares the others'
    step count, so it must leave their native call (which uses the first param's count)."""
    _compare(name, hp, lambda o, ps: _reset_entries(o, ps, j))


INPLACE = {
    "fill": lambda st: st["step"].fill_(1.0),
    "zero": lambda st: [st[k].zero_() for k in st if k != "mu_product"],  # (step and moments)
    "add": lambda st: st["step"].add_(5),
    "copy": lambda st: st["step"].copy_(torch.tensor(2.0)),
}


@pytest.mark.parametrize("name, hp", COUNTED, ids=[n for n, _ in COUNTED])
@pytest.mark.parametrize("how", sorted(INPLACE))
@pytest.mark.parametrize("j", [0, 2])
def test_step_changed_in_place_steps_that_param_with_its_own_count(name, hp, how, j):
    """An in-place change of one param's step tensor moves no dict entry: the run layout follows
    it through the step tensors' version counter."""
    _compare(name, hp, lambda o, ps: INPLACE[how](o.state[ps[j]]))


@pytest.mark.parametrize("name, hp", COUNTED[:3], ids=[n for n, _ in COUNTED[:3]])
def test_every_step_changed_alike_in_place_keeps_one_call(name, hp):
    """Every param's step set to the same value in place: still one call, with the new count."""

    def change(o, ps):
        for p in ps:
            o.state[p]["step"].fill_(1.0)

    _compare(name, hp, change)
    mine, opt = _train(ot, name, hp, change)
    assert len(opt._layouts[0][1]) == 1


def test_nadam_mu_product_changed_in_place_is_that_params_own():
    _compare("NAdam", dict(lr=0.1), lambda o, ps: o.state[ps[1]]["mu_product"].mul_(0.5))


@pytest.mark.parametrize("name, hp", ALL, ids=[f"{n}-{i}" for i, (n, _) in enumerate(ALL)])
@pytest.mark.parametrize("j", [0, 1, 2])
def test_state_dict_cleared_starts_that_param_afresh(name, hp, j):
    """``opt.state[p].clear()``: torch makes the param's state anew at the next step (SGD: its
    momentum buffer from that step's grad)."""
    _compare(name, hp, lambda o, ps: o.state[ps[j]].clear())


@pytest.mark.parametrize("how", ["del", "none"])
@pytest.mark.parametrize("j", [0, 1])
@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_buffer_deleted_or_none_is_made_from_the_next_grad(how, j, nesterov):
    """torch's SGD makes a missing or None buffer from the next grad (as at its first step)."""

    def change(o, ps):
        if how == "del":
            del o.state[ps[j]]["momentum_buffer"]
        else:
            o.state[ps[j]]["momentum_buffer"] = None

    _compare("SGD", dict(lr=0.1, momentum=0.9, nesterov=nesterov), change)


def _users_own_dict(name: str, hp: dict, change) -> None:
    """At step 2 one param's state becomes a plain dict the user holds (its changes are not
    counted by the optimizer); at step 4 ``change(that dict)``: optkern.torch against torch."""
    results = []
    for mod in (torch.optim, ot):
        g = torch.Generator().manual_seed(0)
        ps = [torch.nn.Parameter(torch.randn(4 + i, generator=g)) for i in range(3)]
        opt = getattr(mod, name)(ps, **hp)
        held: dict = {}
        for s in range(7):
            for p in ps:
                p.grad = torch.randn(p.shape, generator=g)
            if s == 2:
                held = dict(opt.state[ps[1]])
                opt.state[ps[1]] = held
            if s == 4:
                change(held)
            opt.step()
        results.append(torch.cat([p.detach() for p in ps]))
    np.testing.assert_allclose(results[1].numpy(), results[0].numpy(), rtol=1e-13, atol=1e-300)


def test_sgd_buffer_deleted_in_a_users_own_dict_is_followed():
    _users_own_dict("SGD", dict(lr=0.1, momentum=0.9), lambda d: d.pop("momentum_buffer"))


def test_users_own_dict_cleared_is_followed():
    _users_own_dict("Adam", dict(lr=0.1), lambda d: d.clear())


def test_step_entries_of_a_users_own_dict_changed_later_are_followed():
    _users_own_dict("Adam", dict(lr=0.1), lambda d: d.update(step=torch.tensor(0.0)))


def test_step_entry_replaced_after_a_step_refused_midway_is_followed():
    """A step refused before it wrote (a bad grad in group 1), after it planned group 0's new
    layout: the layout has no cached views yet; a step count replaced before the next step must
    still split group 0's call."""
    results = []
    for mod in (torch.optim, ot):
        g = torch.Generator().manual_seed(0)
        ps = [torch.nn.Parameter(torch.randn(4 + i, generator=g)) for i in range(4)]
        opt = mod.Adam([{"params": ps[:3]}, {"params": ps[3:]}], lr=0.1)
        for s in range(6):
            for p in ps:
                p.grad = torch.randn(p.shape, generator=g)
            if s >= 3:
                ps[0].grad = None  # (group 0's params with a grad change: a new layout)
            if s == 3 and mod is ot:
                good, ps[3].grad = ps[3].grad, ps[3].grad.to_sparse()
                # (met by the step's checks after group 0 was planned; torch's refusal, since hunt 47f)
                with pytest.raises(RuntimeError, match="Adam does not support sparse gradients"):
                    opt.step()
                ps[3].grad = good
            if s == 3:
                _reset_entries(opt, ps, 1)
            opt.step()
        results.append(torch.cat([p.detach() for p in ps]))
    np.testing.assert_allclose(results[1].numpy(), results[0].numpy(), rtol=1e-13, atol=1e-300)


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_joined_step_tensor_version_moves_with_users_changes_only(device):
    """What ``_layout_holds`` relies on: the step's own add on a run's joined step counts leaves
    the joined tensor's ``_version`` alone (a NumPy add on the CPU; off the CPU -- here the meta
    device, where no GPU is lent -- an add through ``.data``), an in-place op on one param's step
    tensor moves it."""
    from optkern.torch._state import _join_scalars

    states = [{"step": torch.tensor(2.0, device=device)} for _ in range(3)]
    joined, bufs = _join_scalars(states, ("step",))
    v0 = bufs[0]._version
    joined["step"] += 1
    assert bufs[0]._version == v0
    states[1]["step"].fill_(0)
    assert bufs[0]._version != v0
