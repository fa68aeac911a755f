"""The per-call fast paths of the small-call host work (exact-type tests before the ABC checks,
the never-foreign built-in types, error renaming on the error path only) decide exactly as the
full tests they skip: the edges each fast path sees (bools, ints past a bound, subclasses) still
get the full test's answer and error, and a native error of a norm backward or dropout backward
is still renamed to the public argument."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import optkern.norm as N
from optkern import _backend, _scalars
from optkern import schedules as S
from optkern.norm._common import _shape_arg


class _Float(float):
    pass


class _Int(int):
    pass


@pytest.mark.parametrize("value", [0.5, 3, _Float(0.5), _Int(3), np.float32(0.5), np.float64(0.5), np.int64(3)])
def test_real_accepts_real_numbers_as_float(value):
    out = _scalars.real("lr", value)
    assert type(out) is float and out == float(value)


@pytest.mark.parametrize(
    "value, error, match",
    [
        (True, TypeError, "lr: expected a real number, got bool"),
        (np.bool_(True), TypeError, "lr: expected a real number, got bool"),
        ("0.1", TypeError, "lr: expected a real number, got str"),
        (None, TypeError, "lr: expected a real number, got NoneType"),
        (10**400, ValueError, "lr: must be finite, got an integer beyond float range"),
        (math.inf, ValueError, "lr: must be finite, got inf"),
        (math.nan, ValueError, "lr: must be finite, got nan"),
    ],
)
def test_real_refuses_what_it_refused(value, error, match):
    with pytest.raises(error, match=match):
        _scalars.real("lr", value)


def test_in_range_fast_path_keeps_the_bounds():
    assert _scalars.in_range("x", 1, 0.0, 1.0) == 1.0
    with pytest.raises(ValueError, match=r"x: must be in \[0.0, 1.0\), got 1.0"):
        _scalars.in_range("x", 1.0, 0.0, 1.0, hi_open=True)


@pytest.mark.parametrize("value", [7, _Int(7), np.int64(7), np.uint8(7)])
def test_integer_accepts_integers(value):
    out = _scalars.integer("seed", value, lo=0, hi=_scalars.INT64_MAX)
    assert type(out) is int and out == 7


@pytest.mark.parametrize(
    "value, error, match",
    [
        (True, TypeError, "seed: expected an integer, got bool"),
        (7.0, TypeError, "seed: expected an integer, got float"),
        (-1, ValueError, "seed: must be >= 0, got -1"),
        (2**63, ValueError, "seed: must be <= 9223372036854775807"),
    ],
)
def test_integer_refuses_what_it_refused(value, error, match):
    with pytest.raises(error, match=match):
        _scalars.integer("seed", value, lo=0, hi=_scalars.INT64_MAX)


@pytest.mark.parametrize(
    "shape, expected",
    [(7, (7,)), ((7,), (7,)), ((3, 0), (3, 0)), ([3, 4], (3, 4)), ((np.int64(3),), (3,)), (np.array([2, 5]), (2, 5))],
)
def test_shape_arg_values(shape, expected):
    out = _shape_arg(shape)
    assert out == expected and type(out) is tuple and all(type(s) is int for s in out)


@pytest.mark.parametrize(
    "shape, error, match",
    [
        ((2**63,), ValueError, r"normalized_shape\[0\]: must be <= 9223372036854775807"),
        ((3, -1), ValueError, r"normalized_shape\[1\]: must be >= 0, got -1"),
        ((True,), TypeError, r"normalized_shape\[0\]: expected an integer, got bool"),
        (True, TypeError, "normalized_shape: expected an int or a tuple of ints, got bool"),
        ((7.0,), TypeError, r"normalized_shape\[0\]: expected an integer, got float"),
        ((2**62, 4), ValueError, r"normalized_shape: \(4611686018427387904, 4\) holds more than"),
        ("7", TypeError, "normalized_shape: expected an int or a tuple of ints, got str"),
    ],
)
def test_shape_arg_refuses_what_it_refused(shape, error, match):
    with pytest.raises(error, match=match):
        _shape_arg(shape)


def test_schedule_value_checks():
    assert S.FunctionSchedule(lambda t: 2)(0) == 2.0
    with pytest.raises(TypeError, match="schedule: returned bool at step 1, expected a real number"):
        S.FunctionSchedule(lambda t: True)(1)
    with pytest.raises(ValueError, match="schedule: returned an integer beyond float64's range at step 2"):
        S.FunctionSchedule(lambda t: 10**400)(2)
    with pytest.raises(ValueError, match="schedule: returned inf at step 3"):
        S.FunctionSchedule(lambda t: math.inf)(3)


class _ListWithInterface(list):
    """A list subclass exporting NumPy's array interface: foreign (not an exact built-in type)."""

    @property
    def __array_interface__(self):
        return np.zeros(2).__array_interface__


