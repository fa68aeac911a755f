"""Native entry points outside the optimizer steps that took bad arguments without naming them:

- ``precheck_step_`` raised pybind11's "Object of type 'str' is not an instance of 'dtype'" for a
  run whose dtype was not a ``numpy.dtype``: no run, no argument named;
- ``_set_stream_bytes`` took a negative threshold (every output streamed, and the value handed back
  later as a size it is not).
"""

import numpy as np
import pytest

from optkern import _cpu


@pytest.mark.parametrize("dtype", ["float32", 3, None, np.float32])
def test_precheck_names_the_run_whose_dtype_is_not_a_dtype(dtype):
    p = np.ones(3, np.float32)
    good = (np.dtype(np.float32), [p], ["p"], [np.ones(3, np.float32)], [p], ["g"])
    bad = (dtype, [p], ["p"], [], [], [])
    with pytest.raises(TypeError, match=r"^runs\[1\] dtype: expected a numpy.dtype, got "):
        _cpu.precheck_step_([good, bad])
    _cpu.precheck_step_([good, (np.dtype(np.float32), [p.copy()], ["p"], [], [], [])])


def test_stream_bytes_is_a_size():
    old = _cpu._set_stream_bytes(1 << 20)
    try:
        for bad in (-1, -(2**63)):
            with pytest.raises(ValueError, match=r"^bytes: must be >= 0, got "):
                _cpu._set_stream_bytes(bad)
        assert _cpu._set_stream_bytes(0) == 1 << 20  # (the refused values left it as it was)
    finally:
        _cpu._set_stream_bytes(old)


def _v(*shape, dtype=np.float64):
    return np.linspace(0.1, 1.0, int(np.prod(shape))).reshape(shape).astype(dtype)


def _lowp_sgd_call():
    p, g = _v(5, dtype=np.float32), np.full(5, 0.5, np.float32)
    kw = dict(rule="sgd", scalars=[0.1, 0.0, 0.0, 0.0], flags=[False, False, True, False], params=[p], grads=[g])
    kw |= dict(masters=None, states=[], scales=None, param_dtype="float32", state_dtype="float32")
    return kw | dict(stochastic=False, seed=0, step=1, block=256)


# (function, its valid keyword arguments, the bool argument): every native bool parameter but the
# optimizer steps' (test_hunt49c_native_hyper.py)
FLAG_CALLS = [
    ("combine_rows_", lambda: dict(C=np.ones((2, 3)), V=_v(3, 4), out=np.zeros((2, 4)), transpose=False), "transpose"),
    ("lbfgs_move_", lambda: dict(params=[_v(4)], x=np.zeros(4), d=np.ones(4), t=0.5, save=True), "save"),
    (
        "cg_iteration_",
        lambda: (
            dict(x=np.zeros(4), r=np.ones(4), p=np.ones(4), y=np.full(4, 2.0), rz=4.0, damping=0.0, tol=0.0)
            | dict(stop_on_negative_curvature=True)
        ),
        "stop_on_negative_curvature",
    ),
    (
        "cg_iteration_known_",
        lambda: (
            dict(x=np.zeros(4), r=np.ones(4), p=np.ones(4), y=np.full(4, 2.0), pAp=8.0, rz=4.0, damping=0.0)
            | dict(tol=0.0, stop_on_negative_curvature=True)
        ),
        "stop_on_negative_curvature",
    ),
    (
        "cg_update_slice_",
        lambda: dict(x=np.zeros(4), r=np.ones(4), p=np.ones(4), y=np.ones(4), alpha=0.5, damping=0.0, transposed=False),
        "transposed",
    ),
    (
        "lowp_to_half",
        lambda: (
            dict(x=_v(4, dtype=np.float32), out=np.zeros(4, np.uint16), dtype="bfloat16", stochastic=False)
            | dict(seed=0, stream=0, offset=0)
        ),
        "stochastic",
    ),
    (
        "lowp_quantize_fixed_point",
        lambda: (
            dict(x=_v(4, dtype=np.float32), out=np.zeros(4, np.float32), bits=8, frac=4, stochastic=False)
            | dict(seed=0, stream=0, offset=0)
        ),
        "stochastic",
    ),
    (
        "lowp_quantize_block_fp",
        lambda: (
            dict(x=_v(4, dtype=np.float32), out=np.zeros(4, np.float32), bits=8, block=0, stochastic=False)
            | dict(seed=0, stream=0, offset=0)
        ),
        "stochastic",
    ),
    ("lowp_decode_map", lambda: dict(signed=True), "signed"),
    ("lowp_step", _lowp_sgd_call, "stochastic"),
    (
        "channel_norm_forward",
        lambda: (
            dict(x=_v(8), mean=np.zeros(2), rstd=np.ones(2), weight=np.ones(2), bias=np.zeros(2))
            | dict(out=np.zeros(8), N=2, C=2, S=2, training=False)
        ),
        "training",
    ),
    (
        "channel_norm_backward",
        lambda: (
            dict(dy=np.ones(8), x=_v(8), mean=np.zeros(2), rstd=np.ones(2), weight=np.ones(2), dx=np.zeros(8))
            | dict(dweight=np.zeros(2), dbias=np.zeros(2), N=2, C=2, S=2, training=False)
        ),
        "training",
    ),
    (
        "row_norm_forward",
        lambda: (
            dict(x=_v(2, 4), weight=np.ones(4), bias=np.zeros(4), out=np.zeros((2, 4)), mean=np.zeros(2))
            | dict(rstd=np.zeros(2), rows=2, groups=1, group_channels=4, spatial=1, eps=1e-5, rms=False)
        ),
        "rms",
    ),
    (
        "row_norm_backward",
        lambda: (
            dict(dy=np.ones((2, 4)), x=_v(2, 4), weight=np.ones(4), mean=np.full(2, 0.5), rstd=np.ones(2))
            | dict(dx=np.zeros((2, 4)), dweight=np.zeros(4), dbias=np.zeros(4), rows=2, groups=1, group_channels=4)
            | dict(spatial=1, rms=False)
        ),
        "rms",
    ),
    (
        "sam_perturb_",
        lambda: (
            dict(params=[_v(4)], grads=[np.ones(4)], backups=[np.zeros(4)], rho=0.05, eps=1e-12, out=np.zeros(1))
            | dict(adaptive=False)
        ),
        "adaptive",
    ),
]


