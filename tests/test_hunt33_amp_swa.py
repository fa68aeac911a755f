"""Defects found in optkern.amp, optkern.swa and optkern.schedules by the 33rd hunt, each with a test
that failed before its fix.

* ``GradScaler.step(optimizer, grads)`` with every grad None (no param of the optimizer has a grad)
  counted a clean step: nothing was checked, yet ``update()`` advanced the growth tracker and could
  grow the scale. torch raises ("No inf checks were recorded for this optimizer.", an
  AssertionError); optkern raises ValueError naming the optimizer, before anything is recorded.
* The native ``_cpu.swa_lerp_`` took any weight (its Python callers check it, but it is importable):
  a NaN weight made every average NaN, 2 or -1 extrapolated, inf wrote inf. It now refuses a weight
  outside [0, 1] (ValueError naming ``weight``) before writing, as ``_cuda.swa_lerp_`` does (the
  check is swa_args.hpp's, shared); optkern.torch.AveragedModel hands torch's own formula an EMA
  decay outside [0, 1] (torch extrapolates, and still does there).
* The native ``amp_update_scale_`` took an infinite ``growth_factor`` (GradScaler refuses it): every
  growth overflowed, so the scale silently never grew. Refused now, naming it. Its other bad inputs
  (dtype, size, read-only, aliasing) were refused already and are pinned here with the new ones;
  the *contents* of the scale / tracker / flag are not checked natively (on the GPU that would
  synchronize the host, and torch's ``_amp_update_scale_`` does not check them either).
* ``schedules.swalr``'s ``total_steps`` was stored at construction: after ``anneal_epochs = 20`` it
  stayed the old value, and so did a ``linear_warmup`` / ``chain`` / ``sequential`` around it (their
  horizons were stored too). They are properties now, computed from what they follow (assigning
  one is refused: it would be overwritten). ``one_cycle``'s phases are computed once from its
  arguments, kept as attributes: a ``total_steps`` raised afterwards moved the clamp past the last
  phase, which extrapolated (a linear anneal went below its final value, to negative rates), and a
  ``max_lr`` assigned was ignored; assigning them is refused now (AttributeError naming it).
* The fan initializers warned "Initializing zero-element tensors is a no-op" for every zero-element
  array; torch 2.x warns in ``kaiming_uniform_`` / ``kaiming_normal_`` only (its xavier ones are
  silent), and before it computes the fans, so a 1-D empty array warns and is returned there, where
  optkern raised ValueError. Now only the kaiming ones warn, in torch's order; lecun and geometric
  (not in torch) are silent, as xavier.
* GradScaler had none of torch's ``is_enabled`` / ``get_growth_factor`` / ``set_growth_factor`` /
  ``get_backoff_factor`` / ``set_backoff_factor`` / ``get_growth_interval`` /
  ``set_growth_interval`` / ``_get_growth_tracker``: a torch user's call raised AttributeError.
  Added; the setters check by the constructor's rules (naming ``new_factor`` / ``new_interval``),
  where torch takes anything.
* ``AveragedParams.update``'s first update (``n_averaged == 0``) lerped at weight 1 where torch's
  AveragedModel copies: ``p - (p - a) * 0`` is NaN where the average (the params copied at
  construction) held an inf or NaN, and +0 for a -0 param. It copies now.
* The schedules' attributes are assignable (an lr tuned mid-run), but only swalr's were checked
  after construction (the 32nd hunt): a ``step_decay.gamma`` of 2 grew the lr silently, a
  ``step_size`` / ``T_max`` / ``T_0`` of 0 raised ZeroDivisionError, a ``cyclic.mode`` of 'foo' ran
  exp_range, ``multi_step.milestones`` assigned out of order were counted wrong (bisect on an
  unsorted list; torch counts them as a Counter), and ``batch_size_schedule.batch_size`` read a
  bad attribute unchecked. Every schedule now lists its constructor's rules
  (``Schedule._rules``), applied before each value (swalr's among them), naming the attribute.
"""

import warnings
import zlib

import numpy as np
import pytest

