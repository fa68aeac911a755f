"""Resuming and checkpoints (32nd hunt): a load that ``optkern.load`` rolls back (a later target
refused) must leave every target as it was -- an EarlyStopping's in-memory best checkpoint and a
low-precision optimizer's stochastic-rounding seed were lost there --, checkpoints holding NaN or
inf are refused by name, before anything is assigned (SWA averages, SWALP's momentum buffers), and an
AdamW that loads Adam's state dict stays decoupled, as torch's does."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import optkern
from optkern import optim
from optkern.regularize import EarlyStopping
from optkern.swa import AveragedParams
from optkern.swalp import SWALP


def _save_with_a_bad_lbfgs(path, **objects):
    """A checkpoint of ``objects`` and an LBFGS of one param: ``_refused_lbfgs()`` (two params) cannot
    take it, and only its own loader finds out, after the targets before it were restored."""
    optkern.save(path, **objects, lb=optim.LBFGS([np.zeros(3)]))


def _refused_lbfgs():
    return optim.LBFGS([np.zeros(3), np.zeros(2)])


def test_early_stopping_keeps_its_best_checkpoint_when_a_load_is_rolled_back(tmp_path):
    # The stopper loaded the saved state (no checkpoint kept: its in-memory one dropped), a later
    # target was refused, and the roll-back loaded its old state, which says one was kept: restore()
    # then raised "no checkpoint kept yet" and the best state of the run was gone.
    stopper = EarlyStopping(patience=3)
    stopper.step(1.0, state={"w": np.arange(3.0)})
    before = stopper.state_dict()
    _save_with_a_bad_lbfgs(tmp_path / "ck.npz", stopper=EarlyStopping())
    with pytest.raises(ValueError, match=r"\['lb'\]: state_dict\['param_groups'\]\[0\]\['params'\]"):
        optkern.load(tmp_path / "ck.npz", stopper=stopper, lb=_refused_lbfgs())
    assert stopper.state_dict() == before
    np.testing.assert_array_equal(stopper.restore()["w"], np.arange(3.0))
    # loaded for good, a state that kept none still restores none (as the run it came from)
    stopper.load_state_dict(EarlyStopping().state_dict())
    with pytest.raises(RuntimeError, match="no checkpoint kept yet"):
        stopper.restore()


def _half_params():
    bf16 = pytest.importorskip("ml_dtypes").bfloat16
    return [np.linspace(-1, 1, 300).astype(bf16)], [np.linspace(0.3, -0.2, 300).astype(bf16)]


def test_low_precision_seed_is_kept_when_a_load_is_rolled_back(tmp_path):
    # A fresh optimizer's state_dict() has no entry, so no seed: the roll-back of a load that had set
    # the checkpoint's seed left it there, and the stochastic rounding drew another run's words.
    kw = dict(lr=0.01, master_weights=True, stochastic_rounding=True)
    p, g = _half_params()
    src = optim.Adam(p, seed=7, **kw)
    src.step(g)
    _save_with_a_bad_lbfgs(tmp_path / "ck.npz", opt=src)
    (p, g), (q, _) = _half_params(), _half_params()
    opt, twin = optim.Adam(p, seed=3, **kw), optim.Adam(q, seed=3, **kw)
    with pytest.raises(ValueError, match=r"\['lb'\]: "):
        optkern.load(tmp_path / "ck.npz", opt=opt, lb=_refused_lbfgs())
    opt.step(g)
    twin.step(g)
    np.testing.assert_array_equal(p[0].view(np.uint16), q[0].view(np.uint16))
    # a state dict of an optimizer that has not stepped loads as that optimizer: its own seed
    p, _ = _half_params()
    opt = optim.Adam(p, seed=3, **kw)
    opt.load_state_dict(src.state_dict())
    opt.load_state_dict(optim.Adam(_half_params()[0], seed=3, **kw).state_dict())
    opt.step(g)
    np.testing.assert_array_equal(p[0].view(np.uint16), q[0].view(np.uint16))


def test_optkern_torch_low_precision_seed_is_kept_when_a_load_is_rolled_back(tmp_path):
    # optkern.torch's optimizers: the same roll-back left the checkpoint's seed in a fresh optimizer.
    torch = pytest.importorskip("torch")
    from optkern.torch import Adam

    def params():
        return [torch.nn.Parameter(torch.linspace(-1, 1, 300, dtype=torch.bfloat16))]

    def step(opt, ps):
        for p in ps:
            p.grad = torch.linspace(0.3, -0.2, 300, dtype=torch.bfloat16)
        opt.step()

    kw = dict(lr=0.01, master_weights=True, stochastic_rounding=True)
    ps = params()
    src = Adam(ps, seed=7, **kw)
    step(src, ps)
    _save_with_a_bad_lbfgs(tmp_path / "ck.npz", opt=src)
    p, q = params(), params()
    opt, twin = Adam(p, seed=3, **kw), Adam(q, seed=3, **kw)
    with pytest.raises(ValueError, match=r"\['lb'\]: "):
        optkern.load(tmp_path / "ck.npz", opt=opt, lb=_refused_lbfgs())
    step(opt, p)
    step(twin, q)
    assert torch.equal(p[0].view(torch.int16), q[0].view(torch.int16))


def _averaged():
    ps = [np.linspace(-1, 1, 5).astype(np.float32), np.ones((2, 3), np.float32)]
    avg = AveragedParams(ps, mode="ema", decay=0.5)
    avg.update(ps)
    return avg


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_averaged_params_refuse_a_non_finite_average(value):
    # A checkpoint's NaN / inf average loaded silently (the optimizers refuse non-finite state).
    avg = _averaged()
    before = copy.deepcopy(avg.state_dict())
    sd = copy.deepcopy(before)
    sd["averages"][1][1, 2] = value
    with pytest.raises(ValueError, match=r"^state_dict\['averages'\]\[1\]: 1 non-finite entries"):
        avg.load_state_dict(sd)
    for a, b in zip(avg.averages, before["averages"]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("where", ["buffers", "swa"])
def test_swalp_refuses_a_non_finite_buffer_or_average(where):
    run = SWALP([np.linspace(-1, 1, 5).astype(np.float32)], lr=0.1)
    run.step([np.ones(5, np.float32)])
    before = copy.deepcopy(run.state_dict())
    sd = copy.deepcopy(before)
    (sd["buffers"] if where == "buffers" else sd["swa"]["averages"])[0][2] = np.nan
    name = r"state_dict\['buffers'\]\[0\]" if where == "buffers" else r"state_dict\['swa'\]\['averages'\]\[0\]"
    with pytest.raises(ValueError, match=f"^{name}: 1 non-finite entries"):
        run.load_state_dict(sd)
    after = run.state_dict()
    for a, b in zip(after["buffers"] + after["swa"]["averages"], before["buffers"] + before["swa"]["averages"]):
        np.testing.assert_array_equal(a, b)


def test_adamw_stays_decoupled_when_it_loads_an_adam_state_dict():
    # torch's AdamW keeps decoupled_weight_decay True for any state it loads (its __setstate__); an
    # optkern AdamW loading Adam's state dict (decoupled_weight_decay False) became L2 Adam.
    def params():
        return [np.linspace(-1, 1, 7).astype(np.float32)]

    g = [np.linspace(0.5, -0.5, 7).astype(np.float32)]
    adam = optim.Adam(params(), lr=0.1, weight_decay=0.5)
    adam.step(g)
    sd = adam.state_dict()
    p, q = params(), params()
    opt, twin = optim.AdamW(p), optim.AdamW(q)
    opt.load_state_dict(sd)
    twin.load_state_dict({**sd, "param_groups": [{**sd["param_groups"][0], "decoupled_weight_decay": True}]})
    assert opt.param_groups[0]["decoupled_weight_decay"] is True
    opt.step(g)
    twin.step(g)
    np.testing.assert_array_equal(p[0], q[0])


def test_optkern_torch_adamw_stays_decoupled_when_it_loads_an_adam_state_dict():
    torch = pytest.importorskip("torch")
    from optkern.torch import AdamW

    def params():
        return [torch.nn.Parameter(torch.linspace(-1, 1, 7))]

    def step(opt, ps):
        ps[0].grad = torch.linspace(0.5, -0.5, 7)
        opt.step()

    ps = params()
    adam = torch.optim.Adam(ps, lr=0.1, weight_decay=0.5)
    step(adam, ps)
    ours, theirs = AdamW(params()), torch.optim.AdamW(params())
    for opt in (ours, theirs):
        opt.load_state_dict(adam.state_dict())
    assert ours.param_groups[0]["decoupled_weight_decay"] is theirs.param_groups[0]["decoupled_weight_decay"] is True
