"""Bad input to optkern.lowp, SWALP, GradScaler and AveragedParams: a TypeError / ValueError that
names the argument, raised before anything is written (inputs, params, state and counters are
compared with copies taken before the call)."""

import numpy as np
import pytest

from optkern import lowp, optim
from optkern.amp import GradScaler
from optkern.swa import AveragedParams
from optkern.swalp import SWALP

HUGE = 10**400  # beyond float's range


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def read_only(a):
    a.flags.writeable = False
    return a


def assert_same(arrays, copies):
    assert len(arrays) == len(copies)
    for a, c in zip(arrays, copies):
        np.testing.assert_array_equal(a, c)


# ---- lowp ---------------------------------------------------------------------------------------


def test_block_fp_with_a_block_past_the_array_is_one_block():
    # was: the native block count (n + block - 1) / block overflowed and out was left unwritten
    x = rand(10)
    want = lowp.quantize_block_fp(x, 8, 0, rounding="nearest")
    for block in (10, 11, 2**62, 2**63 - 1):
        out = np.full(10, 777.0, np.float32)
        assert lowp.quantize_block_fp(x, 8, block, rounding="nearest", out=out) is out
        np.testing.assert_array_equal(out, want)
    stochastic = lowp.quantize_block_fp(x, 8, 2**63 - 1, seed=5)
    np.testing.assert_array_equal(stochastic, lowp.quantize_block_fp(x, 8, 0, seed=5))


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda x, out: lowp.quantize_block_fp(x, 2**63, out=out), "bits"),
        (lambda x, out: lowp.quantize_block_fp(x, 25, out=out), "bits"),
        (lambda x, out: lowp.quantize_block_fp(x, 8, 2**63, out=out), "block"),
        (lambda x, out: lowp.quantize_block_fp(x, 8, -1, out=out), "block"),
        (lambda x, out: lowp.quantize_fixed_point(x, 2**63, out=out), "bits"),
        (lambda x, out: lowp.quantize_fixed_point(x, 8, 2**63, out=out), "frac"),
        (lambda x, out: lowp.quantize_fixed_point(x, 8, 101, out=out), "frac"),
        (lambda x, out: lowp.quantize_fixed_point(x, 8, -(2**63) - 1, out=out), "frac"),
    ],
)
def test_grid_int_arguments_out_of_the_native_range_are_named(call, name):
    x, out = rand(10), np.full(10, 7.0, np.float32)
    kept = x.copy()
    with pytest.raises(ValueError, match=rf"^{name}: "):
        call(x, out)
    assert_same([x, out], [kept, np.full(10, 7.0, np.float32)])


@pytest.mark.parametrize("out", [[0.0] * 10, "abc", 5.0, np.zeros(10), np.zeros(3, np.float32)])
@pytest.mark.parametrize("fn", [lowp.quantize_fixed_point, lowp.quantize_block_fp])
def test_grid_out_of_the_wrong_kind_is_named(fn, out):
    x = rand(10)
    kept = x.copy()
    with pytest.raises(TypeError, match=r"^out: expected a float32 numpy array of shape \(10,\)"):
        fn(x, out=out)
    assert_same([x], [kept])


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda x: lowp.to_half(x, np.array(["bfloat16", "float16"])), "dtype"),
        (lambda x: lowp.to_half(x, None), "dtype"),
        (lambda x: lowp.to_half(x, rounding=np.array([1, 2])), "rounding"),
        (lambda x: lowp.quantize_fixed_point(x, rounding=np.array([1, 2])), "rounding"),
        (lambda x: lowp.quantize_block_fp(x, rounding=None), "rounding"),
    ],
)
def test_string_options_of_the_wrong_type_are_named(call, name):
    with pytest.raises(TypeError, match=rf"^{name}: expected '"):
        call(rand(4))


def test_from_half_names_its_argument():
    with pytest.raises(TypeError, match=r"^h: expected a float16, bfloat16 or uint16 array, got float32"):
        lowp.from_half(np.zeros(3, np.float32))