from optkern import _cpu
from optkern import init as I
from optkern import schedules as S
from optkern.amp import GradScaler
from optkern.optim import SGD
from optkern.swa import AveragedParams


def _f32(rng, n):
    return rng.standard_normal(n).astype(np.float32)


# ---- GradScaler: an optimizer without grads ---------------------------------------------------


def test_step_with_every_grad_none_is_refused_and_counts_nothing():
    rng = np.random.default_rng(0)
    p = _f32(rng, 5)
    opt = SGD([p], lr=0.1)
    s = GradScaler(growth_interval=1)
    with pytest.raises(ValueError, match="optimizer: no inf checks"):
        s.step(opt, [None])
    # nothing recorded: update() has nothing to count (the scale doubled on nothing before)
    with pytest.raises(RuntimeError, match="no inf checks"):
        s.update()
    assert s.get_scale() == 2.0**16
    assert s.state_dict()["_growth_tracker"] == 0
    # a retry with a grad steps normally
    g = _f32(rng, 5)
    before = p.copy()
    s.step(opt, [g * np.float32(2.0**16)])
    s.update()
    np.testing.assert_allclose(p, before - 0.1 * g, rtol=1e-5, atol=1e-6)
    assert s.get_scale() == 2.0**17


def test_unscale_with_every_grad_none_then_step_is_refused_as_torchs():
    opt = SGD([np.ones(3, np.float32)], lr=0.1)
    s = GradScaler()
    assert s.unscale_(opt, [None]) is False
    with pytest.raises(RuntimeError, match="already been called"):
        s.unscale_(opt, [None])
    with pytest.raises(ValueError, match="optimizer: no inf checks"):
        s.step(opt, [None])
    with pytest.raises(RuntimeError, match="no inf checks"):
        s.update()


def test_anonymous_unscale_of_no_grads_is_refused():
    s = GradScaler()
    with pytest.raises(ValueError, match="grads: no inf checks"):
        s.unscale_([None, None])
    with pytest.raises(ValueError, match="grads: no inf checks"):
        s.unscale_([])


def test_a_second_optimizer_without_grads_leaves_the_other_ones_count():
    rng = np.random.default_rng(1)
    o1, o2 = SGD([np.ones(3, np.float32)], lr=0.1), SGD([np.ones(2, np.float32)], lr=0.1)
    s = GradScaler(growth_interval=3)
    s.step(o2, [_f32(rng, 2)])
    with pytest.raises(ValueError, match="optimizer"):
        s.step(o1, [None])
    s.update()
    assert s.state_dict()["_growth_tracker"] == 1  # (torch's: 1)


def test_low_precision_optimizer_with_every_grad_none_is_refused():
    p = np.ones(4, np.float16)
    opt = SGD([p], lr=0.1, master_weights=True)
    s = GradScaler(growth_interval=1)
    with pytest.raises(ValueError, match="optimizer: no inf checks"):
        s.step(opt, [None])
    with pytest.raises(RuntimeError):
        s.update()
    assert s.get_scale() == 2.0**16


def test_every_grad_none_refused_where_torchs_is():
    torch = pytest.importorskip("torch")
    p = torch.nn.Parameter(torch.ones(3))
    topt = torch.optim.SGD([p], lr=0.1)
    ts = torch.amp.GradScaler("cpu")
    ts.scale(torch.ones(()))
    with pytest.raises(AssertionError, match="No inf checks were recorded for this optimizer"):
        ts.step(topt)
    opt = SGD([np.ones(3, np.float32)], lr=0.1)
    with pytest.raises(ValueError, match="no inf checks were recorded for this optimizer"):
        GradScaler().step(opt, [None])


# ---- the native swa_lerp_ and amp_update_scale_, called directly --------------------------------


