"""The cases the fuzz suite (tests/test_fuzz_*.py) found, as plain tests: each names the argument
it must name and checks that nothing was written, or that the result is the float64 one."""

from __future__ import annotations

import re

import numpy as np
import pytest

import optkern
import optkern.functional as F
from optkern import hessian, norm, schedules
from optkern.nn import MLP

F32_SCALE_MAX = float(np.finfo(np.float32).max) ** 0.25


def _arrays(dtype, n=5, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(n) * 3 + 0.5).astype(dtype), rng.standard_normal(n).astype(dtype)


# ---- non-finite results from finite extreme hyper-parameters (float32 intermediate overflow) ----


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda p, g: F.adagrad_([p], [g], [np.zeros_like(p)], step=1, lr=10.0, weight_decay=1e38), "weight_decay"),
        (lambda p, g: F.adagrad_([p], [g], [np.zeros_like(p)], step=1, lr=1e38, weight_decay=10.0), "lr"),
        (lambda p, g: F.sgd_([p], [g], [np.zeros_like(p)], lr=0.1, momentum=1e30), "momentum"),
        (lambda p, g: optkern.optim.Adam([p], weight_decay=1e20), "param_groups[0]['weight_decay']"),
    ],
)
def test_float32_scales_above_max_quarter_power_are_refused(call, name):
    p, g = _arrays(np.float32)
    before = p.copy()
    with pytest.raises(ValueError, match="^" + re.escape(name) + r": .* is above 4\.295e\+09"):
        call(p, g)
    assert np.array_equal(p, before)


def test_float32_scale_at_the_bound_steps_finite_and_float64_runs_any_finite_scale():
    p, g = _arrays(np.float32)
    F.adagrad_([p], [g], [np.zeros_like(p)], step=1, lr=1.0, weight_decay=F32_SCALE_MAX)
    assert np.isfinite(p).all()
    p64, g64 = _arrays(np.float64)
    F.adagrad_([p64], [g64], [np.zeros_like(p64)], step=1, lr=10.0, weight_decay=1e38)
    assert np.isfinite(p64).all()


# ---- errors that named the wrong argument ----------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float16, np.int32, np.complex64])
def test_unsupported_params_dtype_is_named_before_a_hyper_parameter_it_cannot_hold(dtype):
    p = np.ones(3, dtype)
    with pytest.raises(TypeError, match=r"^(params|grads)\[0\]: expected"):
        F.sgd_([p], [np.ones(3, dtype)], lr=1e8)


def test_norm_eps_rounding_to_zero_in_float32_statistics_names_eps():
    x = np.ones((2, 3), np.float32)
    for call in (lambda: norm.layer_norm(x, 3, eps=1e-300), lambda: norm.group_norm(x[..., None], 1, eps=1e-50)):
        with pytest.raises(ValueError, match=r"^eps: 1e-\d+ rounds to 0 in float32"):
            call()
    # a float16 x keeps float32 statistics (CPU and GPU alike): the same eps error
    with pytest.raises(ValueError, match=r"^eps: 1e-300 rounds to 0 in float32"):
        norm.layer_norm(x.astype(np.float16), 3, eps=1e-300)
    norm.layer_norm(x.astype(np.float64), 3, eps=1e-300)  # float64 statistics hold it


def test_dense_operator_of_another_dtype_names_op():
    # (power_iteration's argument is op: it was named A, as_operator's own name for it)
    with pytest.raises(TypeError, match=r"^op: expected a float32 or float64 matrix, got object"):
        hessian.power_iteration(np.eye(2).astype(object))


def test_huge_counts_are_named():
    A = np.eye(3)
    with pytest.raises(ValueError, match=r"^num_matvecs: must be at most 2\*\*31 - 1"):
        hessian.trace(A, num_matvecs=2**70)
    with pytest.raises(ValueError, match=r"^grid: must be at most 2\*\*31 - 1"):
        hessian.spectral_density(A, steps=3, grid=2**70)


def test_schedule_arguments_are_named():
    with pytest.raises(TypeError, match=r"^milestones: expected a sequence"):
        schedules.multi_step(milestones=0)
    with pytest.raises(ValueError, match=r"^schedule: must be finite"):
        schedules.linear_warmup(schedule=float("nan"), warmup_steps=2)


