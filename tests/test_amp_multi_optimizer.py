"""amp.GradScaler with several optimizers in one iteration, torch.amp.GradScaler's per-optimizer
rules: ``step(opt1, g1); step(opt2, g2); update()`` unscales and skips each optimizer on its own
grads, ``update()`` backs off when any held an inf/NaN, and a second ``unscale_`` / ``step`` for
one optimizer before ``update()`` raises torch's RuntimeError. Also the disabled scaler's state
dict (``{}``, as torch's) and copies, which refuse an iteration in flight as torch does."""

import copy
import pickle

import numpy as np
import pytest

import optkern
from optkern import optim
from optkern.amp import GradScaler

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)
SIZES = [5, 300]

STEPPED_TWICE = r"^step\(\) has already been called since the last update\(\)\.$"
UNSCALED_TWICE = r"^unscale_\(\) has already been called on this optimizer since the last update\(\)\.$"
UNSCALE_AFTER_STEP = r"^unscale_\(\) is being called after step\(\)\.$"


def unscaled(g, scale: float) -> np.ndarray:
    """torch's unscale: float32(g) times the float32 reciprocal of the scale."""
    return g.astype(np.float32) * np.float32(1.0 / np.float64(np.float32(scale)))


def two_optimizers(rng):
    """An fp32 SGD (momentum) and a bf16 master-weights Adam, each with float32 references that
    take the unscaled grads directly (the bf16 one's: its masters)."""
    p1 = [rng.standard_normal(n).astype(np.float32) for n in SIZES]
    p2 = [rng.standard_normal(n).astype(np.float32).astype(BF16) for n in SIZES]
    r1, r2 = [p.copy() for p in p1], [p.astype(np.float32) for p in p2]
    o1, ref1 = (optim.SGD(x, lr=0.1, momentum=0.9) for x in (p1, r1))
    o2 = optim.Adam(p2, lr=1e-2, master_weights=True)
    ref2 = optim.Adam(r2, lr=1e-2)
    return (p1, o1, r1, ref1), (p2, o2, r2, ref2)


def grads(rng, ps, scale, dtype, bad=False):
    gs = [(rng.standard_normal(p.size) * scale).astype(dtype) for p in ps]
    if bad:
        gs[1][rng.integers(gs[1].size)] = np.inf
    return gs


def masters(opt) -> list:
    return [np.copy(e["master_param"]) for _, e in sorted(opt.state_dict()["state"].items())]


# ---- without torch: each optimizer on its own grads ------------------------------------------------


def test_each_optimizer_is_unscaled_and_skipped_on_its_own_grads():
    """The second optimizer steps on unscaled grads (it stepped on grads still times the scale: 1024
    times the step), an inf in one optimizer's grads skips that one only, and the scale backs off
    when either held one."""
    rng = np.random.default_rng(501)
    (p1, o1, r1, ref1), (p2, o2, r2, ref2) = two_optimizers(rng)
    s = GradScaler(init_scale=1024.0, growth_interval=2)
    #   iteration: 0, 1 clean (grows at 1), 2 inf in opt2's grads, 3 inf in opt1's, 4 clean
    expect = [(1024.0, 1), (2048.0, 0), (1024.0, 0), (512.0, 0), (512.0, 1)]
    for it, (scale_after, tracker_after) in enumerate(expect):
        scale = s.get_scale()
        g1 = grads(rng, p1, scale, np.float32, bad=it == 3)
        g2 = grads(rng, p2, scale, BF16, bad=it == 2)
        u1, u2 = [unscaled(g, scale) for g in g1], [unscaled(g, scale) for g in g2]
        before1, before2, m2 = [p.copy() for p in p1], [p.copy() for p in p2], masters(o2) if it else None
        s.step(o1, g1)
        s.step(o2, g2)
        s.update()
        if it == 3:
            for p, b in zip(p1, before1):
                np.testing.assert_array_equal(p, b)
        else:
            ref1.step(u1)
            for p, r in zip(p1, r1):
                np.testing.assert_array_equal(p, r)
        if it == 2:
            for p, b in zip(p2, before2):
                np.testing.assert_array_equal(p.view(np.uint16), b.view(np.uint16))
            for m, b in zip(masters(o2), m2):
                np.testing.assert_array_equal(m, b)
        else:
            ref2.step(u2)
            for m, r in zip(masters(o2), r2):
                np.testing.assert_array_equal(m, r)
        assert (s.get_scale(), s.state_dict()["_growth_tracker"]) == (scale_after, tracker_after), it