def _arrays_in(kw):
    out = []
    for v in kw.values():
        out += [a for a in (v if isinstance(v, list) else [v]) if isinstance(a, np.ndarray)]
    return out


@pytest.mark.parametrize(("name", "make", "flag"), FLAG_CALLS, ids=[c[0] for c in FLAG_CALLS])
def test_bool_parameters_take_bools_only(name, make, flag):
    """pybind11's bool read None as False and any int (2, -1) as True: a TypeError naming it now."""
    fn = getattr(_cpu, name)
    for bad in (None, 2, 0, "no"):
        kw = make() | {flag: bad}
        before = [a.copy() for a in _arrays_in(kw)]
        with pytest.raises(TypeError, match=f"^{flag}: expected a bool, got {type(bad).__name__}$"):
            fn(**kw)
        assert all(np.array_equal(a, b) for a, b in zip(before, _arrays_in(kw)))
    fn(**make())
    fn(**(make() | {flag: np.bool_(False)}))


@pytest.mark.parametrize("bad", [None, 1, "yes"])
def test_lowp_step_flags_are_bools(bad):
    kw = _lowp_sgd_call()
    kw["flags"] = [False, bad, True, False]
    p0 = kw["params"][0].copy()
    with pytest.raises(TypeError, match=rf"^flags\[1\]: expected a bool, got {type(bad).__name__}$"):
        _cpu.lowp_step(**kw)
    assert np.array_equal(kw["params"][0], p0)


@pytest.mark.parametrize(
    ("rule", "scalars", "message"),
    [
        ("sgd", [float("nan"), 0.0, 0.0, 0.0], r"scalars\[0\] \(lr\): must be finite, got nan"),
        ("sgd", [0.1, 0.0, 1.5, 0.0], r"scalars\[2\] \(dampening\): must be in \[0.0, 1.0\], got 1.5"),
        ("adam", [1e-3, 0.9, 1.0, 1e-8, 0.0], r"scalars\[2\] \(beta2\): must be in \[0.0, 1.0\), got 1.0"),
        ("adam", [1e-3, 0.9, 0.999, 0.0, 0.0], r"scalars\[3\] \(eps\): must be in \(0.0, inf\), got 0.0"),
        (
            "nadam",
            [1e-3, 0.9, 0.999, 1e-8, 0.0, 4e-3, 1.5],
            r"scalars\[6\] \(mu_product\): must be in \[0.0, 1.0000001192092896\], got 1.5",
        ),
    ],
)
def test_lowp_step_scalars_are_checked_as_the_steps_check_them(rule, scalars, message):
    """lowp_step took the same hyper-parameters unchecked: lr = NaN wrote NaN into every param."""
    kw = _lowp_sgd_call() | dict(rule=rule, scalars=scalars, flags=[False, False, False])
    p = kw["params"][0]
    kw["states"] = [[np.zeros_like(p)], [np.zeros_like(p)]] if rule != "sgd" else []
    p0 = p.copy()
    with pytest.raises(ValueError, match="^" + message):
        _cpu.lowp_step(**kw)
    assert np.array_equal(p, p0)


@pytest.mark.parametrize("passes", [65, 10**6, 2**31, 2**62])
def test_orthonormalize_passes_are_bounded(passes):
    """A row in the span of the rows before never stops cancelling and took every pass asked for:
    max_passes=10**6 on a (4, 2) Q ran 8 s, 2**31 - 1 hours without the GIL (2**31: pybind11's
    unnamed TypeError)."""
    Q, s = np.random.default_rng(0).standard_normal((4, 2)), np.full(4, 7.0)
    Q0 = Q.copy()
    with pytest.raises(ValueError, match=r"^max_passes: expected 1 to 64, got "):
        _cpu.orthonormalize_rows_(Q, s, passes)
    assert np.array_equal(Q, Q0) and (s == 7.0).all()
    assert _cpu.orthonormalize_rows_(Q, s, 64) == 2  # (the two rows past n zeroed after their 64 passes)
    assert not Q[2:].any()
