"""optkern.schedules.ReduceLROnPlateau against torch.optim.lr_scheduler.ReduceLROnPlateau, lr by lr."""

import copy
import math
import pickle

import numpy as np
import pytest

import optkern
from optkern import optim
from optkern import schedules as S

torch = pytest.importorskip("torch")
lrs = torch.optim.lr_scheduler


def _torch_opt(lrs_):
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in lrs_]
    return torch.optim.SGD(groups, lr=1.0)


def _ours_opt(lrs_):
    return optim.SGD([{"params": [np.zeros(1)], "lr": lr} for lr in lrs_], lr=1.0)


def _metrics(seed: int, n: int) -> list:
    """A metric sequence with long plateaus, small (sub-threshold) and large improvements, setbacks,
    ties with the best, a NaN and infinities."""
    rng = np.random.default_rng(seed)
    m, out = 1.0 + rng.random(), []
    while len(out) < n:
        kind = rng.integers(0, 6)
        if kind == 0:
            out += [m] * int(rng.integers(1, 8))  # a plateau
        elif kind == 1:
            m *= 1 - 10 ** rng.uniform(-6, -1)  # an improvement, often below a 1e-4 threshold
            out.append(m)
        elif kind == 2:
            m *= 1 + rng.uniform(0, 0.05)
            out.append(m)
        elif kind == 3:
            out.append(m - rng.choice([1e-5, 1e-3, 0.1]))  # an absolute improvement of a size
        elif kind == 4:
            out.append(float(rng.choice([math.nan, m, -m])))
        else:
            out.append(float(rng.normal(m, 0.01)))
    out[min(7, n - 1)] = math.inf if seed % 2 else math.nan
    return out[:n]


CONFIGS = [
    dict(),
    dict(mode="max", patience=2),
    dict(patience=0, factor=0.5),
    dict(patience=1, threshold=1e-3, threshold_mode="abs", cooldown=2),
    dict(mode="max", threshold=0.01, threshold_mode="abs", patience=1, cooldown=1, factor=0.3),
    dict(patience=2, cooldown=3, factor=0.2, min_lr=[1e-3, 5e-4, 0.0]),
    dict(patience=0, factor=0.9, eps=2e-3, min_lr=1e-3),  # eps skips the small reductions
    dict(patience=1, threshold=0.0, factor=0.0),
    dict(mode="max", threshold=0.2, patience=3, min_lr=[0.0, 0.05, 0.01]),
]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("cfg", CONFIGS, ids=[repr(c) for c in CONFIGS])
def test_lrs_and_counters_match_torch(cfg, seed):
    group_lrs = [0.1, 0.05, 0.02]
    t_opt, o_opt = _torch_opt(group_lrs), _ours_opt(group_lrs)
    ref, mine = lrs.ReduceLROnPlateau(t_opt, **cfg), S.ReduceLROnPlateau(o_opt, **cfg)
    metrics = _metrics(seed, 120)
    if cfg.get("mode") == "max":
        metrics = [-x for x in metrics]
    reductions = 0
    for m in metrics:
        before = [g["lr"] for g in o_opt.param_groups]
        ref.step(m)
        mine.step(m)
        got = [g["lr"] for g in o_opt.param_groups]
        assert got == [g["lr"] for g in t_opt.param_groups]  # exactly: the same float arithmetic
        reductions += got != before
        assert mine.get_last_lr() == ref.get_last_lr() == got
        for k in ("best", "num_bad_epochs", "cooldown_counter", "last_epoch"):
            assert getattr(mine, k) == getattr(ref, k), k
        assert mine.in_cooldown == ref.in_cooldown
    assert reductions >= 1  # (the sequences reach the reductions the test is about)


