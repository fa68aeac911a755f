"""The low-precision step's later rules (Adagrad, Adadelta, NAdam) beyond what test_optim_lowp.py
runs for every rule: Adagrad's non-zero initial accumulator in each storage, NAdam's momentum
product through the native step and state dicts, and the native call's own checks."""

import numpy as np
import pytest

import optkern.functional as F
from optkern import _cpu, amp, lowp, optim

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)


@pytest.mark.parametrize("state_dtype", ["float32", "bfloat16", "int8"])
@pytest.mark.parametrize("v", [0.1, 3.0, 1e-30])
def test_adagrad_accumulator_starts_at_its_initial_value_in_every_storage(state_dtype, v):
    p = np.linspace(-1, 1, 300, dtype=np.float32)
    opt = optim.Adagrad([p], lr=0.1, initial_accumulator_value=v, state_dtype=state_dtype, block_size=64)
    g = np.zeros_like(p)  # a zero gradient leaves the accumulator as it started
    opt.step([g])
    st = opt.state_dict()["state"][0]
    if state_dtype == "int8":
        assert np.all(st["sum"] == 255)  # a block of one value: the top code, scale v
        np.testing.assert_array_equal(st["sum_scale"], np.full(5, np.float32(v)))
        got = lowp.dequantize_blockwise(st["sum"], st["sum_scale"], 64)
        np.testing.assert_array_equal(got, np.full(300, np.float32(v)))
    elif state_dtype == "bfloat16":
        want = lowp.to_half(np.full(300, v, np.float32), "bfloat16", raw=True)
        np.testing.assert_array_equal(np.asarray(st["sum"]).view(np.uint16), want)
    else:
        np.testing.assert_array_equal(st["sum"], np.full(300, np.float32(v)))


@pytest.mark.parametrize("state_dtype", ["bfloat16", "int8"])
def test_adagrad_compact_accumulator_tracks_float32(state_dtype):
    rng = np.random.default_rng(0)
    p = rng.standard_normal(2000).astype(np.float32)
    ref = p.copy()
    kw = dict(lr=0.05, initial_accumulator_value=0.5)
    a, b = optim.Adagrad([p], **kw, state_dtype=state_dtype), optim.Adagrad([ref], **kw)
    start = p.copy()
    for _ in range(10):
        g = rng.standard_normal(p.size).astype(np.float32)
        a.step([g])
        b.step([g])
    assert np.linalg.norm(p - ref) <= 0.02 * np.linalg.norm(ref - start)


def test_nadam_momentum_product_is_the_float32_steps():
    """The native low-precision step returns NAdam's new momentum product: the float32 step's."""
    rng = np.random.default_rng(1)
    q = rng.standard_normal(33).astype(np.float16)
    p = q.astype(np.float32)
    m, v = np.zeros_like(p), np.zeros_like(p)
    mu = 1.0
    ms, vs, master = np.zeros_like(p), np.zeros_like(p), q.astype(np.float32)
    mu_low = 1.0
    for t in range(1, 6):
        g = rng.standard_normal(33).astype(np.float16)
        mu = F.nadam_([p], [g.astype(np.float32)], [m], [v], step=t, mu_product=mu, lr=1e-2, momentum_decay=0.02)
        x = [1e-2, 0.9, 0.999, 1e-8, 0.0, 0.02, mu_low]
        mu_low = _cpu.lowp_step(
            "nadam",
            x,
            [False, False],
            [q.view(np.uint16)],
            [g.view(np.uint16)],
            [master],
            [[ms], [vs]],
            None,
            "float16",
            "float32",
            False,
            0,
            t,
            256,
        )
        assert mu_low == mu
        np.testing.assert_array_equal(master, p)
    assert (
        _cpu.lowp_step(
            "adadelta",
            [1.0, 0.9, 1e-6, 0.0],
            [False],
            [p],
            [p.copy()],
            None,
            [[m], [v]],
            None,
            "float32",
            "float32",
            False,
            0,
            1,
            256,
        )
        is None
    )


