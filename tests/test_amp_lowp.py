"""GradScaler with a low-precision optimizer (master_weights / state_dtype): the grads -- float16
and bfloat16 ones included, float32 ones too -- are only checked for inf/NaN (_cpu.amp_check_) and the optimizer's
step unscales them after widening to float32 (lowp_step's grad_scale), so the master equals the
fp32 optimizer fed float32(g) * float32(1 / double(scale)) bit for bit; a non-finite step changes
nothing. The CuPy twin is in test_cuda_amp.py."""

import numpy as np
import pytest

from optkern import _cpu, functional, lowp, optim
from optkern.amp import GradScaler

ml_dtypes = pytest.importorskip("ml_dtypes")
FORMATS = {"float32": np.dtype(np.float32), "bfloat16": np.dtype(ml_dtypes.bfloat16), "float16": np.dtype(np.float16)}
SIZES = [1, 7, 1023, 4099]
OPTS = [("Adam", dict(lr=1e-2, weight_decay=0.1)), ("SGD", dict(lr=0.05, momentum=0.9)), ("RMSprop", dict(lr=1e-2))]


def unscaled(g, scale: float) -> np.ndarray:
    """torch's unscale of a gradient: float32(g) times the float32 reciprocal of the scale."""
    return g.astype(np.float32) * np.float32(1.0 / np.float64(np.float32(scale)))


def mixed_params(rng, fmts):
    return [rng.standard_normal(n).astype(np.float32).astype(FORMATS[f]) for n, f in zip(SIZES, fmts)]


def arrays_of(state_dict) -> dict:
    return {
        (k, n): np.copy(v) for k, e in state_dict["state"].items() for n, v in e.items() if isinstance(v, np.ndarray)
    }


@pytest.mark.parametrize("name,kw", OPTS)
@pytest.mark.parametrize("fmts", [("bfloat16",) * 4, ("float16",) * 4, ("float16", "bfloat16", "float16", "bfloat16")])
def test_half_grads_are_unscaled_in_the_step_bit_for_bit(name, kw, fmts):
    rng = np.random.default_rng(301)
    ps = mixed_params(rng, fmts)
    ref = [p.astype(np.float32) for p in ps]  # the fp32 optimizer on the masters
    opt = getattr(optim, name)(ps, **kw, master_weights=True)
    fp32 = getattr(optim, name)(ref, **kw)
    s = GradScaler(init_scale=1000.0, growth_interval=2)  # not a power of two: the reciprocal rounds
    for _ in range(5):
        scale = s.get_scale()
        gs = [(rng.standard_normal(p.size) * 1e-3 * scale).astype(p.dtype) for p in ps]
        s.step(opt, gs)
        fp32.step([unscaled(g, scale) for g in gs])
        s.update()
        st = opt.state_dict()["state"]
        for i, p in enumerate(ps):
            np.testing.assert_array_equal(st[i]["master_param"], ref[i])
            np.testing.assert_array_equal(lowp.bits(p), lowp.bits(lowp.to_half(ref[i], lowp.half_format(p))))
    assert s.get_scale() == 4000.0  # grown twice: no step was skipped


def test_8bit_states_take_the_same_unscaled_grads():
    """fp32 params with 8-bit states: the step's unscale equals grads unscaled in NumPy first."""
    rng = np.random.default_rng(302)
    ps = [rng.standard_normal(n).astype(np.float32) for n in SIZES]
    qs = [p.copy() for p in ps]
    opt, ref = (optim.Adam(x, lr=1e-2, state_dtype="int8", block_size=64) for x in (ps, qs))
    s = GradScaler(init_scale=3.0)
    for _ in range(3):
        gs = [(rng.standard_normal(p.size) * 3.0).astype(np.float32) for p in ps]
        s.step(opt, gs)
        ref.step([unscaled(g, 3.0) for g in gs])
        s.update()
    for p, q in zip(ps, qs):
        np.testing.assert_array_equal(p, q)


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
@pytest.mark.parametrize("fmt", ["bfloat16", "float16"])
def test_a_non_finite_half_grad_changes_nothing_and_backs_off(bad, fmt):
    rng = np.random.default_rng(303)
    other = "float16" if fmt == "bfloat16" else "bfloat16"
    ps = mixed_params(rng, (fmt, other, fmt, fmt))
    opt = optim.Adam(ps, lr=1e-2, master_weights=True)
    s = GradScaler(init_scale=2.0**10)
    s.step(opt, [(rng.standard_normal(p.size)).astype(p.dtype) for p in ps])  # state exists
    s.update()
    before, state_before = [p.copy() for p in ps], arrays_of(opt.state_dict())
    gs = [(rng.standard_normal(p.size)).astype(p.dtype) for p in ps]
    gs[3][rng.integers(gs[3].size)] = bad
    kept = [g.copy() for g in gs]
    assert s.step(opt, gs) is None
    s.update()
    for p, b in zip(ps, before):
        np.testing.assert_array_equal(lowp.bits(p), lowp.bits(b))
    for key, v in arrays_of(opt.state_dict()).items():
        np.testing.assert_array_equal(v, state_before[key], err_msg=str(key))
    for g, k in zip(gs, kept):  # the grads are only read
        np.testing.assert_array_equal(g.view(np.uint8), k.view(np.uint8))
    assert s.get_scale() == 2.0**9