def test_state_dict_round_trip_and_torch_interchange():
    metrics = _metrics(5, 80)
    cfg = dict(patience=2, cooldown=1, factor=0.5, min_lr=[1e-3, 0.0])
    a_opt = _ours_opt([0.1, 0.2])
    a = S.ReduceLROnPlateau(a_opt, **cfg)
    for m in metrics:
        a.step(m)
    # the first half, saved, then loaded into a differently configured one on another optimizer
    b_opt = _ours_opt([0.1, 0.2])
    b = S.ReduceLROnPlateau(b_opt, **cfg)
    for m in metrics[:40]:
        b.step(m)
    state = copy.deepcopy(b.state_dict())
    t_opt = _torch_opt([g["lr"] for g in b_opt.param_groups])
    t = lrs.ReduceLROnPlateau(t_opt)
    t.load_state_dict(copy.deepcopy(state))  # ours into torch
    c_opt = _ours_opt([g["lr"] for g in b_opt.param_groups])
    c = S.ReduceLROnPlateau(c_opt, mode="max", patience=9)
    c.load_state_dict(state)
    assert c.state_dict() == state
    for m in metrics[40:]:
        c.step(m)
        t.step(m)
        assert [g["lr"] for g in c_opt.param_groups] == [g["lr"] for g in t_opt.param_groups]
    assert [g["lr"] for g in c_opt.param_groups] == [g["lr"] for g in a_opt.param_groups]
    assert c.state_dict() == a.state_dict()
    d = S.ReduceLROnPlateau(_ours_opt([0.1, 0.2]))
    d.load_state_dict(t.state_dict())  # torch's into ours
    assert d.state_dict() == t.state_dict()
    e = pickle.loads(pickle.dumps(c))
    assert e.state_dict() == c.state_dict()


def test_checkpoint_round_trip(tmp_path):
    opt = _ours_opt([0.1])
    s = S.ReduceLROnPlateau(opt, patience=1)
    for m in [1.0, 2.0, 3.0, math.nan]:
        s.step(m)
    path = str(tmp_path / "ck.npz")
    optkern.save(path, sched=s)
    s2 = S.ReduceLROnPlateau(_ours_opt([0.1]), mode="max")
    optkern.load(path, sched=s2)
    assert s2.state_dict() == s.state_dict()


@pytest.mark.parametrize(
    "key, value, exc, match",
    [
        ("factor", 1.0, ValueError, r"^state\['factor'\]"),
        ("mode", "mean", ValueError, r"^state\['mode'\]"),
        ("patience", -1, ValueError, r"^state\['patience'\]"),
        ("patience", 2.5, TypeError, r"^state\['patience'\]"),
        ("best", math.nan, ValueError, r"^state\['best'\]"),
        ("min_lrs", [0.1, 0.2], ValueError, r"^state\['min_lrs'\]"),
        ("min_lrs", 0.1, TypeError, r"^state\['min_lrs'\]"),
        ("mode_worse", 0.0, ValueError, r"^state\['mode_worse'\]"),
        ("cooldown_counter", -1, ValueError, r"^state\['cooldown_counter'\]"),
        ("_last_lr", [-1.0], ValueError, r"^state\['_last_lr'\]\[0\]"),
        ("paitence", 3, ValueError, "unknown key 'paitence'"),
        ("last_epoch", None, ValueError, "missing 'last_epoch'"),
    ],
)
def test_bad_state_is_named_and_changes_nothing(key, value, exc, match):
    s = S.ReduceLROnPlateau(_ours_opt([0.1]), patience=1, min_lr=[0.0])
    for m in [3.0, 2.0, 2.5]:
        s.step(m)
    before = s.state_dict()
    state = s.state_dict()
    if value is None:
        del state[key]
    else:
        state[key] = value
    with pytest.raises(exc, match=match):
        s.load_state_dict(state)
    assert s.state_dict() == before


@pytest.mark.parametrize(
    "kw, exc, match",
    [
        (dict(factor=1.0), ValueError, "^factor"),  # torch: "Factor should be < 1.0"
        (dict(factor=-0.5), ValueError, "^factor"),
        (dict(factor=math.nan), ValueError, "^factor"),
        (dict(mode="mni"), ValueError, "^mode"),
        (dict(threshold_mode="relative"), ValueError, "^threshold_mode"),
        (dict(patience=-1), ValueError, "^patience"),
        (dict(patience=1.5), TypeError, "^patience"),
        (dict(cooldown=-2), ValueError, "^cooldown"),
        (dict(threshold=-1e-4), ValueError, "^threshold"),
        (dict(eps=math.inf), ValueError, "^eps"),
        (dict(min_lr=-1e-3), ValueError, "^min_lr"),
        (dict(min_lr=[0.0]), ValueError, "^min_lr: expected 2"),
        (dict(min_lr=[0.0, math.nan]), ValueError, r"^min_lr\[1\]"),
    ],
)
def test_bad_arguments_are_named(kw, exc, match):
    with pytest.raises(exc, match=match):
        S.ReduceLROnPlateau(_ours_opt([0.1, 0.2]), **kw)