def test_zero_dim_inputs_keep_their_shape():
    x = np.array(2.5, np.float32)
    assert lowp.to_half(x).shape == ()
    assert lowp.to_half(x, "float16").shape == ()
    assert lowp.stochastic_round(x, seed=1).shape == ()
    assert float(lowp.from_half(lowp.to_half(x, "float16"))) == 2.5
    codes, scales = lowp.quantize_blockwise(x, 64)
    assert codes.shape == () and scales.shape == (1,)  # (scales: one per block of the flat array)
    assert lowp.dequantize_blockwise(codes, scales, 64).shape == ()
    for fn in (lowp.quantize_fixed_point, lowp.quantize_block_fp):
        y = fn(np.array(1.5, np.float32), rounding="nearest")
        assert y.shape == () and float(y) == 1.5
        z = np.array(1.3, np.float32)
        assert fn(z, 8, rounding="nearest", out=z) is z  # in place on a 0-d array (was: "out" refused)
        assert z.shape == () and float(z) != np.float32(1.3)


# ---- SWALP --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw, name",
    [
        (dict(bits={"weight": 8, "grad": 8, "momentum": 25}), r"bits\['momentum'\]"),
        (dict(bits={"weight": 8, "grad": 25, "momentum": 8}), r"bits\['grad'\]"),
        (dict(bits=2**63), r"bits\['weight'\]"),
        (dict(seed=2**64 - 2), "seed"),  # the momentum quantizer uses seed + 2
        (dict(seed=2**64 - 1), "seed"),
        (dict(block=2**63), "block"),
        (dict(frac=101, number="fixed_point"), "frac"),
        (dict(lr=HUGE), "lr"),
        (dict(momentum=HUGE), "momentum"),
        (dict(number=np.array([1, 2])), "number"),
        (dict(rounding=None), "rounding"),
    ],
)
def test_swalp_constructor_checks_every_argument_before_quantizing(kw, name):
    # was: bits / seed out of the quantizers' range failed in step, after params and buffers were written
    params = [rand(6), rand(2, 3, seed=1)]
    kept = [p.copy() for p in params]
    kw = {"lr": 0.1, **kw}
    with pytest.raises((TypeError, ValueError), match=rf"^{name}: "):
        SWALP(params, **kw)
    assert_same(params, kept)


def test_swalp_largest_seed_steps():
    p = [rand(6)]
    opt = SWALP(p, 0.1, seed=2**64 - 3)
    opt.step([rand(6, seed=1)])
    assert opt.t == 1


def test_swalp_params_checked_together_before_any_is_quantized():
    p = rand(6)
    kept = p.copy()
    with pytest.raises(ValueError, match=r"^params\[1\]: shares memory with params\[0\]"):
        SWALP([p, p], 0.1)
    buf = rand(12)
    kept_buf = buf.copy()
    with pytest.raises(ValueError, match=r"^params\[1\]: shares memory with params\[0\]"):
        SWALP([buf[:8], buf[4:]], 0.1)
    ok, ro = rand(6), read_only(rand(3, seed=2))
    kept_ok = ok.copy()
    with pytest.raises(ValueError, match=r"^params\[1\]: array is read-only"):
        SWALP([ok, ro], 0.1)
    assert_same([p, buf, ok], [kept, kept_buf, kept_ok])
    SWALP([buf[:6], buf[6:]], 0.1)  # adjacent views are fine


def _swalp_snapshot(opt):
    return [p.copy() for p in opt.params] + [b.copy() for b in opt.buffers] + [a.copy() for a in opt.averages]


def _swalp_arrays(opt):
    return list(opt.params) + list(opt.buffers) + list(opt.averages)