def test_unscale_refuses_half_grads_and_leaves_them():
    s = GradScaler()
    gs = [np.ones(3, np.float32), np.ones(3, np.float16)]
    with pytest.raises(TypeError, match=r"^grads\[1\]: float16 gradients are unscaled inside the optimizer's step"):
        s.unscale_(gs)
    np.testing.assert_array_equal(gs[0], 1.0)  # nothing written before the refusal
    with pytest.raises(TypeError, match=r"^grads\[0\]: expected float32, float16 or bfloat16 gradients, got float64"):
        s.step(optim.Adam([np.ones(3, np.float16)], master_weights=True), [np.ones(3)])


@pytest.mark.parametrize("fmt", ["float32", "bfloat16", "float16"])
def test_amp_check_finds_inf_and_nan_in_every_format_and_writes_no_grad(fmt):
    rng = np.random.default_rng(304)
    gs = [rng.standard_normal(n).astype(np.float32).astype(FORMATS[fmt]) for n in (0, 1, 7, 70_001)]
    raw = [g if fmt == "float32" else g.view(np.uint16) for g in gs]
    kept = [r.copy() for r in raw]
    found = np.zeros(1, np.float32)
    _cpu.amp_check_(raw, fmt, found)
    assert found[0] == 0.0
    for bad in (np.inf, -np.inf, np.nan):
        i = int(rng.integers(70_001))
        gs[3][i] = bad
        _cpu.amp_check_(raw, fmt, found)
        assert found[0] == 1.0
        found[0] = 0.0
        gs[3][i] = 0.5
        _cpu.amp_check_(raw, fmt, found)  # and clean again
        assert found[0] == 0.0
    for r, k in zip(raw[:3], kept[:3]):
        np.testing.assert_array_equal(r, k)
    found[0] = 1.0
    _cpu.amp_check_(raw, fmt, found)  # a clean call leaves a raised flag
    assert found[0] == 1.0


def test_amp_check_and_grad_scale_bad_input_is_named():
    f = np.zeros(1, np.float32)
    with pytest.raises(ValueError, match=r"^grad_dtype: unsupported format 'float64'"):
        _cpu.amp_check_([np.ones(3)], "float64", f)
    with pytest.raises(TypeError, match=r"^grads\[0\]: expected uint16"):
        _cpu.amp_check_([np.ones(3, np.float32)], "bfloat16", f)
    with pytest.raises(ValueError, match=r"^found_inf: expected 1 element,"):
        _cpu.amp_check_([np.ones(3, np.float32)], "float32", np.zeros(2, np.float32))
    p, g, m = np.zeros(4, np.float32), np.ones(4, np.float32), [np.zeros(4, np.float32) for _ in range(2)]
    for bad, err, msg in [
        (np.ones(1), TypeError, "expected float32"),
        (np.ones(2, np.float32), ValueError, "expected 1"),
    ]:
        with pytest.raises(err, match=rf"^grad_scale: {msg}"):
            _cpu.lowp_step(
                "adam",
                [1e-2, 0.9, 0.999, 1e-8, 0.0],
                [False, False],
                [p],
                [g],
                None,
                [[m[0]], [m[1]]],
                None,
                "float32",
                "float32",
                False,
                0,
                1,
                256,
                grad_scale=bad,
            )
        np.testing.assert_array_equal(p, 0.0)  # nothing written


def test_reference_recipe_is_functional_adam():
    """The reference above is the recipe a float32 user writes: grads unscaled, then the fp32 step."""
    rng = np.random.default_rng(305)
    p = rng.standard_normal(1023).astype(np.float16)
    opt = optim.Adam([p], lr=1e-3, master_weights=True)
    master = [p.astype(np.float32)]
    m, v = [np.zeros(1023, np.float32)], [np.zeros(1023, np.float32)]
    s = GradScaler(init_scale=1000.0)
    g = (rng.standard_normal(1023) * 1000.0).astype(np.float16)
    s.step(opt, [g])
    functional.adam_(master, [unscaled(g, 1000.0)], m, v, step=1, lr=1e-3)
    np.testing.assert_array_equal(opt.state_dict()["state"][0]["master_param"], master[0])