def test_bad_optimizer_and_group_lr():
    with pytest.raises(TypeError, match="^optimizer"):
        S.ReduceLROnPlateau(object())
    with pytest.raises(ValueError, match=r"^optimizer: param_groups\[0\] has no 'lr'"):
        S.ReduceLROnPlateau(type("O", (), {"param_groups": [{"momentum": 0.9}]})())


def test_a_failed_step_changes_nothing():
    opt = _ours_opt([0.1, 0.2])
    s = S.ReduceLROnPlateau(opt, patience=0)
    s.step(1.0)
    before, lrs_before = s.state_dict(), [g["lr"] for g in opt.param_groups]
    with pytest.raises(TypeError, match="^metrics"):
        s.step("0.5")
    with pytest.raises(TypeError, match="^metrics"):
        s.step(np.ones(2))
    s.patience = -1  # assigned after construction: checked by the constructor's rule
    with pytest.raises(ValueError, match="^patience"):
        s.step(2.0)
    s.patience = 0
    opt.param_groups[1]["lr"] = math.nan  # the second group's lr bad: the first is not written either
    with pytest.raises(ValueError, match=r"^optimizer.param_groups\[1\]\['lr'\]"):
        s.step(2.0)
    assert opt.param_groups[0]["lr"] == lrs_before[0]
    assert s.state_dict() == before


def test_nan_metric_is_a_bad_epoch_as_in_torch():
    t_opt, o_opt = _torch_opt([0.1]), _ours_opt([0.1])
    ref, mine = lrs.ReduceLROnPlateau(t_opt, patience=1), S.ReduceLROnPlateau(o_opt, patience=1)
    for m in [math.nan, math.nan, 1.0, math.nan, math.nan, 0.5]:
        ref.step(m)
        mine.step(m)
        assert (mine.best, mine.num_bad_epochs) == (ref.best, ref.num_bad_epochs)
        assert o_opt.param_groups[0]["lr"] == t_opt.param_groups[0]["lr"]
    assert o_opt.param_groups[0]["lr"] < 0.1


def test_metric_as_a_tensor_or_array_and_lr_filled_in_place():
    lr = np.array([0.1])  # a device-resident lr stand-in: filled in place, as torch fills a tensor lr
    opt = type("O", (), {"param_groups": [{"lr": lr}]})()
    s = S.ReduceLROnPlateau(opt, patience=0, factor=0.5)
    s.step(torch.tensor(1.0))
    s.step(np.float32(2.0))
    assert opt.param_groups[0]["lr"] is lr and lr[0] == 0.05
    assert s.get_last_lr() == [0.05]


def test_a_group_added_later():
    opt = _ours_opt([0.1])
    s = S.ReduceLROnPlateau(opt, patience=0, min_lr=0.01)
    opt.add_param_group({"params": [np.zeros(1)], "lr": 0.5})
    s.step(1.0)
    s.step(2.0)  # the scalar bound holds for the new group too (torch's default_min_lr)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.01, 0.05])
    opt2 = _ours_opt([0.1])
    s2 = S.ReduceLROnPlateau(opt2, patience=0, min_lr=[0.01])
    opt2.add_param_group({"params": [np.zeros(1)], "lr": 0.5})
    with pytest.raises(ValueError, match="^optimizer: has 2 param groups"):
        s2.step(1.0)


def test_exported_and_documented():
    import pathlib

    assert "ReduceLROnPlateau" in S.__all__
    readme = pathlib.Path(__file__).resolve().parents[1] / "README.md"
    assert "ReduceLROnPlateau" in readme.read_text()
