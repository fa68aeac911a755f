"""Low precision in the optimizer classes (optkern.optim._lowp): bf16/fp16 params with a float32
master, stochastic rounding, bfloat16 / 8-bit states, state dicts across formats, bad input."""

import numpy as np
import pytest

from optkern import lowp, nn, optim
from optkern.datasets import load_digits

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)
HALF = {"bfloat16": BF16, "float16": np.dtype(np.float16)}
SIZES = [1, 7, 1023, 4099]

ADAMS = [
    ("Adam", dict(lr=1e-2)),
    ("Adam", dict(lr=1e-2, weight_decay=0.1, amsgrad=True)),
    ("AdamW", dict(lr=1e-2, weight_decay=0.1)),
]
SGDS = [
    ("SGD", dict(lr=0.05)),
    ("SGD", dict(lr=0.05, momentum=0.9, weight_decay=1e-3)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, maximize=True)),
    ("SGD", dict(lr=0.05, momentum=0.9, momentum_form="textbook")),
]
RMSPROPS = [
    ("RMSprop", dict(lr=1e-2)),
    ("RMSprop", dict(lr=1e-2, momentum=0.9, centered=True, weight_decay=1e-2)),
    ("RMSprop", dict(lr=1e-2, momentum=0.5, nesterov=True)),
]
MORE = [  # the rules added to the low-precision step later: Adagrad (initial accumulator), Adadelta, NAdam
    ("Adagrad", dict(lr=0.05, lr_decay=1e-2, weight_decay=1e-3, initial_accumulator_value=0.1)),
    ("Adadelta", dict(lr=0.5, weight_decay=1e-3, maximize=True)),
    ("NAdam", dict(lr=1e-2, weight_decay=1e-2)),
    ("NAdam", dict(lr=1e-2, weight_decay=1e-2, decoupled_weight_decay=True, momentum_decay=1e-2)),
    ("AdagradNorm", dict(lr=0.5, b0=0.1, weight_decay=1e-3, maximize=True)),  # (master weights only)
]
ALL = ADAMS + SGDS + RMSPROPS + MORE


def rand(rng, n):
    return rng.standard_normal(n).astype(np.float32)


def half(x, fmt):
    return x.astype(HALF[fmt])


@pytest.mark.parametrize("name,kw", ALL)
@pytest.mark.parametrize("fmt", ["bfloat16", "float16"])
@pytest.mark.parametrize("sr", [False, True])
def test_master_is_the_fp32_optimizer_bit_for_bit_and_param_its_rounding(name, kw, fmt, sr):
    rng = np.random.default_rng(1101)
    ps = [half(rand(rng, n), fmt) for n in SIZES]
    ref = [p.astype(np.float32) for p in ps]
    opt = getattr(optim, name)(ps, **kw, master_weights=True, stochastic_rounding=sr, seed=11)
    fp32 = getattr(optim, name)(ref, **kw)
    for t in range(1, 5):
        gs = [half(rand(rng, n), fmt) for n in SIZES]
        opt.step(gs)
        fp32.step([g.astype(np.float32) for g in gs])
        st, want = opt.state_dict()["state"], fp32.state_dict()["state"]
        base = 0
        for i, p in enumerate(ps):
            m = st[i]["master_param"]
            np.testing.assert_array_equal(m, ref[i])
            for k, v in want.get(i, {}).items():
                if k != "step":
                    np.testing.assert_array_equal(st[i][k], v)
            if sr:
                r = lowp.stochastic_round(m, fmt, seed=11, step=t, offset=base, raw=True)
            else:
                r = lowp.to_half(m, fmt, raw=True)
            np.testing.assert_array_equal(p.view(np.uint16), r)
            base += p.size


