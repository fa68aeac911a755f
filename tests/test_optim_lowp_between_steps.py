"""Low-precision optimizers across steps: what changes between two steps (a param made read-only or
replaced, a checkpoint loaded) is followed, and every element of every param has its own
stochastic-rounding words (param groups, formats and None-grad runs step in separate native calls)."""

import numpy as np
import pytest

from optkern import lowp, optim

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = ml_dtypes.bfloat16


def halves(sizes, seed, dtype=BF16):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(n).astype(np.float32).astype(dtype) for n in sizes]


def grads_like(ps, seed):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(p.shape).astype(np.float32).astype(p.dtype) for p in ps]


@pytest.mark.parametrize("kw", [dict(master_weights=True), dict(master_weights=True, state_dtype="int8")])
def test_a_half_param_made_read_only_after_a_step_is_refused_and_nothing_written(kw):
    ps = halves([8, 5], 0)
    opt = optim.Adam(ps, lr=0.1, **kw)
    opt.step(grads_like(ps, 1))
    ps[1].flags.writeable = False
    before = [p.copy() for p in ps]
    state = {i: {k: np.array(v, copy=True) for k, v in e.items()} for i, e in opt.state_dict()["state"].items()}
    with pytest.raises(ValueError, match=r"params\[1\]: array is read-only"):
        opt.step(grads_like(ps, 2))
    for p, b in zip(ps, before):
        np.testing.assert_array_equal(p, b)
    for i, e in opt.state_dict()["state"].items():
        for k, v in e.items():
            np.testing.assert_array_equal(np.asarray(v), state[i][k], err_msg=f"state[{i}][{k!r}]")
    ps[1].flags.writeable = True
    opt.step(grads_like(ps, 2))  # and steps again once writable
    assert not np.array_equal(ps[1], before[1])


def test_a_half_param_replaced_in_its_group_receives_the_masters_rounding():
    ps = halves([6, 6], 3)
    opt = optim.SGD(ps, lr=0.5, master_weights=True)
    opt.step([np.ones_like(p) for p in ps])
    old, new = ps[0], np.full(6, 10.0, BF16)
    kept = old.copy()
    opt.param_groups[0]["params"][0] = new
    opt.step([np.ones_like(p) for p in ps])
    np.testing.assert_array_equal(old, kept)  # the replaced array is no longer written
    master = opt.state[new]["master_param"]
    np.testing.assert_array_equal(new, master.astype(BF16))  # the master's rounding lands in the new one


@pytest.mark.parametrize(
    "kw",
    [
        dict(master_weights=True, stochastic_rounding=True),
        dict(master_weights=True, stochastic_rounding=True, momentum=0.9),
        dict(momentum=0.9, state_dtype="bfloat16"),  # fp32 params, momentum stored stochastically
    ],
)
def test_sgd_resumed_from_a_checkpoint_continues_bit_for_bit(kw):
    """SGD keeps no step count in torch's format; in low precision its state dict holds one, so a
    resumed run draws the words of steps 4, 5, 6 and not those of steps 1, 2, 3 again."""
    half = kw.get("master_weights", False)
    sizes = [300, 7]
    make = (lambda: halves(sizes, 4)) if half else (lambda: [p.astype(np.float32) for p in halves(sizes, 4)])
    ref_ps, ps = make(), make()
    ref = optim.SGD(ref_ps, lr=0.05, seed=5, **kw)
    opt = optim.SGD(ps, lr=0.05, seed=5, **kw)
    for t in range(3):
        ref.step(grads_like(ref_ps, 10 + t))
        opt.step(grads_like(ps, 10 + t))
    sd = opt.state_dict()
    assert all(e["step"] == 3 for e in sd["state"].values())
    resumed = optim.SGD(ps, lr=0.05, seed=5, **kw)
    resumed.load_state_dict(sd)
    for t in range(3, 6):
        ref.step(grads_like(ref_ps, 10 + t))
        resumed.step(grads_like(ps, 10 + t))
    for a, b in zip(ps, ref_ps):
        np.testing.assert_array_equal(lowp.bits(a) if half else a, lowp.bits(b) if half else b)
    for i, e in ref.state_dict()["state"].items():
        for k, v in e.items():
            np.testing.assert_array_equal(np.asarray(resumed.state_dict()["state"][i][k]), np.asarray(v))


def test_sgd_state_dict_without_a_step_still_loads():
    """A torch-format SGD entry (momentum_buffer only) loads as one step taken, as before."""
    ps = halves([4], 6)
    opt = optim.SGD(ps, lr=0.1, momentum=0.9, master_weights=True)
    opt.step(grads_like(ps, 1))
    sd = opt.state_dict()
    del sd["state"][0]["step"]
    other = optim.SGD(halves([4], 6), lr=0.1, momentum=0.9, master_weights=True)
    other.load_state_dict(sd)
    assert other.state_dict()["state"][0]["step"] == 1


def _expected_rounding(opt, ps, seed, t):
    """Each half param as stochastic_round of its master with the words of its elements' indices
    among all params in param_groups order (offset = elements before it)."""
    base = 0
    for p in ps:
        master = opt.state[p]["master_param"]
        fmt = "bfloat16" if p.dtype == BF16 else "float16"
        want = lowp.stochastic_round(master, fmt, seed=seed, step=t, offset=base)
        np.testing.assert_array_equal(lowp.bits(p), lowp.bits(want), err_msg=f"param at element {base}")
        base += p.size


def test_param_groups_round_with_their_own_words():
    ps = halves([1000, 333], 7) + halves([1000], 7)  # the third param equals the first
    gs = grads_like(ps, 8)
    gs[2] = gs[0].copy()
    opt = optim.SGD(
        [{"params": ps[:2]}, {"params": ps[2:]}], lr=0.01, master_weights=True, stochastic_rounding=True, seed=9
    )
    opt.step(gs)
    _expected_rounding(opt, ps, 9, 1)
    np.testing.assert_array_equal(opt.state[ps[0]]["master_param"], opt.state[ps[2]]["master_param"])
    assert not np.array_equal(lowp.bits(ps[0]), lowp.bits(ps[2]))  # same values, other words


def test_formats_in_one_group_and_none_grad_runs_round_with_their_own_words():
    ps = halves([500], 11) + halves([500], 11, np.float16) + halves([64, 200], 12)
    opt = optim.Adam(ps, lr=0.01, master_weights=True, stochastic_rounding=True, seed=13)
    opt.step(grads_like(ps, 14))
    _expected_rounding(opt, ps, 13, 1)
    gs = grads_like(ps, 15)
    gs[2] = None  # the group splits into runs [0, 1, 3] and [2]
    opt.step(gs)
    _expected_rounding(opt, [ps[0], ps[1]], 13, 2)
    m = opt.state[ps[3]]["master_param"]
    want = lowp.stochastic_round(m, "bfloat16", seed=13, step=2, offset=1064)
    np.testing.assert_array_equal(lowp.bits(ps[3]), lowp.bits(want))
