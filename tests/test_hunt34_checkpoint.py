"""Session 34's checkpoint hunt: state dicts that loaded into a low-precision optimizer and left
it unable to step (or silently dropped what they held), and what they now raise before anything
is written. Each test failed before its fix."""

from __future__ import annotations

import copy
import pickle
import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import optkern.torch as OT  # noqa: E402

# (params, keywords) of the low-precision configurations a torch user meets
LOWP = [
    pytest.param(torch.bfloat16, {"master_weights": True}, id="bf16-master"),
    pytest.param(torch.float16, {"master_weights": True, "stochastic_rounding": True, "seed": 7}, id="fp16-master-sr"),
    pytest.param(torch.float32, {"state_dtype": "int8"}, id="int8"),
    pytest.param(torch.float32, {"state_dtype": "bfloat16"}, id="bf16-state"),
    pytest.param(torch.bfloat16, {"master_weights": True, "state_dtype": "int8"}, id="bf16-master-int8"),
]


def _params(dtype, seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(5, 3, generator=g).to(dtype).requires_grad_(), torch.randn(7, generator=g).to(dtype)]


def _stepped(cls, dtype, lowp, seed, steps=2, **hp):
    """An optimizer of two groups (different lr) after ``steps`` steps of fresh random grads."""
    ps = _params(dtype, seed)
    opt = cls([{"params": ps[:1]}, {"params": ps[1:], "lr": 0.005}], lr=0.01, **hp, **lowp)
    g = torch.Generator().manual_seed(seed + 1)
    for _ in range(steps):
        for p in ps:
            p.grad = torch.randn(p.shape, generator=g).to(dtype)
        opt.step()
    return opt, ps