@pytest.mark.parametrize(
    "rule,x,states", [("adagrad", [0.1, 0.0, 0.0, 1e-10], 1), ("nadam", [0.1, 0.9, 0.999, 1e-8, 0.0, 4e-3, 1.0], 2)]
)
def test_native_step_refuses_step_zero_and_wrong_state_lists(rule, x, states):
    p, g = np.ones(4, np.float32), np.ones(4, np.float32)
    st = [[np.zeros(4, np.float32)] for _ in range(states)]
    with pytest.raises(ValueError, match=r"^step: must be an integer in \[1, 2\*\*53\], got 0"):
        _cpu.lowp_step(rule, x, [False], [p], [g], None, st, None, "float32", "float32", False, 0, 0, 256)
    with pytest.raises(ValueError, match="states: this rule needs"):
        more = st + [[np.zeros(4, np.float32)]]
        _cpu.lowp_step(rule, x, [False], [p], [g], None, more, None, "float32", "float32", False, 0, 1, 256)
    with pytest.raises(ValueError, match="scalars: too few"):
        _cpu.lowp_step(rule, x[:-1], [False], [p], [g], None, st, None, "float32", "float32", False, 0, 1, 256)
    assert np.all(p == 1)


def test_nadam_state_dict_round_trip_continues_bit_for_bit():
    rng = np.random.default_rng(2)
    p0 = rng.standard_normal(999).astype(np.float32).astype(BF16)
    gs = [rng.standard_normal(999).astype(np.float32).astype(BF16) for _ in range(6)]
    lp = dict(master_weights=True, stochastic_rounding=True, state_dtype="int8", seed=4)
    a = p0.copy()
    oa = optim.NAdam([a], lr=1e-2, **lp)
    for g in gs:
        oa.step([g])
    b = p0.copy()
    ob = optim.NAdam([b], lr=1e-2, **lp)
    for g in gs[:3]:
        ob.step([g])
    c = b.copy()
    oc = optim.NAdam([c], lr=1e-2, **lp)
    oc.load_state_dict(ob.state_dict())
    for g in gs[3:]:
        oc.step([g])
    np.testing.assert_array_equal(c.view(np.uint16), a.view(np.uint16))
    sa, sc = oa.state_dict()["state"][0], oc.state_dict()["state"][0]
    assert sa["mu_product"] == sc["mu_product"] != 1.0
    np.testing.assert_array_equal(sc["master_param"], sa["master_param"])


@pytest.mark.parametrize("name", ["Adagrad", "Adadelta", "NAdam", "AdagradNorm"])
def test_grad_scaler_skips_and_unscales_half_grads(name):
    """optkern.amp.GradScaler with float16 grads: an overflowed step changes nothing (NAdam's
    momentum product included); clean steps equal the fp32 optimizer on the unscaled grads."""
    rng = np.random.default_rng(3)
    p = rng.standard_normal(100).astype(np.float16)
    ref = p.astype(np.float32)
    opt = getattr(optim, name)([p], lr=0.01, master_weights=True)
    fp32 = getattr(optim, name)([ref], lr=0.01)
    scaler = amp.GradScaler(init_scale=1024.0)
    for s in range(4):
        g = (rng.standard_normal(100) * 1024).astype(np.float16)
        if s == 1:
            g[5] = np.inf
        before = (p.copy(), opt.state_dict())
        scaler.step(opt, [g])
        if s == 1:
            np.testing.assert_array_equal(p, before[0])
            assert opt.state_dict()["state"][0].get("step") == before[1]["state"][0].get("step")
        else:
            fp32.step([g.astype(np.float32) * np.float32(1 / 1024.0)])
        scaler.update(1024.0)
    np.testing.assert_array_equal(opt.state_dict()["state"][0]["master_param"], ref)


