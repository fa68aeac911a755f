"""Numerics at the edges: hyper-parameters checked against the dtype that runs them, and
centered RMSprop's variance clamped at zero.

Each hyper-parameter is rounded to the arrays' dtype by the rules, so it is validated
there (finite after rounding, eps > 0 after rounding, AdaGrad-Norm's b0^2 a finite
positive float64): at construction, when params of another dtype are added, and by the
functional forms. What is accepted must step without NaN; what is rejected raises
ValueError naming the hyper-parameter and the dtype.
"""

from __future__ import annotations

import numpy as np
import pytest

import optkern.functional as F
import optkern.optim as O
import reference as R

F32_TINY = float(np.nextafter(np.float32(0), np.float32(1)))  # 1.4e-45, the smallest float32 > 0
F32_MAX = float(np.finfo(np.float32).max)
F64_TINY = float(np.nextafter(0.0, 1.0))
f32, f64 = np.float32, np.float64

# (optimizer, keywords, dtype, error message regex or None when accepted)
EDGES = [
    ("Adam", dict(eps=1e-50), f32, r"^eps: 1e-50 rounds to 0 in float32"),
    ("Adam", dict(eps=1e-50), f64, None),
    ("Adam", dict(eps=F32_TINY), f32, None),
    ("Adam", dict(eps=F64_TINY), f64, None),
    ("NAdam", dict(eps=1e-46), f32, r"^eps: 1e-46 rounds to 0 in float32"),
    ("Adagrad", dict(eps=1e-46), f32, r"^eps: 1e-46 rounds to 0 in float32"),
    ("Adagrad", dict(eps=1e-46), f64, None),
    (
        "Adagrad",
        dict(initial_accumulator_value=1e39),
        f32,
        r"^initial_accumulator_value: 1e\+39 is not finite in float32",
    ),
    ("Adadelta", dict(eps=1e300), f32, r"^eps: 1e\+300 is not finite in float32"),
    ("Adadelta", dict(eps=1e300), f64, None),
    ("Adadelta", dict(eps=F32_TINY), f32, None),
    ("RMSprop", dict(eps=1e-60, centered=True), f32, r"^eps: 1e-60 rounds to 0 in float32"),
    ("SGD", dict(lr=1e-3, weight_decay=1e300), f32, r"^weight_decay: 1e\+300 is not finite in float32"),
    ("SGD", dict(lr=1e-3, weight_decay=1e300), f64, r"^weight_decay: 1e\+300 is above 1\.158e\+77 \(float64's"),
    ("SGD", dict(lr=1e-3, weight_decay=1e77), f64, None),
    ("SGD", dict(lr=1e-3, momentum=1e39), f32, r"^momentum: 1e\+39 is not finite in float32"),
    ("Adagrad", dict(initial_accumulator_value=F32_MAX), f32, None),
    ("SGD", dict(lr=1e39), f32, r"^lr: 1e\+39 is not finite in float32"),
    ("AdagradNorm", dict(b0=1e200), f32, r"^b0: 1e\+200 squared is not a finite positive float64"),
    ("AdagradNorm", dict(b0=1e200), f64, r"^b0: 1e\+200 squared is not a finite positive float64"),
    ("AdagradNorm", dict(b0=1e-200), f64, r"^b0: 1e-200 squared is not a finite positive float64"),
    ("AdagradNorm", dict(b0=1e150), f32, None),
]
IDS = [f"{n}-{kw}-{np.dtype(dt).name}" for n, kw, dt, _ in EDGES]


def _arrays(dtype, seed=0):
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(n).astype(dtype) for n in (7, 1000)]
    grads = [rng.standard_normal(n).astype(dtype) for n in (7, 1000)]
    grads[0][:3] = 0  # eps matters where a gradient is 0
    return params, grads


@pytest.mark.parametrize("name,kw,dtype,msg", EDGES, ids=IDS)
def test_hyper_parameter_at_the_edge_of_the_dtype(name, kw, dtype, msg):
    params, grads = _arrays(dtype)
    if msg is not None:
        with pytest.raises(ValueError, match=msg.replace("^", r"^param_groups\[0\]\['").replace(": ", r"'\]: ", 1)):
            getattr(O, name)(params, **kw)
        return
    opt = getattr(O, name)(params, **kw)
    opt.step(grads)
    assert all(np.isfinite(p).all() for p in params), "an accepted hyper-parameter made a NaN or inf"
    for entry in opt.state_dict()["state"].values():
        for k, v in entry.items():
            assert np.isfinite(np.asarray(v, np.float64)).all(), k


F64_SCALE_MAX = float(np.finfo(np.float64).max) ** 0.25  # lr / weight_decay / momentum bound in float64
LATER = [
    (n, kw, msg)
    for n, kw, dt, msg in EDGES
    if msg and dt is f32 and n != "AdagradNorm" and not any(v > F64_SCALE_MAX for v in kw.values())
]


