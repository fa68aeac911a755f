"""optkern.torch checkpoints carry the stochastic-rounding seed (defect hunt 28).

Defect fixed: the adapter's low-precision optimizers (stochastic rounding of the params, bfloat16
moments, which always round stochastically) saved no seed, so a run resumed from a checkpoint by
an optimizer made with another seed (the default 0, say) drew other random words and diverged
silently. ``state_dict()`` now holds the seed in every non-empty entry, as optkern.optim's
checkpoints do; ``load_state_dict`` takes it over the constructor's, checked (one unsigned 64-bit
int shared by every entry, else an error naming the entry and nothing loaded). A checkpoint
without one (torch.optim's, or an older one) keeps the constructor's seed. torch.optim's loader
keeps the unknown entry and saves it again, so crossing to torch.optim and back keeps it too.
"""

import pytest

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")
from torch_common import step_random, through_file  # noqa: E402

SIZES = [1, 7, 300, 1031]
# (name, hyper-parameters, low-precision keywords, param dtype): every one draws random words
DRAWS = [
    ("Adam", dict(lr=1e-2), dict(master_weights=True, stochastic_rounding=True), torch.bfloat16),
    ("AdamW", dict(lr=1e-2), dict(master_weights=True, stochastic_rounding=True, state_dtype="int8"), torch.bfloat16),
    ("Adam", dict(lr=1e-2), dict(master_weights=True, state_dtype="bfloat16"), torch.float16),
    ("SGD", dict(lr=0.05, momentum=0.9), dict(master_weights=True, stochastic_rounding=True), torch.bfloat16),
    ("RMSprop", dict(lr=1e-2), dict(state_dtype="bfloat16"), torch.float32),
    ("NAdam", dict(lr=1e-2), dict(master_weights=True, stochastic_rounding=True), torch.bfloat16),
    ("AdagradNorm", dict(lr=0.5, b0=0.1), dict(master_weights=True, stochastic_rounding=True), torch.bfloat16),
]
IDS = [f"{n}-{i}" for i, (n, *_) in enumerate(DRAWS)]


def params(dtype):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(n, generator=g).to(dtype) for n in SIZES]


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a.view(torch.uint8), b.view(torch.uint8))


def assert_same_run(a, ps, b, qs):
    for i, (p, q) in enumerate(zip(ps, qs)):
        assert same_bits(p, q), f"params[{i}]"
        assert a.state[p].keys() == b.state[q].keys()
        for k, v in a.state[p].items():
            if isinstance(v, torch.Tensor):
                assert same_bits(v.reshape(-1), b.state[q][k].reshape(-1)), f"state[{i}][{k!r}]"


@pytest.mark.parametrize("name,kw,lp,dtype", DRAWS, ids=IDS)
def test_resumed_run_continues_bit_for_bit_whatever_the_new_seed(name, kw, lp, dtype):
    """k steps, save, n more; a fresh optimizer made with another seed loads the checkpoint and
    steps the same n: params and every state tensor bitwise those of the uninterrupted run."""
    ps = params(dtype)
    a = getattr(ot, name)(ps, **kw, **lp, seed=1234567)
    step_random(a, ps, 1, 3)
    saved = through_file(a.state_dict())
    qs = [p.clone() for p in ps]
    step_random(a, ps, 2, 3)
    b = getattr(ot, name)(qs, **kw, **lp)  # (seed 0)
    b.load_state_dict(saved)
    step_random(b, qs, 2, 3)
    assert_same_run(a, ps, b, qs)


def test_the_seed_is_saved_where_the_step_draws_with_it():
    """A Python int in each non-empty entry (weights_only loads it), none in an empty one or where
    nothing is drawn (nearest rounding, 8-bit moments); the optimizer's own state holds none."""
    for lp, saved in ((dict(stochastic_rounding=True), True), ({}, False)):
        ps = params(torch.bfloat16)
        opt = ot.Adam(ps, lr=1e-2, master_weights=True, state_dtype="int8", seed=2**64 - 1, **lp)
        step_random(opt, ps[:3], 1, 1)  # (the last param without a grad: no state)
        opt.state[ps[3]]  # (an empty entry, as a defaultdict look-up leaves it)
        sd = through_file(opt.state_dict())
        for i in range(3):
            seed = sd["state"][i].get("seed")
            assert (seed, type(seed)) == ((2**64 - 1, int) if saved else (None, type(None))), lp
            assert "seed" not in opt.state[ps[i]]
        assert not sd["state"].get(3)