def test_step_twice_on_one_optimizer_raises_and_writes_nothing():
    p, q = np.zeros(4, np.float32), np.zeros(4, np.float32)
    o1, o2 = optim.SGD([p], lr=0.1), optim.SGD([q], lr=0.1)
    s = GradScaler(init_scale=1024.0)
    s.step(o1, [np.full(4, 1024.0, np.float32)])
    again = np.full(4, 1024.0, np.float32)
    with pytest.raises(RuntimeError, match=STEPPED_TWICE):
        s.step(o1, [again])
    np.testing.assert_array_equal(again, 1024.0)  # not unscaled either
    np.testing.assert_array_equal(p, np.float32(-0.1))
    s.step(o2, [np.full(4, 1024.0, np.float32)])  # another optimizer still steps
    np.testing.assert_array_equal(q, np.float32(-0.1))
    s.update()
    s.step(o1, [np.full(4, 1024.0, np.float32)])  # and after update() the first one again
    np.testing.assert_array_equal(p, np.float32(-0.1) + np.float32(-0.1))


def test_a_skipped_step_counts_as_the_optimizers_step():
    """torch marks an optimizer STEPPED after a skipped step too: a retry before update() raises."""
    p = np.zeros(3, np.float32)
    o, s = optim.SGD([p], lr=0.1), GradScaler(init_scale=8.0)
    assert s.step(o, [np.array([1.0, np.inf, 1.0], np.float32)]) is None
    with pytest.raises(RuntimeError, match=STEPPED_TWICE):
        s.step(o, [np.ones(3, np.float32)])
    s.update()
    assert s.get_scale() == 4.0 and not p.any()


def test_unscale_twice_or_after_step_raises():
    p, q = np.zeros(4, np.float32), np.zeros(4, np.float32)
    o1, o2 = optim.SGD([p], lr=0.1), optim.SGD([q], lr=0.1)
    s = GradScaler(init_scale=4.0)
    g = np.full(4, 8.0, np.float32)
    assert s.unscale_(o1, [g]) is False
    with pytest.raises(RuntimeError, match=UNSCALED_TWICE):
        s.unscale_(o1, [g])
    np.testing.assert_array_equal(g, 2.0)  # unscaled once
    s.step(o2, [np.full(4, 8.0, np.float32)])
    with pytest.raises(RuntimeError, match=UNSCALE_AFTER_STEP):
        s.unscale_(o2, [np.full(4, 8.0, np.float32)])
    s.update()
    assert s.unscale_(o1, [np.full(4, 8.0, np.float32)]) is False  # a new iteration


def test_unscale_then_step_of_one_optimizer_beside_another():
    """unscale_(opt1) then step(opt1), step(opt2): opt1's grads are unscaled once (not again in its
    step), opt2's in its step; an inf found by unscale_ skips opt1 only and backs the scale off."""
    p, q = np.zeros(4, np.float32), np.zeros(4, np.float32)
    o1, o2 = optim.SGD([p], lr=0.5), optim.SGD([q], lr=0.5)
    s = GradScaler(init_scale=4.0, growth_interval=1)
    g1, g2 = np.full(4, 8.0, np.float32), np.full(4, 8.0, np.float32)
    assert s.unscale_(o1, [g1]) is False
    np.testing.assert_array_equal(g1, 2.0)
    s.step(o1, [g1])
    s.step(o2, [g2])
    s.update()
    np.testing.assert_array_equal(p, -1.0)
    np.testing.assert_array_equal(q, -1.0)
    assert s.get_scale() == 8.0
    g1 = np.array([8.0, np.inf, 8.0, 8.0], np.float32)
    assert s.unscale_(o1, [g1]) is True
    assert s.step(o1, [g1]) is None
    s.step(o2, [np.full(4, 16.0, np.float32)])
    s.update()
    np.testing.assert_array_equal(p, -1.0)
    np.testing.assert_array_equal(q, -2.0)
    assert s.get_scale() == 4.0


def test_update_backs_off_on_an_unscaled_optimizer_that_did_not_step():
    """update() reads every optimizer's flag, stepped or only unscaled (torch's)."""
    q = np.zeros(2, np.float32)
    s = GradScaler(init_scale=16.0)
    s.step(optim.SGD([q], lr=0.1), [np.ones(2, np.float32)])
    assert s.unscale_(optim.SGD([np.zeros(2, np.float32)], lr=0.1), [np.array([np.nan, 1.0], np.float32)])
    s.update()
    assert s.get_scale() == 8.0