def test_adagrad_norm_master_weights():
    """AdaGrad-Norm with master weights: no compact state to choose; its norm over a sharded group
    (``global_sq_norm``) and over skipped params as the float32 optimizer takes them; a state dict
    round trip continues bit for bit (stochastic rounding)."""
    with pytest.raises(ValueError, match="state_dtype: AdaGrad-Norm keeps no per-element state"):
        optim.AdagradNorm([np.zeros(3, np.float16)], master_weights=True, state_dtype="int8")
    rng = np.random.default_rng(4)
    p0 = [rng.standard_normal(n).astype(np.float32).astype(BF16) for n in (5, 300, 1)]
    gs = [[rng.standard_normal(x.size).astype(np.float32).astype(BF16) for x in p0] for _ in range(6)]
    gs[2][1] = None  # a step without the second param's grad
    lp = dict(master_weights=True, stochastic_rounding=True, seed=9)
    a = [x.copy() for x in p0]
    oa = optim.AdagradNorm(a, lr=0.5, b0=0.1, **lp)
    for g in gs:
        oa.step(g)
    b = [x.copy() for x in p0]
    ob = optim.AdagradNorm(b, lr=0.5, b0=0.1, **lp)
    for g in gs[:3]:
        ob.step(g)
    c = [x.copy() for x in b]
    oc = optim.AdagradNorm(c, lr=0.5, b0=0.1, **lp)
    oc.load_state_dict(ob.state_dict())
    for g in gs[3:]:
        oc.step(g)
    for x, y in zip(a, c):
        np.testing.assert_array_equal(x.view(np.uint16), y.view(np.uint16))
    sa, sc = oa.state_dict()["state"], oc.state_dict()["state"]
    assert sa[0]["b_sq"] == sc[0]["b_sq"]
    for i in range(3):
        np.testing.assert_array_equal(sa[i]["master_param"], sc[i]["master_param"])


def test_adagrad_norm_master_weights_under_a_sharded_norm():
    """``global_sq_norm`` (ZeRO sharding's hook) sees the float32 masters and widened grads, as the
    float32 optimizer's hook sees its params and grads: the masters follow it bit for bit."""
    rng = np.random.default_rng(5)
    p = [rng.standard_normal(n).astype(np.float16) for n in (7, 100)]
    ref = [x.astype(np.float32) for x in p]
    seen = []

    def norm(ps, g):
        seen.append([x.dtype for x in ps + g])
        return sum(float(np.dot(x.astype(np.float64), x.astype(np.float64))) for x in g)

    a, b = optim.AdagradNorm(p, lr=0.5, master_weights=True), optim.AdagradNorm(ref, lr=0.5)
    a.global_sq_norm = b.global_sq_norm = norm
    for _ in range(3):
        g = [rng.standard_normal(x.size).astype(np.float16) for x in p]
        a.step(g)
        b.step([x.astype(np.float32) for x in g])
    assert all(d == np.float32 for dts in seen for d in dts)
    sa = a.state_dict()["state"]
    for i in range(2):
        np.testing.assert_array_equal(sa[i]["master_param"], ref[i])


def test_adagrad_norm_master_weights_checks_every_grad_before_any_write():
    p = [np.ones(5, np.float16), np.ones(3, np.float16)]
    opt = optim.AdagradNorm(p, lr=0.5, master_weights=True)
    opt.step([np.ones(5, np.float16), np.ones(3, np.float16)])
    before = [x.copy() for x in p], opt.state_dict()
    for bad, err, match in [
        ([np.ones(5, np.float16), np.ones(3, np.float32)], TypeError, r"grads\[1\]: expected float16"),
        ([np.ones(5, np.float16), np.ones(3, BF16)], TypeError, r"grads\[1\]: expected float16"),
        ([np.ones(5, np.float16), np.ones(4, np.float16)], ValueError, r"grads\[1\]: expected shape"),
        ([np.ones(5, np.float16), p[1]], ValueError, "shares memory"),
    ]:
        with pytest.raises(err, match=match):
            opt.step(bad)
        assert all(np.array_equal(x, y) for x, y in zip(p, before[0]))
        np.testing.assert_array_equal(
            opt.state_dict()["state"][1]["master_param"], before[1]["state"][1]["master_param"]
        )


def test_bad_block_in_an_8bit_state_dict_is_named():
    p = np.ones(300, np.float32)
    opt = optim.Adam([p], state_dtype="int8")
    opt.step([np.ones(300, np.float32)])
    sd = opt.state_dict()
    sd["state"][0]["block"] = 100
    fresh = optim.Adam([p.copy()], state_dtype="int8")
    with pytest.raises(ValueError, match=r"state_dict\['state'\]\[0\]\['block'\]: expected a power of two"):
        fresh.load_state_dict(sd)