@pytest.mark.parametrize("a", [[], [np.zeros(2)], (), {}, 1, 1.0, True, "x", None, np.zeros(2)])
def test_builtins_are_never_foreign(a):
    assert not _backend.is_foreign(a)


def test_subclass_of_a_builtin_still_looked_at():
    assert _backend.is_foreign(_ListWithInterface())


X = np.random.default_rng(0).standard_normal((2, 7)).astype(np.float32)


def test_row_backward_errors_renamed():
    _, s = N.layer_norm(X, 7)
    with pytest.raises(TypeError, match="^saved.mean: expected float32, got float64"):
        N.layer_norm_backward(X, X, None, N.RowNormSaved(s.mean.astype(np.float64), s.rstd, 1))
    with pytest.raises(TypeError, match="^out: expected float32, got float64"):
        N.layer_norm_backward(X, X, None, s, out=np.ones((2, 7), np.float64))
    _, r = N.rms_norm(X, 7)
    with pytest.raises(TypeError, match="^saved.inv_rms: expected float32, got float64"):
        N.rms_norm_backward(X, X, None, N.RMSNormSaved(r.inv_rms.astype(np.float64)))


def test_channel_backward_errors_renamed():
    _, s = N.batch_norm(X)
    with pytest.raises(TypeError, match="^out: expected float32, got float64"):
        N.batch_norm_backward(X, X, None, s, out=np.ones((2, 7), np.float64))
    with pytest.raises(TypeError, match="^saved.mean: expected float32, got float64"):
        N.batch_norm_backward(X, X, None, s._replace(mean=s.mean.astype(np.float64)))


def test_dropout_and_weight_norm_backward_errors_renamed():
    with pytest.raises(TypeError, match="^dy: expected float16, bfloat16, float32 or float64, got int32"):
        N.dropout_backward(np.ones(7, np.int32), 0.1, 1)
    v, g = np.ones((3, 4), np.float32), np.ones((3, 1), np.float32)
    _, ws = N.weight_norm(v, g, 0)
    with pytest.raises(TypeError, match="^saved.norm: expected float32, got float64"):
        N.weight_norm_backward(v, v, g, N.WeightNormSaved(ws.norm.astype(np.float64), ws.dim))


# ---- the optimizer's checked hyper-parameters, reused for the very same values ---------------

from optkern import amp, optim  # noqa: E402
from optkern.norm import _common  # noqa: E402


def _adam(**kw):
    p = [np.ones(7, np.float32), np.ones((2, 3), np.float32)]
    return optim.Adam(p, **kw), [np.full(7, 0.5, np.float32), np.full((2, 3), 0.5, np.float32)]


def _counting(opt, monkeypatch) -> list:
    calls: list = []
    real = opt._check

    def counted(group, where):
        calls.append(where)
        return real(group, where)

    monkeypatch.setattr(opt, "_check", counted)
    return calls


def test_same_values_checked_once_then_reused(monkeypatch):
    opt, g = _adam(lr=1e-3)
    calls = _counting(opt, monkeypatch)
    opt.step(g)
    opt.step(g)
    assert calls == []  # (checked by the constructor's add_param_group, the same objects since)
    opt.param_groups[0]["lr"] = 2e-3  # a new value: checked in full
    opt.step(g)
    opt.step(g)
    assert calls == ["param_groups[0]"]


def test_grad_scaler_step_checks_the_group_once(monkeypatch):
    opt, g = _adam(lr=1e-3)
    scaler = amp.GradScaler(init_scale=2.0)
    calls = _counting(opt, monkeypatch)
    opt.param_groups[0]["lr"] = 5e-4
    scaler.unscale_(opt, g)
    scaler.step(opt, g)
    scaler.update()
    scaler.step(opt, g)
    scaler.update()
    assert calls == ["param_groups[0]"]  # (the unscale_ check; the step's and the next ones reuse it)


