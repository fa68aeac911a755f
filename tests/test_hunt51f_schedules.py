"""Hunt 51f: NumPy integers and bools in the schedules' arguments.

``Scheduler(..., index=np.int64(0))`` was refused ("index: expected an int or None, got int64")
while every other integer argument of the schedules takes NumPy's integers; bools stay refused
wherever an int or a float is meant. The audit below covers every schedule constructor's numeric
arguments (NumPy's give the same values as Python's; a bool is a TypeError naming the argument)."""

import warnings

import numpy as np
import pytest

import optkern.optim as oo
import optkern.schedules as S

_T = range(13)


@pytest.mark.parametrize("index", [np.int64(0), np.int32(1), np.uint8(1), np.int16(-1), np.intp(-2)])
def test_scheduler_takes_a_numpy_integer_index(index):
    q = [np.zeros(7, np.float32)]
    o = oo.Adam(q, lr=1e-3, betas=(0.9, 0.99))
    sc = S.Scheduler(o, S.linear(0.8, 0.5, 4), key="betas", index=index)
    i = int(index) % 2
    assert type(sc.index) is int and sc.index == i
    assert o.param_groups[0]["betas"][i] == 0.8 and o.param_groups[0][f"initial_betas{i}"] == (0.9, 0.99)[i]
    sc.step()
    assert o.param_groups[0]["betas"][i] == pytest.approx(0.8 - 0.3 / 4)
    assert o.param_groups[0]["betas"][1 - i] == (0.9, 0.99)[1 - i]
    o.step([np.ones(7, np.float32)])  # (the betas written are a tuple Adam takes)
    sd = sc.state_dict()
    assert type(sd["index"]) is int
    sd["index"] = np.int64(i)  # (as an archive may give it back)
    sc.load_state_dict(sd)
    sc.index = np.int64(i)  # (assigned: the same element, still driven)
    sc.step()


@pytest.mark.parametrize("index", [True, np.True_, np.False_, 0.0, np.float64(1), "0"])
def test_scheduler_refuses_a_bool_or_non_integer_index(index):
    o = oo.Adam([np.zeros(3, np.float32)], lr=1e-3)
    with pytest.raises(TypeError, match=r"^index: expected an int or None, got"):
        S.Scheduler(o, S.constant(0.9), key="betas", index=index)
    assert "initial_betas0" not in o.param_groups[0] and o.param_groups[0]["betas"] == (0.9, 0.999)


def _values(s):
    return s if isinstance(s, float) else [s(t) for t in _T]


_CONSTRUCTORS = {
    "constant": dict(value=0.5),
    "linear": dict(init=1.0, end=0.1, steps=10),
    "step_decay": dict(lr=1.0, step_size=3, gamma=0.5),
    "exponential": dict(lr=1.0, gamma=0.9),
    "inverse_time": dict(lr=1.0, k=1.0, power=1.0),
    "polynomial": dict(lr=1.0, total_steps=10, power=2.0, end=0.0),
    "cosine": dict(lr=1.0, T_max=10, eta_min=0.0),
    "cosine_restarts": dict(lr=1.0, T_0=3, T_mult=2, eta_min=0.0),
    "cyclic": dict(base_lr=0.1, max_lr=1.0, step_size_up=4, step_size_down=3, gamma=1.0),
    "one_cycle": dict(max_lr=1.0, total_steps=20, pct_start=0.3, div_factor=25.0, final_div_factor=1e4),
    "warmup_cosine": dict(lr=1.0, warmup_steps=3, total_steps=10, eta_min=0.0, start_factor=0.0),
    "scale_lr": dict(base_lr=0.1, batch=512, base_batch=256),
    "batch_size_schedule": dict(base_batch_size=32, milestones=(3, 6), factor=2.0, max_batch_size=256, lr=1.0),
    "swalr": dict(initial_lr=1.0, swa_lr=0.1, anneal_epochs=4),
}
_NUMERIC = [(n, k) for n, kw in _CONSTRUCTORS.items() for k, v in kw.items() if type(v) in (int, float)]


@pytest.mark.parametrize("name, arg", _NUMERIC)
def test_numpy_numbers_give_python_numbers_values_and_bools_are_refused(name, arg):
    f, kw = getattr(S, name), _CONSTRUCTORS[name]
    v = kw[arg]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = _values(f(**kw))
        for np_v in (np.int64(v), np.int32(v)) if type(v) is int else (np.float64(v), np.float32(v)):
            np.testing.assert_allclose(_values(f(**{**kw, arg: np_v})), want, rtol=1e-6)
        for b in (True, np.True_):
            with pytest.raises(TypeError, match=rf"\b{arg}\b"):
                f(**{**kw, arg: b})


@pytest.mark.parametrize("flag", [np.True_, np.False_])
def test_schedule_flags_take_numpy_bools(flag):
    assert _values(S.one_cycle(1.0, 20, three_phase=flag)) == _values(S.one_cycle(1.0, 20, three_phase=bool(flag)))
    w = S.linear_warmup(S.cosine(1.0, 10), np.int64(3), shift=flag)
    assert _values(w) == _values(S.linear_warmup(S.cosine(1.0, 10), 3, shift=bool(flag)))


@pytest.mark.parametrize("name, kw, arg", [("one_cycle", dict(max_lr=1.0, total_steps=20), "three_phase")])
@pytest.mark.parametrize("bad", [1, 0, 1.0, "yes"])
def test_schedule_flags_refuse_non_bools(name, kw, arg, bad):
    with pytest.raises(TypeError, match=rf"^{arg}: expected a bool"):
        getattr(S, name)(**kw, **{arg: bad})