def test_single_optimizer_unscale_form_is_claimed_by_the_next_step():
    """unscale_(grads) names no optimizer: the next step takes them as its own, unscaled; a second
    optimizer is unscaled in its step; a second unscale_(grads) in the iteration raises."""
    p, q = np.zeros(2, np.float32), np.zeros(2, np.float32)
    o1, o2 = optim.SGD([p], lr=1.0), optim.SGD([q], lr=1.0)
    s = GradScaler(init_scale=4.0)
    g = np.full(2, 8.0, np.float32)
    s.unscale_([g])
    with pytest.raises(RuntimeError, match="already been called since the last update"):
        s.unscale_([np.ones(2, np.float32)])
    s.step(o1, [g])
    s.step(o2, [np.full(2, 8.0, np.float32)])
    s.update()
    np.testing.assert_array_equal(p, -2.0)
    np.testing.assert_array_equal(q, -2.0)
    with pytest.raises(TypeError, match=r"^grads: unscale_\(optimizer\) needs"):
        s.unscale_(o1)
    assert s.unscale_(grads=[np.full(2, np.inf, np.float32)]) is True  # (the form's keyword)
    s.update()
    assert s.get_scale() == 2.0


def test_a_refused_low_precision_step_leaves_that_optimizer_ready():
    """A master-weights step refused on its grads records nothing: that optimizer steps in the same
    iteration on its own clean grads, beside another whose inf skipped it, and update() still
    backs off on the other's flag."""
    p = np.zeros(4, np.float32)
    h = np.zeros(4, BF16)
    o1, o2 = optim.SGD([p], lr=0.1), optim.SGD([h], lr=0.1, master_weights=True)
    s = GradScaler(init_scale=8.0)
    s.step(o1, [np.array([8.0, np.inf, 8.0, 8.0], np.float32)])
    with pytest.raises(ValueError, match=r"^grads\[0\]"):
        s.step(o2, [np.full(3, 8.0, BF16)])
    s.step(o2, [np.full(4, 8.0, BF16)])
    s.update()
    assert not p.any()
    np.testing.assert_array_equal(masters(o2)[0], np.float32(-0.1))
    assert s.get_scale() == 4.0


def test_closure_is_refused_while_enabled():
    p = np.zeros(2, np.float32)
    o, s = optim.SGD([p], lr=0.1), GradScaler()
    g = np.full(2, 4.0, np.float32)
    with pytest.raises(RuntimeError, match="Closure use is not currently supported"):
        s.step(o, [g], closure=lambda: (0.0, [np.ones(2, np.float32)]))
    np.testing.assert_array_equal(g, 4.0)  # was: unscaled before the optimizer refused the call
    assert s._found_inf is None and not p.any()


# ---- disabled, state dicts and copies --------------------------------------------------------------


def test_disabled_state_dict_is_empty_and_loading_is_a_no_op(tmp_path):
    off = GradScaler(init_scale=8.0, enabled=False)
    assert off.state_dict() == {}
    off.load_state_dict(GradScaler(init_scale=2.0).state_dict())  # ignored, as torch ignores it
    off.load_state_dict({})
    with pytest.raises(TypeError, match=r"^state_dict: expected a dict"):
        off.load_state_dict(None)
    on = GradScaler(init_scale=8.0)
    with pytest.raises(ValueError, match=r"^state_dict: empty, possibly saved from a disabled GradScaler"):
        on.load_state_dict(off.state_dict())
    assert on.get_scale() == 8.0
    # optkern.save / load of both kinds
    on.unscale_([np.ones(2, np.float32)])
    on.update()
    path = tmp_path / "ckpt.npz"
    optkern.save(path, on=on, off=off)
    on2, off2 = GradScaler(init_scale=2.0**20), GradScaler(init_scale=3.0, enabled=False)
    got = optkern.load(path, on=on2, off=off2)
    assert got["off"] == {} and on2.state_dict() == on.state_dict() and off2.state_dict() == {}


def test_disabled_matches_torch():
    torch = pytest.importorskip("torch")
    theirs = torch.amp.GradScaler("cpu", init_scale=8.0, enabled=False)
    ours = GradScaler(init_scale=8.0, enabled=False)
    assert ours.state_dict() == theirs.state_dict() == {}
    assert ours.get_scale() == theirs.get_scale() == 1.0


@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
def test_copies_refuse_an_iteration_in_flight(how):
    """The iteration's record names optimizers by id: torch refuses to pickle it; after update()
    the copy continues as the original."""
    p = np.zeros(2, np.float32)
    o, s = optim.SGD([p], lr=0.1), GradScaler(init_scale=4.0, growth_interval=2)
    copy_of = (lambda x: pickle.loads(pickle.dumps(x))) if how == "pickle" else copy.deepcopy
    s.step(o, [np.ones(2, np.float32)])
    with pytest.raises(RuntimeError, match="may only be pickled at the beginning of an iteration"):
        copy_of(s)
    s.update()
    t = copy_of(s)
    for x in (s, t):
        x.step(o, [np.ones(2, np.float32)])
        x.update()
    assert t.state_dict() == s.state_dict() and s.get_scale() == 8.0