@pytest.mark.parametrize(
    "bad",
    [
        lambda: [rand(6)],  # one missing
        lambda: [rand(6), rand(6)],  # wrong shape
        lambda: [rand(6).astype(np.float64), rand(2, 3)],
        lambda: [[0.0] * 6, rand(2, 3)],
    ],
)
def test_swalp_refused_step_changes_nothing(bad):
    params = [rand(6), rand(2, 3, seed=1)]
    opt = SWALP(params, 0.1, swa_start=0)
    opt.step([rand(6, seed=3), rand(2, 3, seed=4)])
    kept = _swalp_snapshot(opt)
    with pytest.raises((TypeError, ValueError), match=r"^grads"):
        opt.step(bad())
    assert opt.t == 1 and opt.swa.n_averaged == 1
    assert_same(_swalp_arrays(opt), kept)


def test_swalp_step_on_a_param_made_read_only_changes_nothing():
    params = [rand(6), rand(3, seed=1)]
    opt = SWALP(params, 0.1)
    opt.step([rand(6, seed=3), rand(3, seed=4)])
    kept = _swalp_snapshot(opt)
    read_only(params[1])
    with pytest.raises(ValueError, match=r"^params\[1\]: array is read-only"):
        opt.step([rand(6, seed=5), rand(3, seed=6)])
    assert opt.t == 1  # was: counted the refused step
    assert_same(_swalp_arrays(opt), kept)


# ---- GradScaler ---------------------------------------------------------------------------------


def _scaler_state(s):
    return s.state_dict(), s._found_inf


@pytest.mark.parametrize(
    "grads, err, match",
    [
        (lambda p: [np.full(3, 8.0, np.float32)], ValueError, r"^grads\[0\]: expected "),
        (lambda p: [np.full((2, 2), 8.0, np.float32)], ValueError, r"^grads\[0\]: expected shape \(4,\)"),
        (lambda p: [np.full(4, 8.0, np.float32)] * 2, ValueError, r"^grads: expected 1 array "),
        (lambda p: [p], ValueError, r"^grads\[0\] shares memory with"),
        (lambda p: [p[::-1]], ValueError, r"^grads\[0\]"),
        (lambda p: [np.full(4, 8.0)], TypeError, r"^grads\[0\]: expected float32"),
    ],
)
def test_scaler_step_checks_grads_before_unscaling(grads, err, match):
    p = np.ones(4, np.float32)
    opt = optim.SGD([p], lr=0.1)
    s = GradScaler(init_scale=4.0)
    gs = grads(p)
    kept, before = [g.copy() for g in gs], _scaler_state(s)
    with pytest.raises(err, match=match):
        s.step(opt, gs)
    assert_same(gs + [p], kept + [np.ones(4, np.float32)])  # was: the grads (or p itself) divided by 4
    assert _scaler_state(s) == before
    g = np.full(4, 8.0, np.float32)
    s.step(opt, [g])  # and the scaler still works
    s.update()
    np.testing.assert_array_equal(g, 2.0)


def test_scaler_step_names_a_missing_optimizer():
    s = GradScaler(init_scale=4.0)
    g = np.full(3, 8.0, np.float32)
    for bad in (None, "sgd", object()):
        with pytest.raises(TypeError, match=r"^optimizer: expected an optimizer"):
            s.step(bad, [g])
    np.testing.assert_array_equal(g, 8.0)
    assert s._found_inf is None
    with pytest.raises(TypeError, match=r"^optimizer: "):
        GradScaler(enabled=False).step(None, [g])


def test_scaler_refused_low_precision_step_leaves_the_scaler_as_it_was():
    p = np.ones(4, np.float16)
    opt = optim.Adam([p], lr=1e-3, master_weights=True)
    s = GradScaler(init_scale=4.0)
    g = np.full(3, 8.0, np.float16)
    before = _scaler_state(s)
    with pytest.raises(ValueError, match=r"^grads\[0\]"):
        s.step(opt, [g])
    np.testing.assert_array_equal(g, 8.0)
    np.testing.assert_array_equal(p, 1.0)
    assert _scaler_state(s) == before  # was: found_inf left set (update() then counted a step)
    with pytest.raises(RuntimeError, match="update"):
        s.update()


