"""State dicts (50th hunt, e, continued): optkern.torch's low-precision loader, ZeRO-1 shards and
optkern.torch.SAM; tampered entries are refused by name before anything changes."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import optkern.optim as O
from hunt50e_states import assert_same as _same
from hunt50e_states import frozen as _frozen

torch = pytest.importorskip("torch")
OT = pytest.importorskip("optkern.torch")

# ---- optkern.torch's low-precision loader: tampered entries -----------------------------------------


def _stepped_lowp(cls=None, k: int = 2, **lowp):
    cls = cls or OT.Adam
    dt = torch.bfloat16 if lowp.get("master_weights") else torch.float32
    g = torch.Generator().manual_seed(17)
    ps = [torch.randn(7, generator=g).to(dt).requires_grad_(), torch.randn(2, 3, generator=g).to(dt).requires_grad_()]
    opt = cls(ps, lr=0.01, **lowp)
    for _ in range(k):
        for p in ps:
            p.grad = torch.randn(p.shape, generator=g).to(dt)
        opt.step()
    return ps, opt


def _refused(opt, ps, sd, err, match):
    before, p0 = _frozen(opt), [p.detach().clone() for p in ps]
    with pytest.raises(err, match=match):
        opt.load_state_dict(sd)
    _same(before, _frozen(opt))
    assert all(torch.equal(p, q) for p, q in zip(ps, p0))


@pytest.mark.parametrize("lowp", [dict(state_dtype="int8"), dict(state_dtype="bfloat16"), dict(master_weights=True)])
def test_torch_lowp_refuses_a_none_moment_by_name(lowp):
    """A stepped entry whose exp_avg is None: the plain loader refuses it ('expected a torch.Tensor'),
    the low-precision one loaded it and then refused every step ("missing state 'exp_avg'")."""
    ps, opt = _stepped_lowp(**lowp)
    sd = copy.deepcopy(opt.state_dict())
    sd["state"][0]["exp_avg"] = None
    _refused(opt, ps, sd, ValueError, r"state_dict\['state'\]\[0\]: missing 'exp_avg'")


@pytest.mark.parametrize("lowp", [dict(state_dtype="int8"), dict(state_dtype="bfloat16")])
def test_torch_lowp_loads_a_neg_view_moment_as_its_values(lowp):
    """A lazily negated tensor (``t.neg()._neg_view()``-style: the neg bit set) is loaded as the values
    it shows, as the plain loader does; the low-precision one raised RuntimeError ("Can't call
    numpy() on Tensor that has negative bit set")."""
    ps, opt = _stepped_lowp(**lowp)
    sd = copy.deepcopy(opt.state_dict())
    plain = OT.Adam([p.detach().clone().requires_grad_() for p in ps], lr=0.01)
    plain.load_state_dict(OT.to_torch_state_dict(opt.state_dict()))
    want = plain.state_dict()["state"][0]["exp_avg"].clone()
    lazy = (-want)._neg_view()
    assert lazy.is_neg() and torch.equal(lazy, want)
    sd["state"][0]["exp_avg"] = lazy
    for k in [k for k in sd["state"][0] if k.startswith("exp_avg_scale")]:
        del sd["state"][0][k]
    del sd["state"][0]["exp_avg_sq"]
    sd["state"][0]["exp_avg_sq"] = plain.state_dict()["state"][0]["exp_avg_sq"].clone()
    sd["state"][0].pop("exp_avg_sq_scale", None)
    opt.load_state_dict(sd)
    got = OT.to_torch_state_dict(opt.state_dict())["state"][0]["exp_avg"]
    tol = 0 if lowp["state_dtype"] == "bfloat16" else float(want.abs().max()) / 100
    torch.testing.assert_close(got.float(), want.bfloat16().float() if tol == 0 else want, rtol=0, atol=tol)


def test_torch_lowp_refuses_a_block_size_tensor_by_name():
    """block_size as a 2-element tensor: RuntimeError ("Boolean value of Tensor with more than one
    value is ambiguous") from comparing it with the optimizer's; now the entry is named."""
    ps, opt = _stepped_lowp(state_dtype="int8")
    sd = copy.deepcopy(opt.state_dict())
    sd["state"][0]["block_size"] = torch.tensor([256, 256])
    _refused(opt, ps, sd, ValueError, r"state_dict\['state'\]\[0\]\['block_size'\]")


def test_torch_lowp_refuses_a_sparse_master_by_name():
    """A sparse master_param passed the master's checks and raised NotImplementedError (aminmax on
    SparseCPU) while its values were read; now a TypeError naming it (the moments' check already
    asks for dense tensors)."""
    ps, opt = _stepped_lowp(master_weights=True)
    sd = copy.deepcopy(opt.state_dict())
    sd["state"][0]["master_param"] = sd["state"][0]["master_param"].to_sparse()
    _refused(opt, ps, sd, TypeError, r"state_dict\['state'\]\[0\]\['master_param'\]: expected a dense")


# ---- ZeRO-1 shards (one process: MPI.COMM_SELF) ---------------------------------------------------

_SHARD_BAD = [
    ("step", lambda d: d["optimizer"]["state"][0].__setitem__("step", -1), ValueError, r"\['state'\]\[0\]\['step'\]"),
    (
        "lr",
        lambda d: d["optimizer"]["param_groups"][0].__setitem__("lr", "x"),
        TypeError,
        r"\['param_groups'\]\[0\]\['lr'\]",
    ),
    ("optimizer", lambda d: d.__setitem__("optimizer", None), TypeError, r": expected a dict"),
]


@pytest.mark.parametrize("label, spoil, err, rest", _SHARD_BAD, ids=[b[0] for b in _SHARD_BAD])
def test_sharded_shard_errors_name_the_entry_inside_optimizer(label, spoil, err, rest):
    """A shard is ``{"zero": layout, "optimizer": the local optimizer's state dict}``; an error in the
    local dict named its path as if it were the whole dict (``state_dict['state'][0]['step']``,
    ``state_dict: expected a dict``), an entry the shard does not have. Now under ``['optimizer']``,
    as the layout's own checks name it."""
    MPI = pytest.importorskip("mpi4py.MPI")
    from optkern.distributed import Communicator, ShardedOptimizer

    rng = np.random.default_rng(4)
    ps = [rng.standard_normal(s).astype(np.float32) for s in [(7,), (3, 5)]]
    z = ShardedOptimizer(O.Adam, ps, Communicator(MPI.COMM_SELF), lr=1e-3)
    z.step([rng.standard_normal(p.shape).astype(np.float32) for p in ps])
    sd = copy.deepcopy(z.state_dict())
    spoil(sd)
    before = copy.deepcopy(z.state_dict())
    with pytest.raises(err, match=r"^state_dict\['optimizer'\]" + rest):
        z.load_state_dict(sd)
    np.testing.assert_equal(z.state_dict(), before)


# ---- optkern.torch.SAM: a saved group without rho / adaptive ----------------------------------------


@pytest.mark.parametrize("key", ["rho", "adaptive"])
def test_torch_sam_loads_a_group_without_its_keys_with_its_defaults(key):
    """A saved group without ``rho`` (or ``adaptive``) -- the base optimizer's own checkpoint, say --
    was checked as if it held 0.0 / False, then loaded without it (torch's loader replaces the
    group) and every step raised KeyError. Now the group takes this SAM's value, as a group added
    without them does (``add_param_group``), and steps on as the full checkpoint does."""

    def make():
        g = torch.Generator().manual_seed(21)
        ps = [torch.randn(5, generator=g, requires_grad=True), torch.randn(2, 3, generator=g, requires_grad=True)]
        return ps, OT.SAM(ps, torch.optim.SGD, rho=0.07, adaptive=key == "adaptive", lr=0.1, momentum=0.9)

    def closure_of(opt, ps):
        def closure():
            opt.zero_grad()
            loss = sum((p.sin() * p).sum() for p in ps)
            loss.backward()
            return loss

        return closure

    ps, opt = make()
    for _ in range(2):
        opt.step(closure_of(opt, ps))
    sd = copy.deepcopy(opt.state_dict())
    lacking = copy.deepcopy(sd)
    del lacking["param_groups"][0][key]
    results = []
    for saved in (sd, lacking):
        qs, q = make()
        with torch.no_grad():
            for a, b in zip(qs, ps):
                a.copy_(b)
        q.load_state_dict(copy.deepcopy(saved))
        assert q.param_groups[0][key] == opt.param_groups[0][key]
        q.step(closure_of(q, qs))
        results.append([a.detach().clone() for a in qs])
    for a, b in zip(*results):
        assert torch.equal(a, b)