def test_a_pickle_of_the_one_flag_scaler_still_loads():
    """A scaler pickled before it kept one record per optimizer held ``_found_inf``: its flag is the
    single-optimizer form's, taken by the next step."""
    s = GradScaler(init_scale=4.0)
    state = {k: v for k, v in vars(s).items() if k != "_iteration"}
    state["_found_inf"] = np.zeros(1, np.float32)  # unscale_(grads) had run
    old = GradScaler.__new__(GradScaler)
    old.__setstate__(state)
    p = np.zeros(2, np.float32)
    old.step(optim.SGD([p], lr=1.0), [np.full(2, 0.5, np.float32)])  # (already unscaled)
    old.update()
    np.testing.assert_array_equal(p, -0.5)


# ---- against torch.amp.GradScaler --------------------------------------------------------------


def test_two_optimizers_match_torch():
    """One GradScaler over an fp32 SGD and a bf16 master-weights Adam, against torch's over
    torch.optim on float32 copies (the bf16 grads widened exactly): the same params (the masters),
    scales, growth tracker and skipped steps, with an inf in the second optimizer's grads at one
    iteration and in the first's at another."""
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    rng = np.random.default_rng(502)
    (p1, o1, _, _), (p2, o2, _, _) = two_optimizers(rng)
    t1 = [torch.tensor(p, requires_grad=True) for p in p1]
    t2 = [torch.tensor(p.astype(np.float32), requires_grad=True) for p in p2]
    to1, to2 = torch.optim.SGD(t1, lr=0.1, momentum=0.9), torch.optim.Adam(t2, lr=1e-2)
    kw = dict(init_scale=2.0**12, growth_interval=3)
    ours, theirs = GradScaler(**kw), torch.amp.GradScaler("cpu", **kw)
    skipped = [0, 0]
    for it in range(14):
        scale = ours.get_scale()
        g1 = grads(rng, p1, scale, np.float32, bad=it in (5, 6))
        g2 = grads(rng, p2, scale, BF16, bad=it in (2, 6, 10))
        theirs.scale(torch.ones(()))  # (torch makes its scale tensor in its first scale())
        for t, g in zip(t1, g1):
            t.grad = torch.tensor(g)
        for t, g in zip(t2, g2):
            t.grad = torch.tensor(g.astype(np.float32))
        if it == 8:  # unscale_ first (as before clipping), then both steps
            ours.unscale_(o1, g1)
            theirs.unscale_(to1)
        before = [p1[0].copy(), masters(o2)[0] if it else None]
        ours.step(o1, g1)
        ours.step(o2, g2)
        theirs.step(to1)
        theirs.step(to2)
        ours.update()
        theirs.update()
        after = [p1[0], masters(o2)[0]]
        skipped = [k + (b is not None and np.array_equal(a, b)) for k, a, b in zip(skipped, after, before)]
        assert ours.get_scale() == theirs.get_scale(), it
        assert ours.state_dict()["_growth_tracker"] == theirs._get_growth_tracker(), it
        for p, t in zip(p1, t1):
            np.testing.assert_allclose(p, t.detach().numpy(), rtol=1e-5, atol=1e-6)
        for m, t in zip(masters(o2), t2):
            np.testing.assert_allclose(m, t.detach().numpy(), rtol=1e-5, atol=1e-6)
    assert skipped == [2, 3]
    assert ours.get_scale() != kw["init_scale"]


def test_errors_match_torch():
    torch = pytest.importorskip("torch")

    def torch_error(calls) -> str:
        t = torch.zeros(2, requires_grad=True)
        o, s = torch.optim.SGD([t], lr=0.1), torch.amp.GradScaler("cpu")
        s.scale(torch.ones(()))
        t.grad = torch.ones(2)
        with pytest.raises(RuntimeError) as e:
            for c in calls:
                getattr(s, c)(o)
        return str(e.value)

    def our_error(calls) -> str:
        o, s = optim.SGD([np.zeros(2, np.float32)], lr=0.1), GradScaler()
        with pytest.raises(RuntimeError) as e:
            for c in calls:
                getattr(s, c)(o, [np.ones(2, np.float32)])
        return str(e.value)

    for calls in (["step", "step"], ["unscale_", "unscale_"], ["step", "unscale_"], ["unscale_", "step", "step"]):
        assert our_error(calls) == torch_error(calls), calls