def test_mlp_float_labels_for_cross_entropy_name_y():
    model = MLP([2, 3])
    x = np.ones((4, 2), np.float32)
    with pytest.raises(TypeError, match=r"^y: expected integer labels"):
        model.loss(model.init_params(0), x, np.zeros(4, np.float16))


# ---- wrong exception type --------------------------------------------------------------------


def test_inverse_time_with_a_large_power_decays_to_zero_without_overflow_error():
    s = schedules.inverse_time(lr=1.0, k=1.0, power=1000)
    assert s(1000) == 0.0
    assert s(1) == pytest.approx(2.0**-1000, rel=1e-12)


# ---- partial writes --------------------------------------------------------------------------


def test_clip_error_if_nonfinite_leaves_out_unchanged():
    g = np.array([1.0, np.nan, 2.0], np.float32)
    out = np.full(1, 7.0)
    with pytest.raises(ValueError, match=r"^grads\[0\]: contains non-finite values"):
        optkern.clip_grad_norm_([g], 1.0, error_if_nonfinite=True, out=out)
    assert out[0] == 7.0
    assert np.isnan(g[1]) and g[0] == 1.0


# ---- silent NaN --------------------------------------------------------------------------------


@pytest.mark.parametrize("eps", [5e-324, 1e-320])
def test_constant_row_with_a_subnormal_eps_is_normalized_to_zero_not_nan(eps):
    """rsqrt_scaled: eps * 4^-e underflowed to 0 for a zero variance (1 / sqrt(0) * 0 = NaN)."""
    x = np.array([[2.31728278]])
    # (the row kernel's call of group_norm(x, 1): torch's group norm refuses a single value, as
    # optkern's now does; layer norm takes it)
    y, _ = norm.layer_norm(x, 1, eps=eps)
    assert np.array_equal(y, np.zeros_like(x))
    x3 = np.full((2, 4), 1e3)
    y3, _ = norm.layer_norm(x3, 4, eps=eps, bias=np.full(4, 0.5))
    assert np.array_equal(y3, np.full_like(x3, 0.5))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["group", "instance", "layer", "batch"])
def test_constant_row_with_a_tiny_eps_keeps_rstd_to_the_dtype_precision(dtype, kind):
    """Fuzz finding (seed 20261130, float32 instance norm of [1000.12573] * 2, eps 1e-38): eps * 4^-e
    fell below float32's normal range and kept 3 bits, rstd came out 1.0041e19 instead of 1e19."""
    tiny = 1e-38 if dtype == np.float32 else 1e-306
    x = np.full((2, 1, 2), 1000.12573, dtype)
    call = {
        "group": lambda: norm.group_norm(x, 1, eps=tiny),
        "instance": lambda: norm.instance_norm(x, eps=tiny),
        "layer": lambda: norm.layer_norm(x, 2, eps=tiny),
        "batch": lambda: norm.batch_norm(x.reshape(4, 1), eps=tiny),
    }[kind]
    _, saved = call()
    want = 1.0 / np.sqrt(float(dtype(tiny)))
    np.testing.assert_allclose(np.asarray(saved.rstd, np.float64), want, rtol=4 * np.finfo(dtype).eps)


# ---- harness: a valid call in the other float dtype was judged by the drawn dtype's tolerance ----


@pytest.mark.parametrize("norm_type", [1.0, 2.0, 3.0, float("inf")])
def test_clip_grad_norm_of_one_float32_array_norm_in_float64_and_scale_rounded_once(norm_type):
    """The fuzzer's 'other_float' spoil: one float32 array where float64 was drawn is valid, and the
    harness then held the float32 result to float64's tolerance (8.4e-9 off for norm_type=1). The
    library's promise, exactly: the norm of the float32 values accumulated in float64, then every
    gradient multiplied by the coefficient torch's float32 ops make from that norm rounded to float32
    (reciprocal of norm + 1e-6, times max_norm, clamped to 1: rules::clip_coef)."""
    g = np.array([0.04196427, -0.03775166, 0.20109385, 0.03552414, -0.16252337, 0.11488757, 0.4062548], np.float32)
    g64 = g.astype(np.float64)
    if np.isinf(norm_type):
        ref = float(np.max(np.abs(g64)))
    else:
        ref = float(np.sum(np.abs(g64) ** norm_type) ** (1 / norm_type))
    max_norm = 0.5 * ref
    coef = np.float32(1) / (np.float32(ref) + np.float32(1e-6)) * np.float32(max_norm)
    expect = g * min(coef, np.float32(1))
    total = optkern.clip_grad_norm_([g], max_norm, norm_type=norm_type)
    assert total == pytest.approx(ref, rel=1e-14, abs=0)
    assert np.array_equal(g, expect)  # one float32 multiplication per element


