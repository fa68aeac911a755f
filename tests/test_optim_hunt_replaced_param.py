"""optkern.optim: a param replaced in its group's list by an array of another size.

``Optimizer._check_param_groups`` lets a param be replaced in place by another array, "checked like
the others at the step". The state kept for the old one then has another size. A step of several
native calls (param groups) checks everything first (``precheck_step_``), but that pass compares
grads with params, not the state: the earlier groups were written, then the later group's own
call refused its state under the functional form's name (``exp_avgs[0]``). Now the step names the
state array by its global index before anything is written."""

import numpy as np
import pytest

import optkern.optim as O

CASES = [
    ("SGD", dict(lr=0.1, momentum=0.9), "momentum_buffer"),
    ("Adam", dict(lr=0.1, amsgrad=True), "exp_avg"),
    ("AdamW", dict(lr=0.1), "exp_avg"),
    ("NAdam", dict(lr=0.1), "exp_avg"),
    ("RMSprop", dict(lr=0.1, centered=True, momentum=0.5), "square_avg"),
    ("Adagrad", dict(lr=0.1), "sum"),
    ("Adadelta", dict(lr=0.1), "square_avg"),
]


def _two_groups(name, hp, dtype=np.float64):
    ps = [np.zeros(5, dtype), np.zeros(5, dtype), np.zeros(3, dtype)]
    opt = getattr(O, name)([{"params": ps[:1]}, {"params": ps[1:]}], **hp)
    opt.step([np.ones(5, dtype), np.ones(5, dtype), np.ones(3, dtype)])
    return opt, ps


@pytest.mark.parametrize("name, hp, first", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("none", [False, True], ids=["all-grads", "a-None-grad"])
def test_replaced_param_of_another_size_is_named_before_anything_is_written(name, hp, first, none):
    opt, ps = _two_groups(name, hp)
    new = np.zeros(6)
    opt.param_groups[1]["params"][0] = new
    sd = opt.state_dict()
    state = {i: {k: np.array(v, copy=True) for k, v in e.items()} for i, e in sd["state"].items()}
    before = [p.copy() for p in ps]
    grads = [np.ones(5), np.ones(6), None if none else np.ones(3)]
    with pytest.raises(ValueError, match=rf"^state\[1\]\['{first}'\]: expected 6 elements .*got 5"):
        opt.step(grads)
    for p, b in zip(ps, before):
        np.testing.assert_array_equal(p, b)
    np.testing.assert_array_equal(new, 0.0)
    for i, e in opt.state_dict()["state"].items():
        for k, v in e.items():
            np.testing.assert_array_equal(v, state[i][k], err_msg=f"{i} {k}")


def test_replaced_param_of_the_same_size_still_steps():
    opt, ps = _two_groups("Adam", dict(lr=0.1))
    new = np.zeros(5)
    opt.param_groups[1]["params"][0] = new
    opt.step([np.ones(5), np.ones(5), np.ones(3)])
    assert (new < 0).all()  # (the new array stepped with the state kept for the old one)