@pytest.mark.parametrize("fmt", ["bfloat16", "float16"])
def test_adamw_half_params_match_torch_master_recipe(fmt):
    """torch: a float32 master updated by torch.optim.AdamW in float32, then cast to the half type."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1102)
    n = 5003
    p = half(rand(rng, n), fmt)
    tm = torch.tensor(p.astype(np.float32), requires_grad=True)
    topt = torch.optim.AdamW([tm], lr=1e-2, weight_decay=0.1)
    opt = optim.AdamW([p], lr=1e-2, weight_decay=0.1, master_weights=True)
    for _ in range(10):
        g = half(rand(rng, n), fmt)
        opt.step([g])
        tm.grad = torch.tensor(g.astype(np.float32))
        topt.step()
    tp = tm.detach().to(getattr(torch, fmt)).float().numpy()
    got = p.astype(np.float32)
    ulp = np.abs(np.spacing(tp.astype(HALF[fmt])).astype(np.float32))
    bad = np.flatnonzero(np.abs(got - tp) > ulp)
    # (it failed once, 2026-12-01, in a full suite run and never again: say everything if it does)
    master = opt.state_dict()["state"][0]["master_param"]
    assert not bad.size, [
        (int(i), float(got[i]), float(tp[i]), float(master[i]), float(tm.detach()[i]), float(ulp[i])) for i in bad[:5]
    ]  # equal to the rounding of the half type: (index, ours, torch's, our master, torch's master, ulp)
    assert np.mean(got == tp) > 0.97


def test_sgd_momentum_half_params_match_torch_master_recipe():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1103)
    n = 4097
    p = half(rand(rng, n), "bfloat16")
    tm = torch.tensor(p.astype(np.float32), requires_grad=True)
    topt = torch.optim.SGD([tm], lr=0.05, momentum=0.9, nesterov=True)
    opt = optim.SGD([p], lr=0.05, momentum=0.9, nesterov=True, master_weights=True)
    for _ in range(10):
        g = half(rand(rng, n), "bfloat16")
        opt.step([g])
        tm.grad = torch.tensor(g.astype(np.float32))
        topt.step()
    tp = tm.detach().to(torch.bfloat16).float().numpy()
    got = p.astype(np.float32)
    assert np.all(np.abs(got - tp) <= np.abs(np.spacing(tp.astype(BF16)).astype(np.float32)))


def test_stochastic_rounding_is_deterministic_given_seed_and_differs_across_seeds():
    rng = np.random.default_rng(1104)
    p0, gs = half(rand(rng, 10_000), "bfloat16"), [half(rand(rng, 10_000), "bfloat16") for _ in range(3)]

    def run(seed):
        p = p0.copy()
        opt = optim.Adam([p], lr=1e-3, master_weights=True, stochastic_rounding=True, seed=seed)
        for g in gs:
            opt.step([g])
        return p.view(np.uint16).copy()

    np.testing.assert_array_equal(run(5), run(5))
    assert not np.array_equal(run(5), run(6))


@pytest.mark.parametrize("name,kw", ADAMS[:1] + SGDS[1:2] + RMSPROPS[1:2] + MORE[:3])
@pytest.mark.parametrize("state_dtype", ["bfloat16", "int8"])
def test_compact_states_track_fp32_for_a_few_steps(name, kw, state_dtype):
    rng = np.random.default_rng(1105)
    p = rand(rng, 3001)
    ref, p0 = p.copy(), p.copy()
    opt = getattr(optim, name)([p], **kw, state_dtype=state_dtype, block_size=128)
    fp32 = getattr(optim, name)([ref], **kw)
    for _ in range(5):
        g = rand(rng, p.size)
        opt.step([g])
        fp32.step([g])
    sd = opt.state_dict()["state"][0]
    assert sd["state_dtype"] == state_dtype
    for k, v in fp32.state_dict()["state"][0].items():
        if not isinstance(v, np.ndarray):  # step, NAdam's mu_product: the same float32 values
            assert sd[k] == v, k
            continue
        if state_dtype == "int8":
            assert sd[k].dtype == np.uint8 and sd[f"{k}_scale"].shape == (-(-p.size // 128),)
            got = lowp.dequantize_blockwise(sd[k], sd[f"{k}_scale"], 128)
        else:
            assert sd[k].dtype == BF16
            got = sd[k].astype(np.float32)
        # a few roundings of the state (bf16: 2^-8 relative; 8-bit: absmax / 64 of the block) carried on
        np.testing.assert_allclose(got, v, rtol=0.05, atol=0.05 * np.abs(v).max())
    assert not np.array_equal(p, ref)  # the state really was compact
    # the params' displacement agrees to 5% (RMS over elements; a centered variance amplifies
    # the rounding of single elements)
    assert np.linalg.norm(p - ref) <= 0.05 * np.linalg.norm(ref - p0)


def test_int8_quantized_state_is_what_the_blockwise_quantizer_stores():
    """One Adam step from zero state: m = (1 - b1) g and v = (1 - b2) g^2 in float32, then stored by
    the blockwise quantizer of optkern.lowp (the same map, same absmax)."""
    rng = np.random.default_rng(1106)
    p = rand(rng, 1000)
    g = rand(rng, 1000)
    opt = optim.Adam([p], lr=1e-3, state_dtype="int8", block_size=256)
    opt.step([g])
    fp32 = optim.Adam([p.copy()], lr=1e-3)
    fp32.step([g])
    st, want = opt.state_dict()["state"][0], fp32.state_dict()["state"][0]
    for k in ("exp_avg", "exp_avg_sq"):
        codes, scales = lowp.quantize_blockwise(want[k], 256)
        np.testing.assert_array_equal(st[k], codes)
        np.testing.assert_array_equal(st[f"{k}_scale"], scales)


@pytest.fixture(scope="module")
def digits():
    d = load_digits(np.float32)
    return nn.MLP([64, 32, 10], activation="tanh", dtype=np.float32), d.x[:1024], d.y[:1024]


def train(model, x, y, steps=150, **kw):
    w = model.init_params(seed=3)
    p = w.astype(BF16) if kw.get("master_weights") else w
    opt = optim.Adam([p], lr=3e-3, **kw)
    rng = np.random.default_rng(0)
    for _ in range(steps):
        idx = rng.integers(0, len(x), 128)
        wf = p.astype(np.float32)
        g = model.loss_and_grad(wf, x[idx], y[idx])[1]
        opt.step([g.astype(p.dtype)])
    return model.loss(p.astype(np.float32), x, y)


def test_8bit_adam_tracks_fp32_adam_on_the_digits_mlp(digits):
    """Final training loss after 150 steps: 8-bit states (and bf16 params + 8-bit states) within
    10% (relative) of fp32 Adam's; all well below the starting loss ln(10) = 2.3."""
    model, x, y = digits
    f32 = train(model, x, y)
    q8 = train(model, x, y, state_dtype="int8")
    bq8 = train(model, x, y, state_dtype="int8", master_weights=True)
    assert f32 < 0.5
    assert abs(q8 - f32) <= 0.1 * f32, (q8, f32)
    assert abs(bq8 - f32) <= 0.1 * f32, (bq8, f32)