def test_clip_grad_value_of_float32_clamps_to_the_float32_bound():
    g = np.array([0.3, -0.3, 0.05, -1e30], np.float32)
    optkern.clip_grad_value_([g], 0.1)
    assert np.array_equal(g, np.array([0.1, -0.1, 0.05, -0.1], np.float32))


# ---- harness: a sum that cancels was measured against its result, not against its terms ----


def test_rmsprop_weight_decay_cancelling_the_gradient_is_within_one_rounding_of_its_terms():
    """Fuzz finding (rmsprop_, float32, weight_decay=949, alpha=0.5): momentum_buffers 3.7e-5 off the
    float64 reference relative to its largest value. g + 949 p cancels to ~1e-4 of its terms, so
    rounding 949 p (or the sum) in float32 moves g' by ~6e-8 of |g| + 949 |p|, i.e. ~6e-4 of g': the
    kernel is right (torch rounds the same products), the harness now scales by the terms
    (tests/test_fuzz_optim.py: term_slack). Here: 2.8e-4 off relative to max |b|, and within one
    float32 rounding of the terms for every element."""
    import reference as R

    rng = np.random.default_rng(5)
    p = rng.standard_normal(7).astype(np.float32)
    g = (-949 * p.astype(np.float64) * (1 + 1e-4 * rng.standard_normal(7))).astype(np.float32)
    v = np.abs(rng.standard_normal(7)).astype(np.float32)
    b = rng.standard_normal(7).astype(np.float32)
    hp = dict(alpha=0.5, weight_decay=949.0, momentum=1e-300)
    p64, g64 = p.astype(np.float64), g.astype(np.float64)
    terms = np.abs(g64) + 949.0 * np.abs(p64)
    state = {"square_avg": v.astype(np.float64), "momentum_buffer": b.astype(np.float64)}
    R.rmsprop_step(p64, g64, state, 1, **hp)
    F.rmsprop_([p], [g], [v], None, [b], **hp)
    avg = np.sqrt(state["square_avg"]) + 1e-8
    unit = 2.0**-24
    assert np.all(np.abs(b - state["momentum_buffer"]) <= 2 * unit * terms / avg)
    assert np.all(np.abs(p - p64) <= 2 * unit * (np.abs(p64) + 1e-2 * terms / avg))


# ---- non-finite results from finite extreme hyper-parameters: intermediate overflow ----------


def test_rmsprop_nesterov_with_a_tiny_eps_steps_finite_where_float64_is_finite():
    """Fuzz finding (RMSprop, float32, alpha=1, eps=1e-38, momentum=0.9, nesterov): alpha = 1 keeps
    v at 0, so u = g / eps ~ 2e38; the look-ahead u + momentum b (3.8e38) overflowed float32 although
    lr times it (3.8e36) does not. The rule now adds lr u and (lr momentum) b."""
    import reference as R

    g = np.array([2.0, -2.5, 1.0, 0.5], np.float32)
    p = np.array([1.0, -1.0, 0.5, 0.0], np.float32)
    v, b = np.zeros_like(p), np.zeros_like(p)
    hp = dict(lr=0.01, alpha=1.0, eps=1e-38, momentum=0.9, nesterov=True)
    p64 = p.astype(np.float64)
    R.rmsprop_step(p64, g.astype(np.float64), {}, 1, **hp)
    F.rmsprop_([p], [g], [v], None, [b], **hp)
    assert np.all(np.isfinite(p)) and np.all(np.abs(p64) < np.finfo(np.float32).max)
    np.testing.assert_allclose(p, p64, rtol=1e-5)