def _lerp_case(case, rng):
    """(averages, params, weight) of one bad call (averages: fresh, written if taken)."""
    a = [_f32(rng, 5), _f32(rng, 9)]
    p = [_f32(rng, 5), _f32(rng, 9)]
    ro = _f32(rng, 9)
    ro.flags.writeable = False
    return {
        "float64_average": ([a[0], a[1].astype(np.float64)], p, 0.5),
        "float64_param": (a, [p[0], p[1].astype(np.float64)], 0.5),
        "short_param": (a, [p[0], p[1][:8]], 0.5),
        "fewer_params": (a, p[:1], 0.5),
        "read_only_average": ([a[0], ro], p, 0.5),
        "strided_average": ([a[0], np.zeros(18, np.float32)[::2]], p, 0.5),
        "param_is_average": (a, [p[0], a[1]], 0.5),
        "averages_overlap": ([a[0], a[0][:3]], [p[0], p[0][:3]], 0.5),
        "none_average": ([a[0], None], p, 0.5),
        "nan_weight": (a, p, float("nan")),
        "weight_2": (a, p, 2.0),
        "weight_minus_1": (a, p, -1.0),
        "weight_inf": (a, p, float("inf")),
        "weight_minus_inf": (a, p, -float("inf")),
    }[case]


_LERP_NAMES = {
    "float64_average": (TypeError, r"averages\[1\]"),
    "float64_param": (TypeError, r"params\[1\]"),
    "short_param": (ValueError, r"params\[1\]"),
    "fewer_params": (ValueError, "params"),
    "read_only_average": (ValueError, r"averages\[1\]"),
    "strided_average": (ValueError, r"averages\[1\]"),
    "param_is_average": (ValueError, r"params\[1\]"),
    "averages_overlap": (ValueError, r"averages\[1\]"),
    "none_average": (TypeError, r"averages\[1\]"),
    "nan_weight": (ValueError, "weight"),
    "weight_2": (ValueError, "weight"),
    "weight_minus_1": (ValueError, "weight"),
    "weight_inf": (ValueError, "weight"),
    "weight_minus_inf": (ValueError, "weight"),
}


@pytest.mark.parametrize("case", sorted(_LERP_NAMES))
def test_native_swa_lerp_refuses_bad_input_before_writing(case):
    rng = np.random.default_rng(zlib.crc32(case.encode()))  # (not hash(): salted per process)
    averages, params, w = _lerp_case(case, rng)
    before = [None if x is None else x.copy() for x in averages]
    err, name = _LERP_NAMES[case]
    with pytest.raises(err, match=name):
        _cpu.swa_lerp_(averages, params, w)
    for x, b in zip(averages, before):
        if x is not None:
            np.testing.assert_array_equal(x, b)


@pytest.mark.parametrize("w", [0.0, 1.0, 0.25])
def test_native_swa_lerp_takes_the_ends_of_its_range(w):
    rng = np.random.default_rng(7)
    a, p = _f32(rng, 11), _f32(rng, 11)
    want = a + np.float32(w) * (p - a)
    _cpu.swa_lerp_([a], [p], w)
    np.testing.assert_allclose(a, want, rtol=1e-6, atol=1e-6)


def _update_case(case):
    """(scale, tracker, found_inf, growth, backoff, interval) of one bad call."""
    s, t, f = np.full(1, 1024.0, np.float32), np.zeros(1, np.int64), np.zeros(1, np.float32)
    ro_s = s.copy()
    ro_s.flags.writeable = False
    ro_t = t.copy()
    ro_t.flags.writeable = False
    two = np.zeros(2, np.float32)
    return {
        "scale_float64": (s.astype(np.float64), t, f, 2.0, 0.5, 3),
        "scale_size_2": (np.ones(2, np.float32), t, f, 2.0, 0.5, 3),
        "scale_read_only": (ro_s, t, f, 2.0, 0.5, 3),
        "scale_not_array": ([1024.0], t, f, 2.0, 0.5, 3),
        "tracker_int32": (s, t.astype(np.int32), f, 2.0, 0.5, 3),
        "tracker_read_only": (s, ro_t, f, 2.0, 0.5, 3),
        "found_inf_float64": (s, t, f.astype(np.float64), 2.0, 0.5, 3),
        "found_inf_is_scale": (two[:1], t, two[:1], 2.0, 0.5, 3),
        "tracker_is_scale": (t.view(np.float32)[:1], t, f, 2.0, 0.5, 3),
        "growth_1": (s, t, f, 1.0, 0.5, 3),
        "growth_nan": (s, t, f, float("nan"), 0.5, 3),
        "growth_inf": (s, t, f, float("inf"), 0.5, 3),
        "backoff_1": (s, t, f, 2.0, 1.0, 3),
        "backoff_nan": (s, t, f, 2.0, float("nan"), 3),
        "interval_0": (s, t, f, 2.0, 0.5, 0),
    }[case]