@pytest.mark.parametrize(
    "kw, name",
    [
        (dict(init_scale=1e39), "init_scale"),  # was: inf
        (dict(init_scale=1e-50), "init_scale"),  # was: 0.0
        (dict(init_scale=HUGE), "init_scale"),
        (dict(growth_factor=1e39), "growth_factor"),
        (dict(growth_factor=HUGE), "growth_factor"),
        (dict(backoff_factor=1.0 - 1e-10), "backoff_factor"),  # 1.0 in float32: no backoff
        (dict(growth_interval=2**63), "growth_interval"),  # was: a pybind error in update()
        (dict(growth_interval=2.0), "growth_interval"),
    ],
)
def test_scaler_constructor_range(kw, name):
    with pytest.raises((TypeError, ValueError), match=rf"^{name}: "):
        GradScaler(**kw)


@pytest.mark.parametrize("new_scale", [1e39, 1e-50, pytest.param(HUGE, id="10**400"), float("nan"), -1.0, "2"])
def test_scaler_update_new_scale_range(new_scale):
    s = GradScaler(init_scale=8.0)
    s.unscale_([np.ones(3, np.float32)])
    before = _scaler_state(s)
    with pytest.raises((TypeError, ValueError), match=r"^new_scale: "):
        s.update(new_scale=new_scale)
    assert s.get_scale() == 8.0 and s.state_dict() == before[0]


@pytest.mark.parametrize(
    "key, value, err",
    [
        ("scale", 1e39, ValueError),
        ("scale", -1.0, ValueError),  # (0 loads: a scale that backed off to 0 is saved so)
        ("growth_factor", "x", TypeError),
        ("growth_factor", -1.0, ValueError),
        ("backoff_factor", 5.0, ValueError),
        ("growth_interval", 0, ValueError),
        ("growth_interval", 2.7, TypeError),
        ("growth_interval", 2**63, ValueError),
        ("_growth_tracker", -5, ValueError),
        ("_growth_tracker", 10**30, ValueError),
        # (a count at or past growth_interval loads: state_dict() writes one after the interval was
        # lowered below the count, as torch's set_growth_interval allows; test_hunt32_amp_clip_swa)
    ],
)
def test_scaler_load_state_dict_checks_every_field_first(key, value, err):
    s = GradScaler(init_scale=8.0, growth_interval=3)
    s.unscale_([np.ones(2, np.float32)])
    s.update()
    before = s.state_dict()
    bad = {**GradScaler(init_scale=2.0**20, growth_interval=3).state_dict(), key: value}  # (the scale differs)
    with pytest.raises(err, match=rf"^state_dict\['{key}'\]: "):
        s.load_state_dict(bad)
    assert s.state_dict() == before


def test_scaler_load_state_dict_of_the_wrong_type():
    s = GradScaler()
    before = s.state_dict()
    with pytest.raises(TypeError, match=r"^state_dict: expected a dict, got NoneType"):
        s.load_state_dict(None)
    with pytest.raises(ValueError, match=r"^state_dict: missing '_growth_tracker'"):
        s.load_state_dict({k: v for k, v in GradScaler(init_scale=2.0).state_dict().items() if k != "_growth_tracker"})
    assert s.state_dict() == before


# ---- AveragedParams -----------------------------------------------------------------------------


def _averaged():
    a = AveragedParams([rand(3), rand(2, 2, seed=1)], mode="ema", decay=0.5)
    a.update([rand(3, seed=2), rand(2, 2, seed=3)])
    return a


@pytest.mark.parametrize(
    "targets, err, match",
    [
        (lambda: [np.zeros(3, np.float32)], ValueError, r"^params: expected 2 arrays"),  # was: copied one
        (lambda: [np.zeros(3, np.float32), np.zeros((2, 2), np.int32)], TypeError, r"^params\[1\]: expected float32"),
        (lambda: [np.zeros(3, np.float32), np.zeros(4, np.float32)], ValueError, r"^params\[1\]: expected shape"),
        (
            lambda: [np.zeros(3, np.float32), read_only(np.zeros((2, 2), np.float32))],
            ValueError,
            r"^params\[1\]: array is read-only",
        ),
        (lambda: [np.zeros(3, np.float32), [[0.0] * 2] * 2], TypeError, r"^params\[1\]: expected a numpy"),
        (lambda: np.zeros(3, np.float32), ValueError, r"^params: expected 2 arrays"),
    ],
)
def test_copy_to_checks_every_target_first(targets, err, match):
    a = _averaged()
    ts = targets()
    kept = [np.array(t, copy=True) for t in (ts if isinstance(ts, list) else [ts])]
    with pytest.raises(err, match=match):
        a.copy_to(ts)
    assert_same([np.asarray(t) for t in (ts if isinstance(ts, list) else [ts])], kept)