# ---- wrong exception type: NumPy floating-point warnings from valid non-finite input --------


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("method", ["predict", "loss", "loss_and_grad", "hvp", "ggn_vp", "hvp_block", "jvp"])
def test_mlp_with_an_infinite_parameter_propagates_nan_without_numpy_warnings(activation, method):
    """Fuzz finding (CI run, MLP [1, 3, 2] with one parameter inf, method 'loss'): inf * 0 in the
    BLAS product made NumPy warn "invalid value encountered in matmul" -- an exception under
    ``-W error`` instead of the IEEE result. The MLP's methods now return NaN / inf quietly."""
    model = MLP([1, 3, 2], activation=activation, dtype=np.float32)
    params = model.init_params(0)
    params[0] = np.inf
    x = np.array([[0.125], [-0.132]], np.float32)
    y = np.array([0, 0])
    v = np.ones_like(params)
    args = {
        "predict": (params, x),
        "loss": (params, x, y),
        "loss_and_grad": (params, x, y),
        "hvp": (params, x, y, v),
        "ggn_vp": (params, x, y, v),
        "hvp_block": (params, x, y, np.stack([v, v])),
        "jvp": (params, x, v),
    }[method]
    with np.errstate(all="raise"):  # the caller's own setting must not turn IEEE results into errors
        out = getattr(model, method)(*args)
    m64 = MLP([1, 3, 2], activation=activation, dtype=np.float64)
    args64 = tuple(a.astype(np.float64) if a.dtype == np.float32 else a for a in args)
    with np.errstate(all="ignore"):
        ref = getattr(m64, method)(*args64)

    def flat(r):
        return np.concatenate([np.ravel(np.asarray(o, np.float64)) for o in (r if isinstance(r, tuple) else (r,))])

    np.testing.assert_allclose(flat(out), flat(ref), rtol=1e-5, atol=1e-6, equal_nan=True)


# ---- SGD's first step ignores whatever the momentum buffer holds (fuzz, seed 20261130) --------
# The buffer update is one fma whose addend is -0 on the first step; a NaN or inf left in a buffer
# the first step overwrites must not leak into it (it did, as -0 * NaN, in one version of the rule).


@pytest.mark.parametrize("form", ["pytorch", "textbook"])
@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("junk", [np.nan, np.inf, -np.inf, 7.0])
def test_sgd_first_step_ignores_the_buffer(form, nesterov, dtype, junk):
    g = np.array([-0.12210486, -0.0, 0.0, 3.0, -2.5, 1e-30, 7.0], dtype)
    p = np.linspace(-1, 1, g.size).astype(dtype)
    damp = 0.0 if nesterov else 0.3  # (Nesterov needs dampening 0)
    hp = dict(lr=0.1, momentum=0.5, dampening=damp, nesterov=nesterov, first=True, momentum_form=form)
    p_junk, b_junk = p.copy(), np.full_like(p, junk)
    p_zero, b_zero = p.copy(), np.zeros_like(p)
    F.sgd_([p_junk], [g], [b_junk], **hp)
    F.sgd_([p_zero], [g], [b_zero], **hp)
    np.testing.assert_array_equal(p_junk, p_zero)
    np.testing.assert_array_equal(b_junk, b_zero)
    want = g if form == "pytorch" else dtype(-0.1) * g  # torch clones the grad; textbook v = -lr g
    np.testing.assert_array_equal(b_junk, want)
    assert np.array_equal(np.signbit(b_junk), np.signbit(want))  # the -0 grad stays -0 (pytorch form)


