"""Bad input to init, schedules, data, regularize, clip, random, dropout and the study CLI: a
TypeError / ValueError naming the argument, raised before anything is written (arrays, object
state, an optimizer's lr), and the overflow cases that used to return inf / NaN or crash."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from optkern import clip_grad_norm_, data, norm, optim
from optkern import init as I
from optkern import random as R
from optkern import regularize as reg
from optkern import schedules as S

BIG = 10**400  # an int beyond float's range
NAN = float("nan")


def ones(*shape):
    return np.ones(shape or (4, 3), np.float32)


# ---- init: arguments checked before w is written ---------------------------------------------


@pytest.mark.parametrize(
    "call, exc, name",
    [
        (lambda w: I.normal_(w, mean=NAN, rng=0), ValueError, "mean"),
        (lambda w: I.normal_(w, std=-1.0, rng=0), ValueError, "std"),
        (lambda w: I.normal_(w, rng=-1), ValueError, "rng"),
        (lambda w: I.uniform_(w, a=NAN, rng=0), ValueError, "a"),
        (lambda w: I.lecun_normal_(w, rng=-1), ValueError, "rng"),
        (lambda w: I.xavier_normal_(w, gain=NAN, rng=0), ValueError, "gain"),
        (lambda w: I.kaiming_normal_(w, a=NAN, rng=0), ValueError, "a"),
        (lambda w: I.kaiming_normal_(w, a=BIG, rng=0), ValueError, "a"),
        (lambda w: I.kaiming_uniform_(w, mode="fan", rng=0), ValueError, "mode"),
        (lambda w: I.kaiming_uniform_(w, nonlinearity=["relu"], rng=0), TypeError, "nonlinearity"),
        (lambda w: I.geometric_uniform_(w, c=math.inf, rng=0), ValueError, "c"),
        (lambda w: I.orthogonal_(w, gain=NAN, rng=0), ValueError, "gain"),
    ],
)
def test_init_checks_every_argument_before_writing(call, exc, name):
    w = ones()
    with pytest.raises(exc, match=rf"^{name}: "):
        call(w)
    assert np.array_equal(w, ones())


@pytest.mark.parametrize(
    "fill", [I.lecun_normal_, I.lecun_uniform_, I.xavier_normal_, I.kaiming_normal_, I.geometric_uniform_]
)
@pytest.mark.parametrize("shape", [(3, 0), (0, 0), (2, 0, 4)])
def test_fan_initializers_of_zero_element_arrays_are_a_no_op_as_in_torch(fill, shape):
    # (only torch's kaiming initializers warn of it: tests/test_hunt33_amp_swa.py pins which)
    w = np.empty(shape, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert fill(w, rng=0) is w
    with pytest.raises(TypeError, match="^rng: "):  # still checked
        fill(w, rng="seed")


def test_kaiming_gain_of_a_huge_slope_and_calculate_gain_types():
    w = I.kaiming_normal_(np.empty((4, 3)), a=1e200, rng=0)
    assert np.isfinite(w).all() and 0 < np.abs(w).max() < 1e-190
    assert I.calculate_gain("leaky_relu", 1e200) == pytest.approx(math.sqrt(2.0) / 1e200, rel=1e-15)
    assert I.calculate_gain("leaky_relu", 0.2) == math.sqrt(2.0 / (1 + 0.2**2))  # torch's formula, to the bit
    with pytest.raises(TypeError, match="^nonlinearity: "):
        I.calculate_gain(["relu"])
    with pytest.raises(ValueError, match="^w: "):
        I.calculate_fan_in_and_fan_out((3, -2))


@pytest.mark.parametrize(
    "kw, exc, name",
    [
        (dict(shape=-1), ValueError, "shape"),
        (dict(shape=(2, -1)), ValueError, "shape"),
        (dict(shape="ab"), TypeError, "shape"),
        (dict(shape=None), TypeError, "shape"),
        (dict(shape=(2.5, 3)), TypeError, "shape"),
        (dict(shape=(2**63,)), ValueError, "shape"),
        (dict(shape=(3, 2), dtype=None), TypeError, "dtype"),
        (dict(shape=(3, 2), dtype="foo"), TypeError, "dtype"),
        (dict(shape=(3, 2), dtype=np.int32), TypeError, "dtype"),
        (dict(shape=(3, 2), xp="np"), TypeError, "xp"),
        (dict(shape=(3, 2), rng=-1), ValueError, "rng"),
    ],
)
def test_init_new_array_arguments(kw, exc, name):
    with pytest.raises(exc, match=rf"^{name}: "):
        I.xavier_normal(rng=kw.pop("rng", 0), **kw)


# ---- lsuv_: weights restored on any error ------------------------------------------------------


def _two_layers():
    rng = np.random.default_rng(0)
    ws = [rng.standard_normal((3, 4)) * 3, rng.standard_normal((2, 3)) * 3]

    def forward(x):
        h = x @ ws[0].T
        return [h, np.tanh(h) @ ws[1].T]

    return ws, forward, rng.standard_normal((16, 4))


@pytest.mark.parametrize(
    "bad, kw, exc, match",
    [
        (None, dict(eps=0.0), ValueError, "^eps: "),
        (None, dict(eps=-1.0), ValueError, "^eps: "),
        (None, dict(orthogonal_start="no"), TypeError, "^orthogonal_start: "),
        (lambda f: lambda x: f(x)[:1], {}, ValueError, "^forward: returned 1 outputs"),
        (lambda f: lambda x: [o.tolist() for o in f(x)], {}, TypeError, "^forward: output 0"),
        (lambda f: lambda x: np.stack(f(x)[:1]), {}, TypeError, "^forward: expected it to return a list"),
        (lambda f: lambda x: [o * NAN for o in f(x)], {}, ValueError, "^forward: output 0 has variance nan"),
        (lambda f: lambda x: [f(x)[0], np.zeros((16, 0))], {}, TypeError, "^forward: output 1"),
        (lambda f: lambda x: 1 / 0, {}, ZeroDivisionError, "division"),  # forward's own error, passed on
    ],
)
def test_lsuv_leaves_the_weights_unchanged_on_an_error(bad, kw, exc, match):
    ws, forward, x = _two_layers()
    before = [w.copy() for w in ws]
    with pytest.raises(exc, match=match):
        I.lsuv_(ws, forward if bad is None else bad(forward), x, rng=0, **kw)
    for w, b in zip(ws, before):
        assert np.array_equal(w, b)


def test_lsuv_mlp_leaves_params_unchanged_on_an_error():
    nn = pytest.importorskip("optkern.nn")
    mlp = nn.MLP([4, 5, 3], dtype=np.float64)
    params = mlp.init_params(seed=0) + 0.5  # nonzero biases, which zero_bias would clear first
    before = params.copy()
    x = np.random.default_rng(1).standard_normal((8, 4))
    for kw, exc, name in [
        (dict(tol=0.0), ValueError, "tol"),
        (dict(zero_bias="yes"), TypeError, "zero_bias"),
        (dict(rng=-1), ValueError, "rng"),
    ]:
        with pytest.raises(exc, match=rf"^{name}: "):
            I.lsuv_mlp_(mlp, params, x, **kw)
        assert np.array_equal(params, before)
    with pytest.raises(ValueError, match="^params: "):
        I.lsuv_mlp_(mlp, params[:-1], x)


# ---- BatchLoader.load_state_dict ---------------------------------------------------------------


@pytest.mark.parametrize(
    "state, exc, match",
    [
        (None, TypeError, r"^state: expected a dict"),
        ({"epoch": 1}, ValueError, r"^state: missing 'seed'"),
        ({"epoch": 1, "seed": -1}, ValueError, r"^state\['seed'\]: "),
        ({"epoch": -1, "seed": 1}, ValueError, r"^state\['epoch'\]: "),
        ({"epoch": 1.5, "seed": 1}, TypeError, r"^state\['epoch'\]: "),
    ],
)
def test_batch_loader_state_is_checked_whole_before_loading(state, exc, match):
    loader = data.BatchLoader(np.arange(10.0), None, 3, seed=5)
    loader.epoch = 7
    with pytest.raises(exc, match=match):
        loader.load_state_dict(state)
    assert loader.state_dict() == {"epoch": 7, "seed": 5, "batch": 0}


def test_batch_loader_flags_are_bools():
    with pytest.raises(TypeError, match="^shuffle: "):
        data.BatchLoader(np.arange(10.0), shuffle="no")
    with pytest.raises(TypeError, match="^drop_last: "):
        data.BatchLoader(np.arange(10.0), drop_last=[])


# ---- EarlyStopping and load_state ----------------------------------------------------------------

GOOD = dict(best=0.1, best_step=2, num_bad=1, steps=4, should_stop=False)


@pytest.mark.parametrize(
    "change, exc, match",
    [
        (None, TypeError, r"^state: expected a dict"),
        (dict(best_step="x"), TypeError, r"^state\['best_step'\]: "),
        (dict(best="a"), TypeError, r"^state\['best'\]: "),
        (dict(best=NAN), ValueError, r"^state\['best'\]: "),
        (dict(num_bad=-5), ValueError, r"^state\['num_bad'\]: "),
        (dict(num_bad=5), ValueError, r"^state\['num_bad'\]: "),  # more bad checks than checks
        (dict(steps=-1), ValueError, r"^state\['steps'\]: "),
        (dict(best_step=4), ValueError, r"^state\['best_step'\]: "),
        (dict(should_stop="no"), TypeError, r"^state\['should_stop'\]: "),
    ],
)
def test_early_stopping_state_is_checked_whole_before_loading(change, exc, match):
    es = reg.EarlyStopping(patience=2)
    es.step(0.5)
    before = es.state_dict()
    with pytest.raises(exc, match=match):
        es.load_state_dict(None if change is None else {**GOOD, **change})
    assert es.state_dict() == before
    es.load_state_dict(GOOD)
    assert es.state_dict() == {**GOOD, "mode": "min", "kept": False}  # (nothing kept in memory)


@pytest.mark.parametrize(
    "metric, exc", [("abc", TypeError), (None, TypeError), (np.array([1.0, 2.0]), TypeError), (BIG, ValueError)]
)
def test_early_stopping_metric_is_a_real_number(metric, exc):
    es = reg.EarlyStopping()
    es.step(0.5)
    before = es.state_dict()
    with pytest.raises(exc, match="^metric: "):
        es.step(metric)
    assert es.state_dict() == before
    assert es.step(np.array(0.25)) is False and es.best == 0.25  # a 0-d array is a number
    assert es.step(np.float32(NAN)) is False and es.num_bad == 1  # NaN is a metric, never an improvement


def test_early_stopping_keeps_counting_only_once_the_state_is_kept(tmp_path):
    es = reg.EarlyStopping()
    with pytest.raises(ZeroDivisionError):
        es.step(0.5, state=lambda: 1 / 0)
    assert es.state_dict() == reg.EarlyStopping().state_dict()
    with pytest.raises(ValueError, match="^min_delta: "):
        reg.EarlyStopping(min_delta=BIG)
    with pytest.raises(TypeError, match="^path: "):
        reg.EarlyStopping(path=5)


def test_load_state_of_a_foreign_or_damaged_file_names_path(tmp_path):
    np.savez(tmp_path / "foreign.npz", a=np.ones(3))
    (tmp_path / "garbage.npz").write_bytes(b"garbage")
    for name in ("foreign.npz", "garbage.npz"):
        with pytest.raises(ValueError, match=f"^path: .*{name}.* is not a state written by save_state"):
            reg.load_state(tmp_path / name)


# ---- Scheduler: nothing written on an error ---------------------------------------------------------


def _sgd(lr=0.1):
    return optim.SGD([np.ones(3)], lr=lr)


@pytest.mark.parametrize(
    "base, exc, match",
    [
        ([NAN], ValueError, r"^state\['base_values'\]\[0\]: must be finite"),
        ([math.inf], ValueError, r"^state\['base_values'\]\[0\]: must be finite"),
        ([-1.0], ValueError, r"^state\['base_values'\]\[0\]: must be in \[0.0, inf\)"),
        ([BIG], ValueError, r"^state\['base_values'\]\[0\]: "),
        (["0.1"], TypeError, r"^state\['base_values'\]\[0\]: "),
        ("1", TypeError, r"^state\['base_values'\]: expected a list"),
    ],
)
def test_scheduler_load_state_dict_leaves_optimizer_and_scheduler_unchanged(base, exc, match):
    opt = _sgd()
    s = S.Scheduler(opt, S.cosine(1.0, 10), relative=True)
    s.step()
    group, before = dict(opt.param_groups[0]), s.state_dict()
    with pytest.raises(exc, match=match):
        s.load_state_dict({"last_step": 3, "base_values": base})
    assert opt.param_groups[0] == group and s.state_dict() == before


@pytest.mark.parametrize(
    "fn, exc, match",
    [
        (lambda t: -1.0, ValueError, r"^schedule \(step 0, optimizer.param_groups\[0\]\['lr'\]\): must be in"),
        (lambda t: BIG, ValueError, "^schedule: returned an integer beyond float64's range"),
        (lambda t: math.inf, ValueError, "^schedule: returned inf"),
    ],
)
def test_scheduler_refuses_values_the_optimizer_would_not_take(fn, exc, match):
    opt = _sgd()
    with pytest.raises(exc, match=match):
        S.Scheduler(opt, fn)
    assert opt.param_groups[0]["lr"] == 0.1 and "initial_lr" not in opt.param_groups[0]
    S.Scheduler(opt, lambda t: 0.0)  # lr = 0 is a valid lr


def test_scheduler_step_error_leaves_step_and_lr_unchanged():
    opt = _sgd()
    s = S.Scheduler(opt, lambda t: 0.1 if t <= 1000 else -0.1)  # bad past the horizon scanned at construction
    s.load_state_dict({"last_step": 1000, "base_values": [0.1]})
    with pytest.raises(ValueError, match=r"^schedule \(step 1001, "):
        s.step()
    assert s.last_step == 1000 and opt.param_groups[0]["lr"] == 0.1


def test_scheduler_betas_stay_below_one():
    opt = optim.Adam([np.ones(3)], lr=0.1)
    with pytest.raises(ValueError, match=r"'betas'\]\[0\]\): must be in \[0.0, 1.0\)"):
        S.momentum_scheduler(opt, S.constant(1.5))
    assert opt.param_groups[0]["betas"] == (0.9, 0.999)


# ---- schedules whose arithmetic overflows ----------------------------------------------------------


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: S.one_cycle(max_lr=1e300, div_factor=1e-300), "div_factor"),
        (lambda: S.one_cycle(div_factor=1e-300, final_div_factor=1e-300), "final_div_factor"),
        (lambda: S.batch_size_schedule(8, [1, 2], factor=1e300), "factor"),
        (lambda: S.batch_size_schedule(8, list(range(1, 2000)), factor=2.0), "factor"),
        (lambda: S.scale_lr(1e300, 2**70, 1), "batch"),
        (lambda: S.scale_lr(1.0, 10**400, 1), "batch"),
        (lambda: S.chain(1e300, 1e300)(0), "schedule"),
        # (linear(-1e308, 1e308, 10)(5) was here: its exact value is 0, computed since hunt47d; its
        # values lie between init and end, so never past float64's range)
        (lambda: S.exponential(1e300, 2.0)(100), "schedule"),
        (lambda: S.cosine(1.0, 10)(2**63), "step"),
        (lambda: S.batch_size_schedule(8, None), "milestones"),
        (lambda: S.sequential([1.0, 2.0], None), "boundaries"),
        (lambda: S.sequential(5, [1]), "schedules"),
    ],
)
def test_schedules_refuse_non_finite_values(make, name):
    with pytest.raises((TypeError, ValueError), match=rf"^{name}: "):
        make()


def test_triangular2_decays_to_base_lr_instead_of_overflowing():
    sched = S.cyclic(0.1, 1.0, step_size_up=1, mode="triangular2")
    assert sched(5000) == 0.1 and sched(5001) == 0.1


# ---- clip_grad_norm_ at large p -------------------------------------------------------------------


def _p_norm(gs, p):
    a = np.concatenate([np.abs(g.astype(np.float64)).ravel() for g in gs])
    m = a.max()
    return m * np.sum((a / m) ** p) ** (1 / p)


@pytest.mark.parametrize(
    "values, p",
    [([0.5, 0.5, 3.0], 2000.0), ([1e-30, 1e-30], 1e10), ([1e20, 3e20], 20.0), ([1e-30, 3e-30], 20.0)],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clip_grad_norm_of_large_p_neither_overflows_nor_underflows(values, p, dtype):
    g = [np.array(values, dtype)]
    before = g[0].copy()
    want = _p_norm(g, p)
    out = np.zeros(1)
    total = clip_grad_norm_(g, 1e300, p, out=out)
    assert total == pytest.approx(want, rel=1e-12) and out[0] == total and 0 < total < math.inf
    assert np.array_equal(g[0], before)  # below max_norm: untouched (it used to become 0)


def test_clip_grad_norm_of_large_p_clips_across_arrays():
    g = [np.array([0.5, 0.5, 3.0], np.float32), np.zeros(0, np.float32), np.array([4.0], np.float32)]
    want = _p_norm(g, 1000.0)  # 4 ** 1000 overflows float64
    assert clip_grad_norm_(g, 1.0, 1000.0) == pytest.approx(want, rel=1e-12)
    np.testing.assert_allclose(g[2], [4.0 / (want + 1e-6)], rtol=1e-6)
    assert clip_grad_norm_([np.zeros(3)], 1.0, 50.0) == 0.0
    assert math.isnan(clip_grad_norm_([np.array([NAN, 1.0])], 1.0, 50.0))


@pytest.mark.parametrize("kw, name", [(dict(max_norm=BIG), "max_norm"), (dict(norm_type=BIG), "norm_type")])
def test_clip_grad_norm_huge_ints_name_the_argument(kw, name):
    g = np.array([0.5, 3.0])
    with pytest.raises(ValueError, match=rf"^{name}: "):
        clip_grad_norm_([g], **{"max_norm": 1.0, **kw})
    assert np.array_equal(g, [0.5, 3.0])


# ---- the study CLI: integer flags in sane ranges -----------------------------------------------------


@pytest.mark.parametrize(
    "flag, value",
    [("--seeds", "99999999999999999999"), ("--seed", "-1"), ("--epochs", "10000000"), ("--jobs", "100000")],
)
def test_study_integer_flags_are_bounded(flag, value, tmp_path, capsys, monkeypatch):
    import optkern.study
    from optkern import cli

    def never(*args, **kw):
        raise AssertionError(f"{flag} {value} was accepted: the study started")

    monkeypatch.setattr(optkern.study, "run_study", never)
    out = tmp_path / "out"
    rc = cli.main(["study", "--quick", flag, value, "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith(f"optkern study: error: {flag}: must be ") and err.count("\n") == 1, err
    assert not out.exists()  # refused before anything ran


def test_study_config_integers_are_checked_for_type():
    from optkern.study import runner

    with pytest.raises(runner.ConfigError, match="^seeds: expected an integer"):
        runner.StudyConfig(seeds=2.5).validate()
    with pytest.raises(runner.ConfigError, match="^hidden: "):
        runner.StudyConfig(hidden=(64, 10**7)).validate()


# ---- dropout, random, mixup / cutmix ---------------------------------------------------------------


@pytest.mark.parametrize("kw, name", [(dict(training="no"), "training"), (dict(return_mask=1), "return_mask")])
def test_dropout_flags_are_bools(kw, name):
    with pytest.raises(TypeError, match=rf"^{name}: expected a bool"):
        norm.dropout(np.ones(4, np.float32), 0.5, 0, **kw)


@pytest.mark.parametrize(
    "kw, exc, name",
    [
        (dict(dtype="foo"), TypeError, "dtype"),
        (dict(dtype=[1]), TypeError, "dtype"),
        (dict(dtype=None), TypeError, "dtype"),
        (dict(shape=(2**63,)), ValueError, "shape"),
        (dict(shape=(2**62, 4)), ValueError, "shape"),
    ],
)
@pytest.mark.parametrize("fn", [R.uniform, R.rademacher])
def test_random_dtype_and_shape(fn, kw, exc, name):
    with pytest.raises(exc, match=rf"^{name}: "):
        fn(**{"shape": (3,), "seed": 0, **kw})


@pytest.mark.parametrize("mix", [reg.mixup, reg.cutmix])
def test_mix_rng_and_alpha(mix):
    x, y = np.ones((4, 2, 5, 5), np.float32), np.array([0, 1, 2, 1])
    with pytest.raises(ValueError, match="^rng: must be >= 0"):
        mix(x, y, num_classes=3, rng=-1)
    with pytest.raises(ValueError, match="^alpha: "):
        mix(x, y, alpha=BIG, num_classes=3, rng=0)


def test_cutmix_of_empty_images_names_x():
    x = np.zeros((4, 2, 0, 5), np.float32)
    with pytest.raises(ValueError, match=r"^x: expected images of at least 1 x 1 pixels, got shape \(4, 2, 0, 5\)"):
        reg.cutmix(x, np.array([0, 1, 2, 1]), num_classes=3, rng=0)