def test_a_checkpoint_without_a_seed_keeps_the_constructors():
    """An older checkpoint (no seed): the optimizer keeps its own seed, so one made with the saving
    run's seed continues it bitwise, and one with another seed draws other words."""
    lp = dict(master_weights=True, stochastic_rounding=True)
    ps = params(torch.bfloat16)
    a = ot.Adam(ps, lr=1e-2, **lp, seed=5)
    step_random(a, ps, 1, 2)
    old = through_file(a.state_dict())
    for e in old["state"].values():
        assert e.pop("seed") == 5
    step_random(a, ps, 2, 2)
    for seed, same in ((5, True), (6, False)):
        qs = [p.clone() for p in params(torch.bfloat16)]
        b = ot.Adam(qs, lr=1e-2, **lp, seed=seed)
        step_random(b, qs, 1, 2)
        b.load_state_dict(old)
        step_random(b, qs, 2, 2)
        assert all(same_bits(p, q) for p, q in zip(ps, qs)) == same


def test_crossing_to_torch_optim_and_back_keeps_the_seed():
    """bfloat16 moments on float32 params: torch.optim.Adam loads the checkpoint as it is (its
    loader widens the moments exactly and keeps the seed entry) and steps; its checkpoint loads
    back into an optkern.torch Adam of another seed, which then rounds with the saved one. Through
    ``to_torch_state_dict`` the same."""
    ps = [p.float() for p in params(torch.float32)]
    a = ot.Adam(ps, lr=1e-2, state_dtype="bfloat16", seed=99)
    step_random(a, ps, 1, 2)
    for convert in (lambda sd: sd, ot.to_torch_state_dict):
        sd = through_file(convert(a.state_dict()))
        ts = [p.clone() for p in ps]
        t = torch.optim.Adam(ts, lr=1e-2)
        t.load_state_dict(sd)
        for i, p in enumerate(ps):
            assert torch.equal(t.state[ts[i]]["exp_avg"], a.state[p]["exp_avg"].float())
        step_random(t, ts, 3, 1)
        back = through_file(t.state_dict())
        assert {e["seed"] for e in back["state"].values()} == {99}
        ref = ot.Adam([p.clone() for p in ts], lr=1e-2, state_dtype="bfloat16", seed=99)
        b = ot.Adam([p.clone() for p in ts], lr=1e-2, state_dtype="bfloat16")
        for opt in (ref, b):
            opt.load_state_dict(back)
            step_random(opt, opt.param_groups[0]["params"], 4, 2)
        assert_same_run(ref, ref.param_groups[0]["params"], b, b.param_groups[0]["params"])


@pytest.mark.parametrize(
    "seeds,err,match",
    [
        ((1, 2, 1, 1), ValueError, r"state_dict\['state'\]: the entries were saved with different seeds"),
        ((1, -1, 1, 1), ValueError, r"state_dict\['state'\]\[1\]\['seed'\]: must be >= 0"),
        ((1, 2**64, 1, 1), ValueError, r"state_dict\['state'\]\[1\]\['seed'\]: must be < 2\*\*64"),
        ((1, 1, "7", 1), TypeError, r"state_dict\['state'\]\[2\]\['seed'\]: expected an integer, got str"),
        ((1, 1, 1, True), TypeError, r"state_dict\['state'\]\[3\]\['seed'\]: expected an integer, got bool"),
    ],
)
def test_a_bad_saved_seed_is_named_and_nothing_loads(seeds, err, match):
    ps = params(torch.bfloat16)
    a = ot.Adam(ps, lr=1e-2, master_weights=True, stochastic_rounding=True, seed=3)
    step_random(a, ps, 1, 1)
    sd = through_file(a.state_dict())
    for i, s in enumerate(seeds):
        sd["state"][i]["seed"] = s
    qs = [p.clone() for p in ps]
    b = ot.Adam(qs, lr=1e-2, master_weights=True, stochastic_rounding=True, seed=4)
    with pytest.raises(err, match=match):
        b.load_state_dict(sd)
    assert not b.state and b._lowp_cfg.seed == 4