def test_batch_norm_dx_of_an_offset_batch_of_two_is_near_the_float64_one():
    # x ~ 1000 + 0.01 N(0, 1) over a batch of two: the float32 mean rounded to float32 is off by half
    # an ulp of 1000, 0.3% of x - mean, and a dx formed around it ~6% off (torch's float32 dx is; so
    # was ours until batch norm subtracted the mean's low part, h253). Found by fuzz seed 77123.
    x = np.array([[1000.12573, 999.8679, 1000.64044], [1000.1049, 999.46436, 1000.3616]], np.float32)
    dy = np.random.default_rng(2).standard_normal(x.shape).astype(np.float32)
    y, saved = norm.batch_norm(x, None, None, eps=1e-5)
    dx = norm.batch_norm_backward(dy, x, None, saved)[0]
    x64, d = x.astype(np.float64), dy.astype(np.float64)
    xhat = (x64 - x64.mean(0)) / np.sqrt(x64.var(0) + 1e-5)
    d64 = (d - d.mean(0) - xhat * (d * xhat).mean(0)) / np.sqrt(x64.var(0) + 1e-5)
    assert np.abs(dx - d64).max() <= 1e-4 * np.abs(d64).max()  # (was 0.60 off, 6 %)
    torch = pytest.importorskip("torch")
    xt = torch.tensor(x, requires_grad=True)
    torch.nn.functional.batch_norm(xt, None, None, training=True, eps=1e-5).backward(torch.tensor(dy))
    assert np.abs(xt.grad.numpy() - d64).max() > 0.1  # the case is the ill-conditioned one (for torch)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_norms_of_one_value_with_the_smallest_eps_have_zero_gradient(dtype):
    # Fuzz seed 9151: one value per row and eps = the smallest subnormal (5e-324 in float64; float32
    # statistics take the float32 one): rstd ~ 4e161, x - mean = 0 exactly. y = 0 and dx = 0, the
    # exact values (torch 2.13's float64 dx is NaN here). The fuzz test's own tolerance overflowed to
    # inf on it; this test found that with a weight dx was 5e145 (dy w - mean(g) contracted, rules/norm.hpp).
    eps = 5e-324 if dtype == np.float64 else float(np.finfo(np.float32).smallest_subnormal)
    x = np.array([[0.12573022], [-3.5]], dtype)
    dy = np.array([[0.7], [-1.25]], dtype)
    w, b = np.array([1.5], dtype), np.array([0.25], dtype)
    y, saved = norm.layer_norm(x, (1,), w, b, eps)
    assert np.all(np.isfinite(saved.rstd)) and np.min(saved.rstd) > 1e20
    np.testing.assert_array_equal(y, np.full_like(x, 0.25))
    dx, dw, db = norm.layer_norm_backward(dy, x, w, saved)
    np.testing.assert_array_equal(dx, np.zeros_like(x))
    np.testing.assert_array_equal(dw, np.zeros(1, dtype))
    np.testing.assert_array_equal(db, dy.sum(0))
    # group norm with one value per group: the same
    x4, dy4 = x.reshape(1, 2).repeat(2, 0), dy.reshape(1, 2).repeat(2, 0)
    w4 = np.array([1.5, -0.3], dtype)
    y4, saved4 = norm.group_norm(x4, 2, w4, None, eps=eps)
    np.testing.assert_array_equal(y4, np.zeros_like(x4))
    np.testing.assert_array_equal(norm.group_norm_backward(dy4, x4, w4, saved4)[0], np.zeros_like(x4))