_UPDATE_NAMES = {
    "scale_float64": (TypeError, "scale"),
    "scale_size_2": (ValueError, "scale"),
    "scale_read_only": (ValueError, "scale"),
    "scale_not_array": (TypeError, "scale"),
    "tracker_int32": (TypeError, "growth_tracker"),
    "tracker_read_only": (ValueError, "growth_tracker"),
    "found_inf_float64": (TypeError, "found_inf"),
    "found_inf_is_scale": (ValueError, "found_inf"),
    "tracker_is_scale": (ValueError, "growth_tracker"),
    "growth_1": (ValueError, "growth_factor"),
    "growth_nan": (ValueError, "growth_factor"),
    "growth_inf": (ValueError, "growth_factor"),
    "backoff_1": (ValueError, "backoff_factor"),
    "backoff_nan": (ValueError, "backoff_factor"),
    "interval_0": (ValueError, "growth_interval"),
}


@pytest.mark.parametrize("case", sorted(_UPDATE_NAMES))
def test_native_amp_update_scale_refuses_bad_input_before_writing(case):
    args = _update_case(case)
    # growth_interval 1: a taken call would grow the scale (or, with a found inf, back it off)
    args = (*args[:5], 1) if case != "interval_0" else args
    before = [a.copy() for a in args[:3] if isinstance(a, np.ndarray)]
    err, name = _UPDATE_NAMES[case]
    with pytest.raises(err, match=name):
        _cpu.amp_update_scale_(*args)
    for a, b in zip([a for a in args[:3] if isinstance(a, np.ndarray)], before):
        np.testing.assert_array_equal(a, b)


# ---- schedules: horizons that follow their attributes --------------------------------------------


def test_swalr_total_steps_follows_anneal_epochs():
    s = S.swalr(1.0, 0.1, anneal_epochs=4)
    assert s.total_steps == 4
    s.anneal_epochs = 20
    assert s.total_steps == 20
    with pytest.raises(AttributeError, match="total_steps: follows anneal_epochs"):
        s.total_steps = 7


def test_wrappers_total_steps_follow_the_wrapped_schedules():
    s = S.swalr(1.0, 0.1, anneal_epochs=4)
    w = S.linear_warmup(s, 3, shift=True)
    c = S.chain(s, S.cosine(1.0, 5))
    q = S.sequential([S.constant(1.0), s], [6])
    assert (w.total_steps, c.total_steps, q.total_steps) == (7, 5, 10)
    s.anneal_epochs = 20
    assert (w.total_steps, c.total_steps, q.total_steps) == (23, 20, 26)
    w.warmup_steps, w.shift = 5, False
    assert w.total_steps == 20
    q.boundaries = [8]
    assert q.total_steps == 28


def test_swalr_reassigned_horizon_reaches_the_scheduler_check():
    # a warm-up in front of swalr with shift=False sizes itself by the wrapped horizon
    s = S.swalr(1.0, 0.1, anneal_epochs=4)
    s.anneal_epochs = 2
    with pytest.raises(ValueError, match="warmup_steps: 3 is longer than the schedule's total_steps 2"):
        S.linear_warmup(s, 3)