@pytest.mark.parametrize(
    "key, value, error, match",
    [
        ("lr", -1.0, ValueError, r"param_groups\[0\]\['lr'\]: must be in \[0.0, inf\)"),
        ("lr", True, TypeError, r"param_groups\[0\]\['lr'\]: expected a real number, got bool"),
        ("betas", (False, 0.999), TypeError, r"param_groups\[0\]\['betas'\]\[0\]: expected a real number, got bool"),
        ("betas", (1, 0.999), ValueError, r"param_groups\[0\]\['betas'\]\[0\]: must be in \[0.0, 1.0\)"),
        ("eps", 1e-50, ValueError, r"param_groups\[0\]\['eps'\]: 1e-50 rounds to 0 in float32"),
        ("amsgrad", "yes", TypeError, r"param_groups\[0\]\['amsgrad'\]: expected a bool \(or 0 / 1\), got str"),
    ],
)
def test_a_changed_value_is_refused_after_reuse(key, value, error, match):
    # (equal values of another type too: False == 0, (1, 0.999) == (True, 0.999))
    opt, g = _adam(betas=(0, 0.999) if key == "betas" else (0.9, 0.999))
    opt.step(g)
    before = [p.copy() for p in opt.param_groups[0]["params"]]
    opt.param_groups[0][key] = value
    with pytest.raises(error, match=match):
        opt.step(g)
    for p, b in zip(opt.param_groups[0]["params"], before):
        np.testing.assert_array_equal(p, b)


def test_a_deleted_key_is_named_after_reuse():
    opt, g = _adam()
    opt.step(g)
    del opt.param_groups[0]["eps"]
    with pytest.raises(ValueError, match=r"param_groups\[0\]: missing 'eps'"):
        opt.step(g)


def test_a_list_value_changed_in_place_is_checked(monkeypatch):
    opt, g = _adam(betas=[0.9, 0.999])
    opt.step(g)
    opt.param_groups[0]["betas"][0] = 1.5  # (the same list object: a mutable value is never reused)
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['betas'\]\[0\]: must be in \[0.0, 1.0\)"):
        opt.step(g)


@pytest.mark.parametrize("value", [-0.0, np.float64(0.0), _Float(0.0)])
def test_an_equal_value_of_another_object_gets_its_own_check(value):
    opt, g = _adam(weight_decay=0.0)
    opt.step(g)
    opt.param_groups[0]["weight_decay"] = value
    hp = opt._checked(opt.param_groups[0], "param_groups[0]")[0]
    full = opt._check(opt.param_groups[0], "param_groups[0]")
    assert hp == full and math.copysign(1.0, hp.weight_decay) == math.copysign(1.0, float(value))


def test_subclass_values_are_not_cached():
    opt, g = _adam(lr=_Float(1e-3))
    opt.step(g)
    assert "param_groups[0]" not in opt._hp_checked


def test_optimizer_unpickled_without_the_cache_steps():
    opt, g = _adam()
    del opt.__dict__["_hp_checked"]  # (as one pickled before it)
    opt.step(g)
    assert "param_groups[0]" in opt._hp_checked


# ---- GradScaler's growth rule, reused for the very same values -------------------------------


def test_grad_scaler_rule_rechecked_when_assigned():
    scaler = amp.GradScaler()
    assert scaler._rule() == (2.0, 0.5, 2000)
    assert scaler._rule() is scaler._rule()
    scaler.growth_factor = 0.5  # (assigned as torch's attribute, unchecked there)
    with pytest.raises(ValueError, match="growth_factor: must be in"):
        scaler._rule()
    scaler.growth_factor = np.float64(3.0)  # (a NumPy scalar: checked every time, not kept)
    assert scaler._rule() == (3.0, 0.5, 2000)
    assert scaler._rule_checked["rule"][1][0] == 2.0  # (the cache still holds the last plain values)
    scaler.growth_interval = 2000.0
    with pytest.raises(TypeError, match="growth_interval: expected an integer, got float"):
        scaler._rule()


def test_grad_scaler_pickle_leaves_the_rule_cache_out():
    import pickle

    scaler = amp.GradScaler()
    scaler._rule()
    assert "_rule_checked" not in scaler.__getstate__()
    copy = pickle.loads(pickle.dumps(scaler))
    assert copy._rule() == scaler._rule()


def test_device_of_numpy_is_a_shared_reentrant_null_context():
    ctx = _backend._device_of(np.zeros(1))
    assert ctx is _backend._device_of(np.zeros(2))
    with ctx, ctx:
        pass


# ---- eps of layer / RMS norm: float32's rounding to 0, without a NumPy scalar per call -------

_TIE = 2.0**-150  # half of float32's smallest subnormal: rounds to 0 (to even)