def test_copy_to_refuses_overlapping_targets():
    a = AveragedParams([rand(3), rand(3, seed=1)])
    buf = np.zeros(5, np.float32)
    with pytest.raises(ValueError, match=r"^params\[1\]: shares memory with params\[0\]"):
        a.copy_to([buf[:3], buf[2:]])
    np.testing.assert_array_equal(buf, 0.0)
    a.copy_to([buf[:3], np.zeros(3, np.float32)])
    np.testing.assert_array_equal(buf[:3], a.averages[0])


def test_averaged_state_dict_round_trip():
    a = _averaged()
    b = AveragedParams([np.zeros(3, np.float32), np.zeros((2, 2), np.float32)])
    b.load_state_dict(a.state_dict())
    assert (b.mode, b.decay, b.n_averaged) == ("ema", 0.5, 1)
    assert_same(b.averages, a.averages)
    new = [rand(3, seed=7), rand(2, 2, seed=8)]
    a.update(new)
    b.update(new)
    assert_same(b.averages, a.averages)
    sd = b.state_dict()
    sd["averages"][0][...] = 99.0  # the state dict's arrays are copies, not the averages
    assert not np.any(b.averages[0] == 99.0)


@pytest.mark.parametrize(
    "key, value, err, name",
    [
        ("mode", "mean", ValueError, "mode"),
        ("mode", None, TypeError, "mode"),
        ("decay", 2.0, ValueError, "decay"),
        ("decay", HUGE, ValueError, "decay"),
        ("n_averaged", -1, ValueError, "n_averaged"),
        ("n_averaged", 1.5, TypeError, "n_averaged"),
        ("averages", [np.zeros(3, np.float32)], ValueError, "averages"),
        ("averages", [np.zeros(3, np.float32), np.zeros(4, np.float32)], ValueError, r"averages'\]\[1\]"),
        ("averages", [np.zeros(3, np.float32), np.zeros((2, 2))], TypeError, r"averages'\]\[1\]"),
        ("averages", [np.zeros(3, np.float32), None], TypeError, r"averages'\]\[1\]"),
    ],
)
def test_averaged_load_state_dict_checks_everything_first(key, value, err, name):
    a = _averaged()
    before = a.state_dict()
    bad = {**before, "mode": "swa", "decay": 0.9, "n_averaged": 5, key: value}
    with pytest.raises(err, match=rf"^state_dict\['{name}"):
        a.load_state_dict(bad)
    after = a.state_dict()
    assert (after["mode"], after["decay"], after["n_averaged"]) == ("ema", 0.5, 1)
    assert_same(after["averages"], before["averages"])


def test_averaged_load_state_dict_of_the_wrong_type():
    a = _averaged()
    with pytest.raises(TypeError, match=r"^state_dict: expected a dict"):
        a.load_state_dict(None)
    with pytest.raises(ValueError, match=r"^state_dict: missing 'n_averaged'"):
        a.load_state_dict({"mode": "swa", "decay": 0.9, "averages": a.averages})
    assert a.n_averaged == 1


def test_averaged_huge_and_wrong_type_arguments():
    with pytest.raises(ValueError, match=r"^decay: "):
        AveragedParams([rand(3)], mode="ema", decay=HUGE)
    with pytest.raises(TypeError, match=r"^mode: "):
        AveragedParams([rand(3)], mode=np.array(["swa", "ema"]))