@pytest.mark.parametrize(
    "attr, value",
    [
        ("total_steps", 20),
        ("max_lr", 2.0),
        ("pct_start", 0.5),
        ("div_factor", 5.0),
        ("final_div_factor", 10.0),
        ("three_phase", True),
        ("anneal", "cos"),
    ],
)
def test_one_cycle_arguments_cannot_go_stale(attr, value):
    s = S.one_cycle(1.0, total_steps=10, anneal="linear")
    before = [s(t) for t in range(25)]
    with pytest.raises(AttributeError, match=f"^{attr}: "):
        setattr(s, attr, value)
    assert [s(t) for t in range(25)] == before
    assert min(before) > 0  # (a total_steps of 20 extrapolated the last phase to negative rates)
    m = s.momentum()
    with pytest.raises(AttributeError, match="^total_steps: "):
        m.total_steps = 20


def test_one_cycle_copies_keep_their_values():
    import copy
    import pickle

    s = S.one_cycle(1.0, total_steps=12, anneal="cos", three_phase=True)
    for c in (copy.deepcopy(s), pickle.loads(pickle.dumps(s))):
        assert [c(t) for t in range(14)] == [s(t) for t in range(14)]


# ---- init: which initializers warn on a zero-element array ----------------------------------------

_FAN_INITS = ["xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_"]
_OURS_ONLY = ["lecun_uniform_", "lecun_normal_", "geometric_uniform_", "geometric_normal_"]


@pytest.mark.parametrize("shape", [(3, 0), (0, 5), (2, 0, 4)])
@pytest.mark.parametrize("name", _FAN_INITS + _OURS_ONLY)
def test_only_kaiming_warns_of_a_zero_element_array(name, shape):
    w = np.empty(shape, np.float32)
    if name.startswith("kaiming"):
        with pytest.warns(UserWarning, match="Initializing zero-element tensors is a no-op"):
            assert getattr(I, name)(w, rng=0) is w
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert getattr(I, name)(w, rng=0) is w


def test_kaiming_of_a_1d_empty_array_warns_and_returns_as_torchs():
    w = np.empty(0, np.float32)
    for name in ("kaiming_uniform_", "kaiming_normal_"):
        with pytest.warns(UserWarning, match="zero-element"):
            assert getattr(I, name)(w, rng=0) is w
    with pytest.raises(ValueError, match="^w: fan in and fan out"):  # (torch's xavier refuses it too)
        I.xavier_uniform_(w, rng=0)


@pytest.mark.parametrize("shape", [(3, 0), (0, 5), (2, 0, 4), (0,)])
@pytest.mark.parametrize("name", _FAN_INITS)
def test_zero_element_warnings_match_torchs(name, shape):
    torch = pytest.importorskip("torch")

    def outcome(fn):
        with warnings.catch_warnings(record=True) as got:
            warnings.simplefilter("always")
            try:
                fn()
                err = None
            except ValueError:
                err = ValueError
        return err, [str(x.message) for x in got if issubclass(x.category, UserWarning)]

    theirs = outcome(lambda: getattr(torch.nn.init, name)(torch.empty(shape)))
    ours = outcome(lambda: getattr(I, name)(np.empty(shape, np.float32), rng=0))
    assert ours == theirs


# ---- GradScaler: torch's getters and setters ------------------------------------------------------


def test_getters_and_setters_exist_and_are_checked():
    s = GradScaler(growth_factor=3.0, backoff_factor=0.25, growth_interval=5)
    assert s.is_enabled() and not GradScaler(enabled=False).is_enabled()
    assert (s.get_growth_factor(), s.get_backoff_factor(), s.get_growth_interval()) == (3.0, 0.25, 5)
    assert s._get_growth_tracker() == 0
    for setter, bad, exc in [
        (s.set_growth_factor, 1.0, ValueError),
        (s.set_growth_factor, float("inf"), ValueError),
        (s.set_growth_factor, "2", TypeError),
        (s.set_backoff_factor, 1.0, ValueError),
        (s.set_backoff_factor, float("nan"), ValueError),
        (s.set_growth_interval, 0, ValueError),
        (s.set_growth_interval, 2.5, TypeError),
    ]:
        with pytest.raises(exc, match="^new_(factor|interval): "):
            setter(bad)
    assert s.state_dict() == {
        "scale": 2.0**16,
        "growth_factor": 3.0,
        "backoff_factor": 0.25,
        "growth_interval": 5,
        "_growth_tracker": 0,
    }