@pytest.mark.parametrize(
    "eps",
    [
        _TIE,
        math.nextafter(_TIE, 0.0),
        math.nextafter(_TIE, 1.0),
        2.0**-149,
        1.5 * 2.0**-149,
        2.0**-126,
        math.nextafter(2.0**-126, 0.0),
        1e-50,
        5e-324,
        1e-5,
    ],
)
def test_eps_rounding_to_zero_in_float32(eps):
    zero = bool(np.float32(eps) == 0)
    assert zero == (eps <= _TIE)  # round to nearest even: the tie and below round to 0
    x = np.ones((2, 7), np.float32)
    for fn in (N.layer_norm, N.rms_norm):
        if zero:
            with pytest.raises(ValueError, match=r"^eps: .* rounds to 0 in float32 \(the statistics' dtype\)"):
                fn(x, 7, eps=eps)
        else:
            fn(x, 7, eps=eps)
    assert _common._eps(eps, x.astype(np.float64)) == eps  # (float64 statistics: taken)


# ---- functional forms: torch tensors looked for only in lists that may hold them ----------------


class _Sub(np.ndarray):
    pass


class _List(list):
    pass


def test_written_tensors_equal_the_full_scan():
    torch = pytest.importorskip("torch")
    from optkern import functional as F
    from optkern.optim._given import torch_tensors

    a, t = np.zeros(3, np.float32), torch.zeros(3)
    cases = [
        [[a, a], [a, None], None],
        [[a, t], (a,), t],
        [(t, a), [np.zeros(2).view(_Sub)], a],
        [[], [None], (None, t)],
        [_List([a, t]), [a]],  # (a list subclass: scanned)
        [[[t]], a],  # (a nested list: not looked into, as before)
        [a, None, [a, None]],
    ]
    for written in cases:
        flat = [x for w in written for x in (w if isinstance(w, (list, tuple)) else (w,))]
        assert [id(x) for x in F._written_tensors(written)] == [id(x) for x in torch_tensors(flat)]


def test_functional_bumps_a_tensor_in_a_mixed_list_and_in_keywords():
    torch = pytest.importorskip("torch")
    from optkern import functional as F

    p = [np.ones(3, np.float32), torch.ones(3)]
    g = [np.full(3, 0.5, np.float32), np.full(3, 0.5, np.float32)]
    m = [np.zeros(3, np.float32), torch.zeros(3)]
    v = [np.zeros(3, np.float32), np.zeros(3, np.float32)]
    before = p[1]._version, m[1]._version
    F.adam_(p, g, exp_avgs=m, exp_avg_sqs=v, step=1)
    assert p[1]._version > before[0] and m[1]._version > before[1]
    np.testing.assert_array_equal(p[0], p[1].numpy())


def test_functional_views_a_lone_foreign_array():
    torch = pytest.importorskip("torch")
    from optkern import functional as F

    p, g = [np.ones(3, np.float32)], [np.full(3, 0.5, np.float32)]
    b_sq = torch.full((1,), 1e-4, dtype=torch.float64)  # (a lone tensor: viewed first, written in place)
    before = b_sq._version
    F.adagrad_norm_(p, g, b_sq, lr=0.1)
    assert float(b_sq[0]) == 1e-4 + 0.75 and b_sq._version > before


# ---- Scheduler.step: a finite float in range skips in_range; everything else takes it --------------


def _sgd(lr=0.1):
    return optim.SGD([np.ones(3, np.float32)], lr=lr)


def test_scheduler_step_values_and_written_floats():
    opt = _sgd()
    sch = S.cosine(0.1, 10).attach(opt)
    for t in range(1, 12):
        sch.step()
        expect = S.cosine(0.1, 10)(t)
        assert opt.param_groups[0]["lr"] == expect and sch.get_last_lr() == [expect]
        assert type(opt.param_groups[0]["lr"]) is float


def test_scheduler_relative_overflow_named_by_the_full_check():
    opt = type("O", (), {"param_groups": [{"lr": 1e300}]})()
    sch = S.FunctionSchedule(lambda t: 1.0 if t == 0 else 1e10).attach(opt, relative=True)
    with pytest.raises(ValueError, match=r"^schedule \(step 1, optimizer.param_groups\[0\]\['lr'\]\): must be finite"):
        sch.step()
    assert opt.param_groups[0]["lr"] == 1e300 and sch.last_step == 0