@pytest.mark.parametrize("name,kw,msg", LATER, ids=[f"{n}-{kw}" for n, kw, _ in LATER])
def test_params_of_another_dtype_added_later_are_checked(name, kw, msg):
    """Accepted for float64 params, refused when a float32 group is added (nothing changes)."""
    p64, _ = _arrays(np.float64)
    opt = getattr(O, name)(p64, **kw)
    p32, _ = _arrays(np.float32, seed=1)
    field = msg[1:].split(":")[0]
    with pytest.raises(ValueError, match=r"^param_groups\[1\]\['" + field + r"'\]: .* in float32"):
        opt.add_param_group({"params": p32})
    assert len(opt.param_groups) == 1


def test_betas_are_named_in_the_optimizer_and_by_keyword_in_the_functional_form():
    params, grads = _arrays(np.float32)
    # betas are in [0, 1) and round within float32; a float64 array runs any finite eps
    with pytest.raises(ValueError, match=r"^eps: 1e-50 rounds to 0 in float32"):
        F.adam_(
            params, grads, [np.zeros_like(p) for p in params], [np.zeros_like(p) for p in params], step=1, eps=1e-50
        )
    with pytest.raises(ValueError, match=r"^weight_decay: 1e\+300 is not finite in float32"):
        F.sgd_(params, grads, lr=0.1, weight_decay=1e300)
    p64, g64 = _arrays(np.float64)
    F.sgd_(p64, g64, lr=1e-3, weight_decay=1e77)  # float64's bound: max ** (1/4) = 1.2e77
    assert all(np.isfinite(p).all() for p in p64)


def test_adagrad_norm_b0_1e200_raises_value_error_not_overflow_error():
    with pytest.raises(ValueError, match="b0"):
        O.AdagradNorm(_arrays(np.float64)[0], b0=1e200)


# ---- centered RMSprop: v - a^2 clamped at zero ------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_centered_rmsprop_with_alpha_0_never_takes_a_negative_square_root(dtype):
    """alpha = 0: v = g^2 and a = g, so v - a^2 is 0 up to rounding -- often below 0."""
    rng = np.random.default_rng(3)
    params = [rng.standard_normal(10007).astype(dtype)]
    opt = O.RMSprop(params, lr=0.01, alpha=0.0, centered=True)
    for _ in range(3):
        opt.step([rng.standard_normal(10007).astype(dtype)])
    assert np.isfinite(params[0]).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_centered_rmsprop_with_a_constant_gradient(dtype, momentum):
    """A constant gradient drives v - a^2 = g^2 (1 - alpha^t) alpha^t to 0 from above; by step ~52
    (float64, alpha = 0.5) rounding takes it below 0 (torch: NaN). While it is well above the
    rounding the steps match the reference; after that they stay finite."""
    rng = np.random.default_rng(4)
    p0 = rng.standard_normal(1001).astype(dtype)
    g = np.full(1001, 0.37, dtype)
    hp = dict(lr=1e-3, alpha=0.5, centered=True, momentum=momentum)
    params = [p0.copy()]
    opt = O.RMSprop(params, **hp)
    for _ in range(10):
        opt.step([g])
    want, _ = R.run("RMSprop", [p0.astype(np.float64)], [[g.astype(np.float64)]] * 10, hp)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(params[0], want[0], **tol)
    for _ in range(70):
        opt.step([g])
    assert np.isfinite(params[0]).all()
    assert all(np.isfinite(v).all() for v in opt.state_dict()["state"][0].values() if isinstance(v, np.ndarray))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_centered_rmsprop_clamps_a_negative_variance_to_zero(dtype):
    """alpha = 1 keeps v = 0 and a = 1: v - a^2 = -1 is clamped, so avg = eps and the step is lr g / eps."""
    rng = np.random.default_rng(5)
    p0 = rng.standard_normal(101).astype(dtype)
    g = rng.standard_normal(101).astype(dtype)
    want = p0.astype(np.float64) - 1e-3 * g.astype(np.float64) / 1e-2
    p = p0.copy()
    F.rmsprop_([p], [g], [np.zeros_like(p)], [np.ones_like(p)], lr=1e-3, alpha=1.0, eps=1e-2)
    np.testing.assert_allclose(p, want, rtol=1e-6 if dtype == np.float32 else 1e-14)
    ref = [p0.astype(np.float64)]
    state = {"square_avg": np.zeros(101), "grad_avg": np.ones(101)}
    R.rmsprop_step(ref[0], g.astype(np.float64), state, 1, lr=1e-3, alpha=1.0, eps=1e-2, centered=True)
    np.testing.assert_allclose(ref[0], want, rtol=1e-14)  # the reference clamps too