def test_setters_drive_the_scale_as_torchs():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    p = torch.nn.Parameter(torch.ones(3))
    topt = torch.optim.SGD([p], lr=0.0)
    ts = torch.amp.GradScaler("cpu", growth_interval=3)
    opt = SGD([np.ones(3, np.float32)], lr=0.0)
    s = GradScaler(growth_interval=3)
    for k in range(12):
        if k == 2:
            for sc in (ts, s):
                sc.set_growth_interval(1)
                sc.set_growth_factor(3.0)
        if k == 6:
            for sc in (ts, s):
                sc.set_backoff_factor(0.125)
        g = _f32(rng, 3)
        if k in (7, 9):
            g[1] = np.inf
        ts.scale(torch.ones(()))
        p.grad = torch.from_numpy(g.copy())
        ts.step(topt)
        ts.update()
        s.step(opt, [g])
        s.update()
        assert s.get_scale() == ts.get_scale()
        assert s._get_growth_tracker() == ts._get_growth_tracker()
    assert s.state_dict() == ts.state_dict()


# ---- AveragedParams: the first update copies ----------------------------------------------------


@pytest.mark.parametrize("mode", ["swa", "ema"])
def test_first_update_copies_the_params_as_torchs(mode):
    start = np.array([np.inf, np.nan, 1.0, -np.inf, 2.0], np.float32)
    p = np.array([1.0, 2.0, -0.0, 4.0, -0.0], np.float32)
    a = AveragedParams([start], mode=mode, decay=0.9)
    a.update([p])
    np.testing.assert_array_equal(a.averages[0], p)
    assert np.array_equal(np.signbit(a.averages[0]), np.signbit(p))
    assert a.n_averaged == 1
    q = np.full(5, 3.0, np.float32)
    a.update([q])  # (then the rule: the running mean of p and q, or the EMA)
    want = p + (q - p) * np.float32(0.5 if mode == "swa" else 0.1)
    np.testing.assert_allclose(a.averages[0], want, rtol=1e-6, atol=1e-6)


def test_first_update_copy_agrees_with_torchs_averaged_model():
    torch = pytest.importorskip("torch")
    start = np.array([[np.inf, np.nan, 1.0]], np.float32)
    p = np.array([[1.0, 2.0, 3.0]], np.float32)
    m = torch.nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        m.weight.copy_(torch.from_numpy(start))
    avg = torch.optim.swa_utils.AveragedModel(m)
    with torch.no_grad():
        m.weight.copy_(torch.from_numpy(p))
    avg.update_parameters(m)
    ours = AveragedParams([start.copy()])
    ours.update([p])
    np.testing.assert_array_equal(ours.averages[0], avg.module.weight.detach().numpy())


def test_first_update_with_bad_params_writes_nothing():
    a = AveragedParams([np.ones(4, np.float32)])
    with pytest.raises(TypeError, match=r"params\[0\]"):
        a.update([np.zeros(4, np.float64)])
    np.testing.assert_array_equal(a.averages[0], 1.0)
    assert a.n_averaged == 0


# ---- schedules: assigned attributes checked by their constructor's rules -------------------------