@pytest.mark.parametrize(
    "key, index, bad, match",
    [
        ("lr", None, -0.5, r"\['lr'\]\): must be in \[0.0, inf\)"),
        ("eps", None, 0.0, r"\['eps'\]\): must be in \(0.0, inf\)"),
        ("betas", 0, 1.0, r"\['betas'\]\[0\]\): must be in \[0.0, 1.0\)"),
        ("betas", 0, -0.1, r"\['betas'\]\[0\]\): must be in \[0.0, 1.0\)"),
    ],
)
def test_scheduler_range_edges_refused_as_before(key, index, bad, match):
    opt = optim.Adam([np.ones(3, np.float32)], lr=0.1)
    with warnings.catch_warnings():  # (eps: an absolute schedule far above its 1e-8)
        warnings.simplefilter("ignore", S.ScheduleScaleWarning)
        sch = S.Scheduler(opt, S.FunctionSchedule(lambda t: 0.5 if t == 0 else bad), key=key, index=index)
    with pytest.raises(ValueError, match=r"^schedule \(step 1, optimizer.param_groups\[0\]" + match):
        sch.step()


def test_scheduler_keeps_an_edge_value_in_range():
    opt = optim.Adam([np.ones(3, np.float32)], lr=0.1)
    sch = S.Scheduler(opt, S.FunctionSchedule(lambda t: 0.5 if t == 0 else 0.0), key="betas", index=0)
    sch.step()  # 0.0: the closed lower end of betas
    assert opt.param_groups[0]["betas"][0] == 0.0


@pytest.mark.parametrize("lr", [np.float64(0.1), True, 1])
def test_scheduler_writes_non_float_group_values_as_before(lr):
    opt = _sgd()
    opt.param_groups[0]["lr"] = lr
    sch = S.Scheduler.__new__(S.Scheduler)  # (a scheduler over the group as it stands now)
    sch.__init__(type("O", (), {"param_groups": [dict(opt.param_groups[0], initial_lr=0.1)]})(), S.constant(0.25))
    sch.step()
    assert sch.optimizer.param_groups[0]["lr"] == 0.25 and sch.get_last_lr() == [0.25]


def test_scheduler_fills_a_one_element_array_in_place():
    lr = np.full(1, 0.1)
    holder = type("O", (), {"param_groups": [{"lr": lr}]})()
    sch = S.Scheduler(holder, S.constant(0.25))
    sch.step()
    assert holder.param_groups[0]["lr"] is lr and lr[0] == 0.25 and sch.get_last_lr() == [0.25]


# ---- rms_norm's default eps, kept per dtype ----------------------------------------------------


def test_default_eps_per_dtype_as_computed():
    dtypes = [np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16)]
    try:
        import ml_dtypes

        dtypes.append(np.dtype(ml_dtypes.bfloat16))
    except ImportError:
        pass
    for _ in range(2):  # (computed, then kept)
        for dt in dtypes:
            # (the half types: float32's, torch's computation dtype for them; hunt38d)
            expect = float(np.finfo(np.float32 if dt.name in ("float16", "bfloat16") else dt).eps)
            assert _common._default_eps(dt) == expect
    for _ in range(2):  # (refused every time, naming x, before the default eps: hunt40d)
        with pytest.raises(TypeError, match="^x: "):
            N.rms_norm(np.ones((2, 3), np.int32), 3)
    x = np.ones((2, 7), np.float32)
    y, _ = N.rms_norm(x, 7)
    np.testing.assert_array_equal(y, N.rms_norm(x, 7, eps=float(np.finfo(np.float32).eps))[0])


# ---- a schedule's attributes: rechecked unless they are the very objects that passed ---------------


def test_schedule_attribute_assigned_is_checked_again():
    c = S.cosine(0.1, 10)
    assert c(3) == S.cosine(0.1, 10)(3)
    c(4)
    c.lr = -1.0
    with pytest.raises(ValueError, match=r"^lr: must be in \(0.0, inf\)"):
        c(5)
    c.lr = True
    with pytest.raises(TypeError, match="^lr: expected a real number, got bool"):
        c(5)
    c.lr = 0.2
    assert c(5) == S.cosine(0.2, 10)(5)
    c.total_steps = 0
    with pytest.raises(ValueError, match="^total_steps: must be >= 1"):
        c(5)


def test_schedule_attribute_of_another_type_checked_every_time():
    c = S.cosine(0.1, 10)
    c.lr = np.float64(0.1)
    c(1)
    assert "_attributes_checked" not in vars(c)
    c.lr = _Float(0.1)
    c(1)
    assert "_attributes_checked" not in vars(c)
    assert "_attributes_checked" not in repr(c)