@pytest.mark.parametrize("src_kw", [{}, {"state_dtype": "bfloat16"}, {"state_dtype": "int8", "block_size": 64}])
@pytest.mark.parametrize("dst_kw", [{}, {"state_dtype": "bfloat16"}, {"state_dtype": "int8"}])
def test_state_dict_converts_between_state_formats(src_kw, dst_kw):
    rng = np.random.default_rng(1107)
    p = rand(rng, 777)
    src = optim.Adam([p.copy()], lr=1e-2, **src_kw)
    for _ in range(3):
        src.step([rand(rng, p.size)])
    want = {k: v for k, v in src.state_dict()["state"][0].items()}
    dst = optim.Adam([p.copy()], lr=1e-2, **dst_kw)
    dst.load_state_dict(src.state_dict())
    got = dst.state_dict()["state"][0]
    assert got["step"] == 3
    assert got.get("state_dtype", "float32") == dst_kw.get("state_dtype", "float32")

    def values(entry, k):
        fmt = entry.get("state_dtype", "float32")
        if fmt == "int8":
            return lowp.dequantize_blockwise(entry[k], entry[f"{k}_scale"], entry["block"])
        return np.asarray(entry[k]).astype(np.float32)

    for k in ("exp_avg", "exp_avg_sq"):
        a, b = values(want, k), values(got, k)
        if src_kw == dst_kw:
            np.testing.assert_array_equal(a, b)  # same format: exact round trip
        else:
            np.testing.assert_allclose(b, a, rtol=0.02, atol=np.abs(a).max() / 50)
    # and the loaded optimizer steps on
    dst.step([rand(rng, p.size)])