_ASSIGNED = [
    (lambda: S.constant(0.5), "lr", "x", TypeError),
    (lambda: S.linear(1.0, 0.0, 10), "total_steps", -1, ValueError),
    (lambda: S.linear(1.0, 0.0, 10), "end", float("nan"), ValueError),
    (lambda: S.step_decay(1.0, 2, 0.5), "gamma", float("inf"), ValueError),
    (lambda: S.step_decay(1.0, 2, 0.5), "step_size", 0, ValueError),
    (lambda: S.step_decay(1.0, 2, 0.5), "lr", -1.0, ValueError),
    (lambda: S.multi_step(1.0, [3, 6], 0.5), "milestones", [3, "x"], TypeError),
    (lambda: S.multi_step(1.0, [3, 6], 0.5), "milestones", [-1, 3], ValueError),
    (lambda: S.exponential(1.0, 0.9), "gamma", 0.0, ValueError),
    (lambda: S.inverse_time(1.0, 1.0, 1.0), "k", -1.0, ValueError),
    (lambda: S.polynomial(1.0, 10, 1.0), "power", -1.0, ValueError),
    (lambda: S.cosine(1.0, 10), "total_steps", 0, ValueError),
    (lambda: S.cosine(1.0, 10), "eta_min", -0.1, ValueError),
    (lambda: S.cosine_restarts(1.0, 3), "T_0", 0, ValueError),
    (lambda: S.cosine_restarts(1.0, 3), "T_mult", 1.5, TypeError),
    (lambda: S.cyclic(0.1, 1.0, 2), "mode", "foo", ValueError),
    (lambda: S.cyclic(0.1, 1.0, 2), "step_size_up", 0, ValueError),
    (lambda: S.cyclic(0.1, 1.0, 2), "gamma", 0.0, ValueError),  # (> 1 taken, as torch takes it)
    (lambda: S.linear_warmup(S.constant(1.0), 3), "start_factor", 2.0, ValueError),
    (lambda: S.linear_warmup(S.constant(1.0), 3), "schedule", "x", TypeError),
    (lambda: S.linear_warmup(S.constant(1.0), 3), "shift", "False", TypeError),
    (lambda: S.batch_size_schedule(32, [2, 4]), "factor", 1.0, ValueError),
    (lambda: S.batch_size_schedule(32, [2, 4]), "milestones", [4, 2], ValueError),
    (lambda: S.swalr(1.0, 0.1, 4), "anneal_epochs", -2, ValueError),
]


@pytest.mark.parametrize("make, attr, value, exc", _ASSIGNED, ids=[f"{a}={v!r}" for _, a, v, _ in _ASSIGNED])
def test_assigned_schedule_attributes_are_checked_before_a_value(make, attr, value, exc):
    s = make()
    try:
        setattr(s, attr, value)
    except exc as e:  # refused at the assignment itself (converted there, as the constructor does)
        assert str(e).startswith(attr)
        return
    with pytest.raises(exc, match=f"^{attr}"):
        s(1)
    p = np.zeros(3, np.float32)
    opt = SGD([p], lr=1.0)
    with pytest.raises(exc, match=attr):
        s.attach(opt)  # (attaching writes step 0's value: refused before it does)
    assert opt.param_groups[0]["lr"] == 1.0


def test_cyclic_momentum_checks_its_cycle_and_its_own():
    c = S.cyclic(0.1, 1.0, 2)
    m = c.momentum(0.8, 0.9)
    c.mode = "foo"
    with pytest.raises(ValueError, match="^mode: "):
        m(1)
    c.mode = "triangular"
    m.max_momentum = 1.5
    with pytest.raises(ValueError, match="^max_momentum: "):
        m(1)


def test_batch_size_checks_the_assigned_attributes():
    s = S.batch_size_schedule(32, [2, 4], factor=2.0)
    s.factor = 0.5
    with pytest.raises(ValueError, match="^factor: "):
        s.batch_size(3)


def test_multi_step_milestones_assigned_in_any_order_count_as_torchs():
    torch = pytest.importorskip("torch")
    s = S.multi_step(1.0, [3, 6], 0.5)
    s.milestones = [8, 2, 5, 5]
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    ts = torch.optim.lr_scheduler.MultiStepLR(opt, [8, 2, 5, 5], gamma=0.5)
    theirs = []
    for _ in range(12):
        theirs.append(opt.param_groups[0]["lr"])
        opt.step()
        ts.step()
    assert [s(t) for t in range(12)] == pytest.approx(theirs, rel=1e-15)


def test_assigned_schedule_attributes_in_range_are_used():
    s = S.step_decay(1.0, 2, 0.5)
    s.gamma, s.step_size = 0.25, 1
    assert s(2) == 0.0625
    m = S.multi_step(1.0, [3, 6], 0.5)
    m.milestones = [6, 1]
    assert (m(0), m(1), m(6)) == (1.0, 0.5, 0.25)