@pytest.mark.parametrize(
    "name, kw",
    [("AdagradNorm", dict(lr=0.5, b0=0.1)), ("Adam", dict(lr=0.01)), ("SGD", dict(lr=0.1, momentum=0.9))],
)
@pytest.mark.parametrize("groups", [1, 2])
def test_one_half_precision_grad_read_for_two_params_is_not_an_overlap(name, kw, groups):
    # (fuzz seed 20261202: AdagradNorm with master weights refused one float16 grad given for two
    # params, "grads[1] shares memory with grads[0]", though nothing writes a grad)
    rng = np.random.default_rng(5)
    p0 = [rng.standard_normal(3).astype(np.float16) for _ in range(2)]
    g = rng.standard_normal(3).astype(np.float16)
    results = []
    for grads in ([g, g], [g, g.copy()]):
        ps = [p.copy() for p in p0]
        spec = [{"params": [p]} for p in ps] if groups == 2 else ps
        opt = getattr(optkern.optim, name)(spec, master_weights=True, **kw)
        for _ in range(2):
            opt.step(grads)
        results.append(ps)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(results[0][0], p0[0])
    with pytest.raises(ValueError, match=r"^grads\[1\] shares memory with params\[1\] "):
        getattr(optkern.optim, name)(p0, master_weights=True, **kw).step([g, p0[1]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layer_and_rms_norm_of_one_row_given_as_a_1d_x(dtype):
    """Seed 2310406346 (the harness, not the kernel): x (2, 1) cut to (1,) with normalized_shape (1,)
    is one row, as valid as two; the 1-D x is normalized as the (1, d) one is, forward and backward."""
    rng = np.random.default_rng(0)
    for d in (1, 7):
        x, w, b = (rng.standard_normal(d).astype(dtype) for _ in range(3))
        y1, s1 = norm.layer_norm(x, (d,), w, b)
        y2, s2 = norm.layer_norm(x.reshape(1, d), (d,), w, b)
        assert y1.shape == (d,)
        np.testing.assert_array_equal(y1, y2.reshape(d))
        dy = rng.standard_normal(d).astype(dtype)
        for g1, g2 in zip(
            norm.layer_norm_backward(dy, x, w, s1), norm.layer_norm_backward(dy.reshape(1, d), x.reshape(1, d), w, s2)
        ):
            np.testing.assert_array_equal(np.asarray(g1).reshape(-1), np.asarray(g2).reshape(-1))
        r1, _ = norm.rms_norm(x, (d,), w)
        r2, _ = norm.rms_norm(x.reshape(1, d), (d,), w)
        np.testing.assert_array_equal(r1, r2.reshape(d))


def test_adagrad_norm_weight_decay_that_rounds_to_zero_is_no_decay():
    """Seed 1771638658: weight_decay 1e-300 is 0 in float32 (rounded once, as every hyper-parameter),
    and a decay of 0 is none -- an infinite param then leaves b finite and the other params step as
    without decay; in float64 the decay is 1e-300 * inf = inf: b is infinite, the others stay."""
    for dtype, frozen in ((np.float32, False), (np.float64, True)):
        p = [np.array([0.25], dtype), np.array([np.inf], dtype)]
        g = [np.array([0.5], dtype), np.array([0.75], dtype)]
        ref = [a.copy() for a in p]
        b_ref = np.array([1e-4])
        F.adagrad_norm_(ref, g, b_ref)  # no decay at all
        b = np.array([1e-4])
        F.adagrad_norm_(p, g, b, weight_decay=1e-300)
        if frozen:
            assert b[0] == np.inf and p[0][0] == dtype(0.25)
        else:
            assert b[0] == b_ref[0] and p[0][0] == ref[0][0] and p[0][0] != dtype(0.25)


def test_group_norm_backward_of_an_x_whose_channels_the_groups_do_not_divide_names_x():
    """Seed 4028427250: group_norm on x (1, 4) with 2 groups, then its backward with x given an extra
    dim, (1, 1, 4): one channel, which the forward's two groups do not divide. The error named only
    ``saved.groups``; x is the argument that changed, and it comes first."""
    x = np.array([[0.1, -0.1, 0.6, 0.1]], np.float32)
    _, saved = norm.group_norm(x, 2)
    bad = x[:, None, :]
    with pytest.raises(ValueError, match=r"^x, saved\.groups: x has C=1 channels"):
        norm.group_norm_backward(np.ones_like(bad), bad, None, saved)


# ---- fuzz seed 2217332430: misaligned integer labels named as the kernel's `labels` ----------------


def test_mlp_loss_takes_misaligned_labels():
    """y a misaligned int64 view (a field of a packed record array): the labels' check had made
    only a contiguous copy, and the native loss refused it as `labels: array data is misaligned`."""
    from optkern.nn import MLP

    m = MLP([3, 4], dtype=np.float64)
    rng = np.random.default_rng(0)
    p, x = rng.standard_normal(m.num_params), rng.standard_normal((5, 3))
    y = np.array([0, 3, 1, 2, 2])
    buf = np.zeros(y.nbytes + 1, np.uint8)
    ym = buf[1:].view(np.int64)
    ym[...] = y
    assert not ym.flags.aligned
    assert m.loss(p, x, ym) == m.loss(p, x, y)
    np.testing.assert_array_equal(m.loss_and_grad(p, x, ym)[1], m.loss_and_grad(p, x, y)[1])