def test_state_dict_round_trip_continues_bit_for_bit():
    rng = np.random.default_rng(1108)
    p0 = half(rand(rng, 999), "bfloat16")
    gs = [half(rand(rng, 999), "bfloat16") for _ in range(6)]
    a = p0.copy()
    oa = optim.AdamW([a], lr=1e-2, master_weights=True, stochastic_rounding=True, state_dtype="int8", seed=4)
    for g in gs:
        oa.step([g])
    b = p0.copy()
    ob = optim.AdamW([b], lr=1e-2, master_weights=True, stochastic_rounding=True, state_dtype="int8", seed=4)
    for g in gs[:3]:
        ob.step([g])
    c = b.copy()
    oc = optim.AdamW([c], lr=1e-2, master_weights=True, stochastic_rounding=True, state_dtype="int8", seed=4)
    oc.load_state_dict(ob.state_dict())
    for g in gs[3:]:
        oc.step([g])
    np.testing.assert_array_equal(c.view(np.uint16), a.view(np.uint16))
    np.testing.assert_array_equal(
        oc.state_dict()["state"][0]["master_param"], oa.state_dict()["state"][0]["master_param"]
    )


def test_master_state_dict_loads_into_fp32_and_back():
    rng = np.random.default_rng(1109)
    p = half(rand(rng, 300), "float16")
    opt = optim.Adam([p], lr=1e-2, master_weights=True)
    opt.step([half(rand(rng, 300), "float16")])
    sd = opt.state_dict()
    q = sd["state"][0]["master_param"].copy()
    fp32 = optim.Adam([q], lr=1e-2)
    fp32.load_state_dict(sd)  # the master is dropped: an fp32 optimizer's params are its master
    assert "master_param" not in fp32.state_dict()["state"][0]
    back = optim.Adam([p.copy()], lr=1e-2, master_weights=True)
    back.load_state_dict(fp32.state_dict())  # no master saved: it starts from the half param
    np.testing.assert_array_equal(back.state_dict()["state"][0]["master_param"], p.astype(np.float32))


def test_bad_input_is_named():
    rng = np.random.default_rng(1110)
    p = half(rand(rng, 10), "bfloat16")
    opt = optim.Adam([p], master_weights=True)
    with pytest.raises(TypeError, match=r"grads\[0\]: expected bfloat16.*float32"):
        opt.step([rand(rng, 10)])
    with pytest.raises(TypeError, match=r"grads\[0\]: expected bfloat16.*float16"):
        opt.step([half(rand(rng, 10), "float16")])
    with pytest.raises(ValueError, match=r"grads\[0\]"):
        opt.step([half(rand(rng, 11), "bfloat16")])
    with pytest.raises(TypeError, match=r"params'\]\[0\]: bfloat16 params need master_weights=True"):
        optim.Adam([p])
    with pytest.raises(TypeError, match=r"params'\]\[0\]: expected float16 or bfloat16 with master_weights"):
        optim.SGD([rand(rng, 3)], master_weights=True)
    with pytest.raises(TypeError, match=r"params'\]\[0\]: state_dtype='int8' needs float32"):
        optim.Adam([np.zeros(3)], state_dtype="int8")
    with pytest.raises(ValueError, match="state_dtype: expected"):
        optim.Adam([rand(rng, 3)], state_dtype="int4")
    with pytest.raises(ValueError, match="stochastic_rounding: .*master_weights=True"):
        optim.Adam([rand(rng, 3)], stochastic_rounding=True)
    with pytest.raises(TypeError, match="master_weights: expected a bool"):
        optim.Adam([p], master_weights=1)
    with pytest.raises(ValueError, match="block_size: "):
        optim.Adam([rand(rng, 3)], state_dtype="int8", block_size=100)
    with pytest.raises(ValueError, match="seed: "):
        optim.Adam([p], master_weights=True, seed=-1)
    with pytest.raises(ValueError, match="capturable: "):
        optim.Adam([p], master_weights=True, capturable=True)
    # nothing was written by the failed steps
    assert opt.state_dict()["state"] == {}