def _snapshot(opt) -> list:
    """Every value of the optimizer's state and groups, as bytes (compared before and after)."""
    out = []
    for st in opt.state.values():
        for k in sorted(st):
            v = st[k]
            out.append(
                (k, v.dtype, tuple(v.shape), v.detach().contiguous().view(-1).view(torch.uint8).clone())
                if isinstance(v, torch.Tensor)
                else (k, v)
            )
    out.append(copy.deepcopy([{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]))
    return out


def _same(a: list, b: list) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if isinstance(x, tuple) and len(x) == 4 and isinstance(x[3], torch.Tensor):
            if not (isinstance(y, tuple) and x[:3] == y[:3] and torch.equal(x[3], y[3])):
                return False
        elif x != y:
            return False
    return True


def _seed(name: str) -> int:
    return zlib.crc32(name.encode())


# (optimizer, hyper-parameters, the state tensor its step needs, how to break the saved dict)
_MISSING = [
    pytest.param(OT.Adam, {}, "exp_avg", lambda sd: sd["state"][1].pop("exp_avg"), id="Adam-no-exp_avg"),
    pytest.param(OT.NAdam, {}, "exp_avg_sq", lambda sd: sd["state"][1].pop("exp_avg_sq"), id="NAdam-no-exp_avg_sq"),
    pytest.param(
        OT.AdamW,
        {},
        "max_exp_avg_sq",
        lambda sd: sd["param_groups"][1].update(amsgrad=True),
        id="AdamW-amsgrad-switched-on",
    ),
    pytest.param(OT.Adagrad, {}, "sum", lambda sd: sd["state"][0].pop("sum"), id="Adagrad-no-sum"),
    pytest.param(
        OT.RMSprop, {"centered": True}, "grad_avg", lambda sd: sd["state"][1].pop("grad_avg"), id="RMSprop-no-grad_avg"
    ),
    pytest.param(OT.Adadelta, {}, "acc_delta", lambda sd: sd["state"][1].pop("acc_delta"), id="Adadelta-no-acc"),
]


@pytest.mark.parametrize("dtype, lowp", LOWP)
@pytest.mark.parametrize("cls, hp, name, damage", _MISSING)
def test_lowp_load_refuses_an_entry_without_a_needed_state(cls, hp, name, damage, dtype, lowp):
    # a stepped param's saved entry without a state tensor its step reads: a float32 optimizer
    # refuses it at load; the low-precision one loaded it, and every later step then raised
    # "missing state" (the run could not continue, and the old state was gone)
    seed = _seed(f"{cls.__name__}{name}")
    src, _ = _stepped(cls, dtype, lowp, seed, steps=3, **hp)
    sd = copy.deepcopy(src.state_dict())
    damage(sd)
    target, ps = _stepped(cls, dtype, lowp, seed + 2, **hp)
    before = _snapshot(target)
    with pytest.raises(ValueError, match=rf"state_dict\['state'\]\[\d\]: missing '{name}'"):
        target.load_state_dict(sd)
    assert _same(before, _snapshot(target))
    for p in ps:  # and the optimizer still steps
        p.grad = torch.ones_like(p)
    target.step()


@pytest.mark.parametrize("dtype, lowp", LOWP)
def test_sgd_entry_without_its_buffer_steps_from_the_next_grad(dtype, lowp):
    # torch's SGD makes a missing (or None) momentum buffer from the next grad, and so does the
    # float32 optkern.torch.SGD; with 8-bit state every step after such a load refused the buffer's
    # missing block scales (the buffer and its scales are made together)
    src, _ = _stepped(OT.SGD, dtype, lowp, 11, steps=3, momentum=0.9)
    sd = copy.deepcopy(src.state_dict())
    sd["state"][0].pop("momentum_buffer")
    target, ps = _stepped(OT.SGD, dtype, lowp, 12, momentum=0.9)
    target.load_state_dict(sd)
    master = target.state[ps[0]].get("master_param")
    w = (master if master is not None else ps[0]).detach().double().clone()
    g = torch.Generator().manual_seed(13)
    for p in ps:
        p.grad = torch.randn(p.shape, generator=g).to(dtype)
    target.step()
    # the first step of a buffer: buf = g, so w <- w - lr g (float32 arithmetic, lr of group 0)
    want = (w.float() - np.float32(0.01) * ps[0].grad.float()).double()
    got = target.state[ps[0]].get("master_param", ps[0]).detach().double()
    assert torch.allclose(got, want, rtol=0, atol=1e-6)
    assert target.state[ps[0]]["momentum_buffer"].shape == ps[0].shape


@pytest.mark.parametrize("bad", ["x", [1.0, 2.0]], ids=["str", "list"])
@pytest.mark.parametrize("cls", [OT.Adam, OT.SGD, OT.AdagradNorm])
def test_master_weights_load_refuses_a_master_that_is_not_a_tensor(cls, bad):
    # a master copy that is no tensor was read as "no master": the loaded optimizer went on from
    # the half param, the saved float32 weights silently dropped (a wrong-sized tensor is refused)
    hp = {"momentum": 0.9} if cls is OT.SGD else {}
    lowp = {"master_weights": True}
    src, _ = _stepped(cls, torch.bfloat16, lowp, 21, steps=3, **hp)
    sd = copy.deepcopy(src.state_dict())
    sd["state"][0]["master_param"] = bad
    target, _ = _stepped(cls, torch.bfloat16, lowp, 22, **hp)
    before = _snapshot(target)
    with pytest.raises(TypeError, match=r"state_dict\['state'\]\[0\]\['master_param'\]: expected a tensor"):
        target.load_state_dict(sd)
    assert _same(before, _snapshot(target))


@pytest.mark.parametrize("cls", [OT.Adam, OT.SGD, OT.AdagradNorm])
def test_master_weights_load_takes_a_numpy_master_as_its_values(cls):
    # (hunt 51f) a NumPy master is optkern.optim's form of the entry (``_lowp_schema.as_torch``):
    # loaded as those float32 values, not dropped for the half param (the defect above)
    hp = {"momentum": 0.9} if cls is OT.SGD else {}
    lowp = {"master_weights": True}
    src, _ = _stepped(cls, torch.bfloat16, lowp, 21, steps=3, **hp)
    sd = copy.deepcopy(src.state_dict())
    shape = tuple(sd["state"][0]["master_param"].shape)
    mine = np.random.default_rng(5).standard_normal(shape).astype(np.float32)
    sd["state"][0]["master_param"] = mine
    target, ps = _stepped(cls, torch.bfloat16, lowp, 22, **hp)
    target.load_state_dict(sd)
    assert np.array_equal(target.state[ps[0]]["master_param"].numpy(), mine)
    wrong = copy.deepcopy(src.state_dict())
    wrong["state"][0]["master_param"] = np.zeros(15, np.float32)  # (the param is 5 x 3)
    before = _snapshot(target)
    with pytest.raises(ValueError, match=r"state_dict\['state'\]\[0\]\['master_param'\]"):
        target.load_state_dict(wrong)
    assert _same(before, _snapshot(target))


# ---- optkern.distributed.ShardedOptimizer (world size 1, in process) ----------------------------

_CONSOLIDATED_DAMAGE = [
    pytest.param(lambda sd: sd.update(extra=1), r"^state_dict: unknown key 'extra'", id="unknown-top-key"),
    pytest.param(
        lambda sd: sd["state"].update({7: copy.deepcopy(sd["state"][0])}),
        r"^state_dict\['state'\]\[7\]: no parameter group lists this index",
        id="unlisted-index",
    ),
    pytest.param(lambda sd: sd["state"][2].clear(), r"^state_dict\['state'\]\[2\]", id="empty-entry-of-a-group"),
]


@pytest.mark.parametrize("damage, match", _CONSOLIDATED_DAMAGE)
@pytest.mark.parametrize(
    "name, hp, lowp",
    [
        ("Adam", {"amsgrad": True}, {}),
        ("SGD", {"momentum": 0.9}, {}),
        ("RMSprop", {"centered": True}, {"state_dtype": "int8"}),
        ("NAdam", {}, {"state_dtype": "bfloat16"}),
    ],
)
def test_sharded_load_of_a_consolidated_dict_refuses_what_the_unsharded_optimizer_refuses(
    name, hp, lowp, damage, match
):
    # a consolidated dict loads "as an unsharded optimizer checks it", but its resharding read only
    # the listed entries: an unknown key and an unlisted index were dropped in silence, and a
    # group whose only entry was emptied restarted its state (the unsharded load refuses all three)
    pytest.importorskip("mpi4py")
    from optkern import optim
    from optkern.distributed import Communicator, ShardedOptimizer

    cls = getattr(optim, name)
    rng = np.random.default_rng(_seed(name))

    def stepped():
        ps = [rng.standard_normal(s).astype(np.float32) for s in ((5, 3), (7,), (4, 2))]
        z = ShardedOptimizer(
            cls, [{"params": ps[:2]}, {"params": ps[2:], "lr": 0.005}], Communicator(), lr=0.01, **hp, **lowp
        )
        for _ in range(2):
            z.step([rng.standard_normal(p.shape).astype(np.float32) for p in ps])
        return z, ps

    src, sps = stepped()
    sd = copy.deepcopy(src.consolidate_state_dict())
    damage(sd)
    plain = cls(
        [{"params": [p.copy() for p in sps[:2]]}, {"params": [sps[2].copy()], "lr": 0.005}], lr=0.01, **hp, **lowp
    )
    with pytest.raises(ValueError, match=match):
        plain.load_state_dict(sd)  # (the unsharded optimizer's answer: the same refusal)
    target, _ = stepped()
    before = target.consolidate_state_dict()
    with pytest.raises(ValueError, match=match):
        target.load_state_dict(sd)
    after = target.consolidate_state_dict()
    for i, entry in before["state"].items():
        for k, v in entry.items():
            assert np.array_equal(np.asarray(v), np.asarray(after["state"][i][k])), (i, k)


# ---- optkern.torch: a fractional step count -------------------------------------------------------


def _adam_pair(seed):
    g = torch.Generator().manual_seed(seed)
    p = torch.randn(6, generator=g).requires_grad_()
    opt = OT.Adam([p], lr=0.1)
    p.grad = torch.randn(6, generator=g)
    opt.step()
    return opt, p


@pytest.mark.parametrize("step", [torch.tensor(1.5), 2.25, torch.tensor([0.5])], ids=["tensor", "float", "1-element"])
def test_torch_load_refuses_a_fractional_step_count(step):
    # a step count of 1.5 loaded, and the next step ran with the bias corrections of step
    # int(1.5) + 1 = 2 while the state said 2.5 (torch.optim's Adam uses 2.5): neither its own
    # count nor torch's result. optkern.optim refuses a fraction; so does this loader now
    src, _ = _adam_pair(31)
    sd = copy.deepcopy(src.state_dict())
    sd["state"][0]["step"] = step
    target, _ = _adam_pair(32)
    before = _snapshot(target)
    with pytest.raises(ValueError, match=r"state_dict\['state'\]\[0\]\['step'\]: expected a whole number of steps"):
        target.load_state_dict(sd)
    assert _same(before, _snapshot(target))


def test_torch_step_refuses_a_fractional_step_count_set_between_steps():
    # the same count written into the live state: stepped as int(step) + 1, its count then 2.5
    opt, p = _adam_pair(33)
    opt.state[p]["step"] = torch.tensor(1.5)
    before = p.detach().clone()
    p.grad = torch.ones_like(p)
    with pytest.raises(ValueError, match=r"\['step'\]: expected a whole number of steps, got 1.5"):
        opt.step()
    assert torch.equal(p.detach(), before)
    assert float(opt.state[p]["step"]) == 1.5


# ---- optkern.torch: NaN / inf / negative second moments in a loaded state -----------------------

_TORCH_VALUES = [
    pytest.param(OT.Adam, "exp_avg", float("nan"), "NaN or inf", id="Adam-exp_avg-nan"),
    pytest.param(OT.Adam, "exp_avg_sq", -1.0, "negative", id="Adam-exp_avg_sq-negative"),
    pytest.param(OT.RMSprop, "square_avg", float("inf"), "NaN or inf", id="RMSprop-square_avg-inf"),
    pytest.param(OT.Adagrad, "sum", -0.5, "negative", id="Adagrad-sum-negative"),
    pytest.param(OT.Adadelta, "acc_delta", float("nan"), "NaN or inf", id="Adadelta-acc_delta-nan"),
    pytest.param(OT.SGD, "momentum_buffer", float("-inf"), "NaN or inf", id="SGD-buffer-inf"),
]


@pytest.mark.parametrize("dtype, lowp", [pytest.param(torch.float32, {}, id="float32"), *LOWP])
@pytest.mark.parametrize("cls, name, value, what", _TORCH_VALUES)
def test_torch_load_refuses_non_finite_or_negative_state(cls, name, value, what, dtype, lowp):
    # such a state loaded (the checks looked at dtypes and shapes only) and the next step wrote NaN
    # into its param (sqrt of a negative second moment, or the NaN itself): the resumed model
    # was lost one step later. optkern.optim's loader refuses both, naming the entry
    hp = {"momentum": 0.9} if cls is OT.SGD else {}
    seed = _seed(f"{cls.__name__}{name}{value}")
    src, _ = _stepped(cls, torch.float32, {}, seed, **hp)  # (a float32 checkpoint: every target converts it)
    sd = copy.deepcopy(src.state_dict())
    sd["state"][1][name].view(-1)[3] = value
    target, ps = _stepped(cls, dtype, lowp, seed + 1, **hp)
    before = _snapshot(target)
    with pytest.raises(ValueError, match=rf"state_dict\['state'\]\[1\]\['{name}'\]: holds {what}"):
        target.load_state_dict(sd)
    assert _same(before, _snapshot(target))


def test_torch_master_weights_load_refuses_a_nan_master():
    # the float32 master is the weights the step updates: a NaN in it came out in the param
    src, _ = _stepped(OT.Adam, torch.bfloat16, {"master_weights": True}, 51)
    sd = copy.deepcopy(src.state_dict())
    sd["state"][0]["master_param"][2, 1] = float("nan")
    target, _ = _stepped(OT.Adam, torch.bfloat16, {"master_weights": True}, 52)
    before = _snapshot(target)
    with pytest.raises(ValueError, match=r"state_dict\['state'\]\[0\]\['master_param'\]: holds NaN or inf"):
        target.load_state_dict(sd)
    assert _same(before, _snapshot(target))


# ---- LBFGS: the last step length -----------------------------------------------------------------


def _quadratic_closure(ps, backend):
    """A strictly convex quartic in float64 (an independent loss; grads in the params' dtype)."""
    rng = np.random.default_rng(61)
    a = rng.standard_normal((6, 6))
    a = a @ a.T / 6 + np.eye(6)

    def numpy_closure():
        x = ps[0].astype(np.float64)
        return float(0.5 * x @ a @ x + 0.1 * np.sum(x**4)), [(a @ x + 0.4 * x**3).astype(ps[0].dtype)]

    def torch_closure():
        ps[0].grad = None
        x = ps[0]
        loss = 0.5 * x @ torch.from_numpy(a).to(x.dtype) @ x + 0.1 * (x**4).sum()
        loss.backward()
        return loss

    return numpy_closure if backend == "numpy" else torch_closure


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_lbfgs_load_refuses_a_negative_step_length(backend):
    # 't' is the last step's length (>= 0 after any step): the next step's first curvature pair is
    # s = t d, so a negative one entered the history reversed, silently
    from optkern import optim

    def make(seed):
        x = np.random.default_rng(seed).standard_normal(6).astype(np.float32)
        if backend == "numpy":
            ps = [x]
            opt = optim.LBFGS(ps, lr=0.5, max_iter=3, history_size=4)
        else:
            ps = [torch.from_numpy(x).requires_grad_()]
            opt = OT.LBFGS(ps, lr=0.5, max_iter=3, history_size=4)
        for _ in range(2):
            opt.step(_quadratic_closure(ps, backend))
        return opt

    src = make(62)
    sd = copy.deepcopy(src.state_dict())
    assert sd["state"][0]["t"] >= 0
    sd["state"][0]["t"] = -0.25
    target = make(63)
    before = pickle.dumps(target.state_dict())
    with pytest.raises(ValueError, match=r"state_dict\['state'\]\[0\]\['t'\]: must be in \[0.0, inf\)"):
        target.load_state_dict(sd)
    assert pickle.dumps(target.state_dict()) == before