def test_bad_state_dicts_are_named_and_change_nothing():
    rng = np.random.default_rng(1111)
    p = rand(rng, 300)
    opt = optim.Adam([p], state_dtype="int8")
    opt.step([rand(rng, 300)])
    sd = opt.state_dict()
    before = {k: np.array(v, copy=True) for k, v in sd["state"][0].items() if isinstance(v, np.ndarray)}
    bad = {**sd, "state": {0: {**sd["state"][0], "exp_avg_scale": np.zeros(1, np.float32)}}}
    with pytest.raises(ValueError, match=r"\['exp_avg_scale'\]: expected 2 float32 block scales"):
        opt.load_state_dict(bad)
    bad = {**sd, "state": {0: {k: v for k, v in sd["state"][0].items() if k != "exp_avg_sq_scale"}}}
    with pytest.raises(ValueError, match=r"\['exp_avg_sq_scale'\]: missing"):
        opt.load_state_dict(bad)
    bad = {**sd, "state": {0: {**sd["state"][0], "exp_avg": sd["state"][0]["exp_avg"].astype(np.int16)}}}
    with pytest.raises(TypeError, match=r"\['exp_avg'\]: expected uint8 codes"):
        opt.load_state_dict(bad)
    bad = {**sd, "state": {0: {**sd["state"][0], "state_dtype": "int4"}}}
    with pytest.raises(ValueError, match=r"\['state_dtype'\]"):
        opt.load_state_dict(bad)
    fp32 = optim.Adam([rand(rng, 301)])
    with pytest.raises(ValueError, match=r"\['exp_avg'\]: expected 301 elements"):
        fp32.load_state_dict(sd)
    after = opt.state_dict()["state"][0]
    for k, v in before.items():
        np.testing.assert_array_equal(after[k], v)


def test_several_groups_are_checked_before_any_writes():
    rng = np.random.default_rng(1112)
    a, b = half(rand(rng, 5), "bfloat16"), half(rand(rng, 6), "float16")
    a0, b0 = a.copy(), b.copy()
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.1}], lr=0.01, momentum=0.9, master_weights=True)
    with pytest.raises(TypeError, match=r"grads\[1\]: expected float16"):
        opt.step([half(rand(rng, 5), "bfloat16"), half(rand(rng, 6), "bfloat16")])
    with pytest.raises(ValueError, match=r"grads\[1\] shares memory"):
        opt.step([half(rand(rng, 5), "bfloat16"), b])
    np.testing.assert_array_equal(a, a0)
    np.testing.assert_array_equal(b, b0)
    opt.step([half(rand(rng, 5), "bfloat16"), half(rand(rng, 6), "float16")])
    assert not np.array_equal(a, a0) and not np.array_equal(b, b0)


def test_mixed_half_formats_in_one_group():
    rng = np.random.default_rng(1113)
    a, b = half(rand(rng, 50), "bfloat16"), half(rand(rng, 60), "float16")
    ra, rb = a.astype(np.float32), b.astype(np.float32)
    opt = optim.RMSprop([a, b], lr=1e-2, master_weights=True)
    fp32 = optim.RMSprop([ra, rb], lr=1e-2)
    for _ in range(3):
        ga, gb = half(rand(rng, 50), "bfloat16"), half(rand(rng, 60), "float16")
        opt.step([ga, gb])
        fp32.step([ga.astype(np.float32), gb.astype(np.float32)])
    st = opt.state_dict()["state"]
    np.testing.assert_array_equal(st[0]["master_param"], ra)
    np.testing.assert_array_equal(st[1]["master_param"], rb)
    np.testing.assert_array_equal(a, ra.astype(BF16))
    np.testing.assert_array_equal(b, rb.astype(np.float16))


@pytest.mark.parametrize(
    "kw", [{"master_weights": True}, {"state_dtype": "int8"}, {"master_weights": True, "state_dtype": "int8"}]
)
def test_none_grads_skip_a_param_as_if_it_were_not_there(kw):
    """A low-precision step with a None grad leaves that param and its state alone and updates the
    others bit for bit like an optimizer that never had it."""
    dt = BF16 if kw.get("master_weights") else np.dtype(np.float32)
    rng = np.random.default_rng(7)
    ps = [rng.standard_normal(s).astype(dt) for s in (5, 7, 300)]
    alone = [ps[0].copy(), ps[2].copy()]
    skipped = ps[1].copy()
    opt, ref = optim.Adam(ps, lr=1e-2, **kw), optim.Adam(alone, lr=1e-2, **kw)
    for _ in range(3):
        g = [rng.standard_normal(p.shape).astype(dt) for p in ps]
        opt.step([g[0], None, g[2]])
        ref.step([g[0], g[2]])
    for a, b in zip((ps[0], ps[2]), alone):
        assert np.array_equal(a.view(np.uint8), b.view(np.uint8))
    assert np.array_equal(ps[1].view(np.uint8), skipped.view(np.uint8))
    assert sorted(opt.state_dict()["state"]) == [0, 2]
