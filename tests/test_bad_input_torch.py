"""Bad input to optkern.torch and the thread controls: TypeError / ValueError naming the argument,
raised before anything is written (params, grads, state and hyper-parameters unchanged)."""

import copy

import numpy as np
import pytest

import optkern

torch = pytest.importorskip("torch")
import optkern.torch as ot  # noqa: E402

torch.set_num_threads(1)

NAMES = ["SGD", "Adagrad", "AdagradNorm", "RMSprop", "Adadelta", "Adam", "AdamW", "NAdam"]
KW = {"SGD": {"momentum": 0.9}, "RMSprop": {"momentum": 0.5, "centered": True}}


def _snap(opt, tensors):
    """Copies of everything a failed call must leave alone."""
    return (
        [t.detach().clone() for t in tensors],
        [None if getattr(t, "grad", None) is None else t.grad.clone() for t in tensors],
        copy.deepcopy(opt.state_dict()),
    )


def _same(a, b):
    (pa, ga, sa), (pb, gb, sb) = a, b
    assert all(torch.equal(x, y) for x, y in zip(pa, pb))
    assert all((x is None and y is None) or torch.equal(x, y) for x, y in zip(ga, gb))
    assert sa["param_groups"] == sb["param_groups"]
    assert sa["state"].keys() == sb["state"].keys()
    for k in sa["state"]:
        ea, eb = sa["state"][k], sb["state"][k]
        assert ea.keys() == eb.keys()
        for n in ea:
            va, vb = ea[n], eb[n]
            assert torch.equal(va, vb) if isinstance(va, torch.Tensor) else va == vb


# ---- threads ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad, exc",
    [(10**6, ValueError), (2**31, ValueError), (10**400, ValueError), (0, ValueError), (True, TypeError)],
)
def test_set_num_threads_bounded(bad, exc):
    before = optkern.get_num_threads()
    with pytest.raises(exc, match=r"^n: "):
        optkern.set_num_threads(bad)
    assert optkern.get_num_threads() == before


def test_set_num_threads_takes_the_cap():
    before = optkern.get_num_threads()
    try:
        optkern.set_num_threads(np.int64(2))
        assert optkern.get_num_threads() == 2
    finally:
        optkern.set_num_threads(before)
    from optkern.threads import MAX_THREADS

    with pytest.raises(ValueError, match=rf"n: must be <= {MAX_THREADS}"):
        optkern.set_num_threads(MAX_THREADS + 1)


@pytest.mark.parametrize(
    "bad, exc",
    [(True, TypeError), (1.7, TypeError), ("2", TypeError), (None, TypeError), ([1], TypeError), (2**31, ValueError)],
)
def test_limit_threads_checks_n_first(bad, exc):
    before = optkern.get_num_threads()
    with pytest.raises(exc, match=r"^n: "), optkern.limit_threads(bad):
        pytest.fail("the block must not run")
    assert optkern.get_num_threads() == before


def test_bench_threads_beyond_the_cap_is_a_usage_error(capsys):
    from optkern.cli import main

    assert main(["bench", "norm", "--quick", "--threads", "99999999999"]) == 2
    assert "--threads: must be <= 4096" in capsys.readouterr().err


# ---- a step that fails in a later group or run writes nothing ---------------------------


def _two_groups(name):
    a, b = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2))
    o = getattr(ot, name)([{"params": [a]}, {"params": [b]}], lr=0.1, **KW.get(name, {}))
    a.grad, b.grad = torch.ones(3), torch.ones(2)
    return a, b, o


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("warm", [0, 2])
@pytest.mark.parametrize(
    "fault, exc, match",
    [
        ("lr", ValueError, r"param_groups\[1\]\['lr'\]"),
        ("strided", ValueError, r"param_groups\[1\]\['params'\]\[0\]\.grad: .*contiguous"),
        ("alias", ValueError, r"param_groups\[1\]\['params'\]\[0\]\.grad shares memory"),
        ("alias_other", ValueError, r"param_groups\[1\]\['params'\]\[0\]\.grad shares memory"),
    ],
)
def test_bad_later_group_writes_nothing(name, warm, fault, exc, match):
    a, b, o = _two_groups(name)
    for _ in range(warm):  # (fresh state, and the cached views of a warm optimizer)
        o.step()
    if fault == "lr":
        o.param_groups[1]["lr"] = -1.0
    elif fault == "strided":
        b.grad = torch.ones(4)[::2]
    elif fault == "alias":
        b.grad = b.data
    else:  # b's grad is a's memory: a is written by the first group's call
        b.grad = a.data[:2]
    before = _snap(o, [a, b])
    with pytest.raises(exc, match=match):
        o.step()
    _same(before, _snap(o, [a, b]))


@pytest.mark.parametrize("name", NAMES)
def test_mixed_dtypes_bad_second_run_writes_nothing(name):
    a = torch.nn.Parameter(torch.ones(3))
    b = torch.nn.Parameter(torch.ones(2, dtype=torch.float64))
    o = getattr(ot, name)([a, b], lr=0.1, **KW.get(name, {}))
    a.grad, b.grad = torch.ones(3), torch.ones(4, dtype=torch.float64)[::2]
    before = _snap(o, [a, b])
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['params'\]\[1\]\.grad: .*contiguous"):
        o.step()
    _same(before, _snap(o, [a, b]))
    b.grad = torch.ones(2, dtype=torch.float64)
    o.step()  # and then it steps
    assert not torch.equal(a.detach(), torch.ones(3))


def test_single_run_alias_named_by_its_place():
    a, b = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    o = ot.Adam([a, b], lr=0.1)
    a.grad, b.grad = torch.ones(3), torch.ones(3)
    o.step()
    b.grad = b.data
    before = _snap(o, [a, b])
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['params'\]\[1\]\.grad shares memory"):
        o.step()
    _same(before, _snap(o, [a, b]))


def test_state_tensor_of_wrong_size_refused_before_any_group_steps():
    a, b, o = _two_groups("Adam")
    o.step()
    o.state[b]["exp_avg"] = torch.zeros(5)
    before = _snap(o, [a, b])
    with pytest.raises(ValueError, match=r"state\[param_groups\[1\]\['params'\]\[0\]\]\['exp_avg'\]"):
        o.step()
    _same(before, _snap(o, [a, b]))


def test_multi_group_steps_match_one_group():
    torch.manual_seed(0)
    ps = [torch.nn.Parameter(torch.randn(5)) for _ in range(4)]
    qs = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    o1 = ot.Adam([{"params": ps[:2]}, {"params": ps[2:]}], lr=0.1)
    o2 = ot.Adam(qs, lr=0.1)
    for _ in range(4):
        for p, q in zip(ps, qs):
            g = torch.randn(5)
            p.grad, q.grad = g.clone(), g.clone()
        o1.step()
        o2.step()
    assert all(torch.equal(p, q) for p, q in zip(ps, qs))


# ---- load_state_dict: checked whole before anything is assigned --------------------------


def _adam_after_one_step():
    a = torch.nn.Parameter(torch.ones(3))
    o = ot.Adam([a], lr=0.1)
    a.grad = torch.ones(3)
    o.step()
    return a, o


@pytest.mark.parametrize(
    "edit, exc, match",
    [
        (lambda sd: sd["param_groups"][0].update(lr=-1.0), ValueError, r"state_dict\['param_groups'\]\[0\]\['lr'\]"),
        (lambda sd: sd["state"][0].update(step="x"), TypeError, r"state_dict\['state'\]\[0\]\['step'\]"),
        (lambda sd: sd["state"][0].update(step=torch.tensor(-1.0)), ValueError, r"\['step'\]"),
        (lambda sd: sd["state"][0].update(step=float("nan")), ValueError, r"\['step'\]"),
        (lambda sd: sd["state"][0].update(exp_avg=torch.ones(5)), ValueError, r"\['exp_avg'\]: expected shape"),
        (lambda sd: sd["state"][0].update(exp_avg=[1.0, 2.0, 3.0]), TypeError, r"\['exp_avg'\]"),
        (lambda sd: sd["state"].update({0: "x"}), TypeError, r"state_dict\['state'\]\[0\]"),
        (lambda sd: sd["param_groups"][0].update(params=[0, 1]), ValueError, r"\['params'\]"),
        (lambda sd: sd["param_groups"].append({"params": []}), ValueError, r"state_dict\['param_groups'\]"),
        (lambda sd: sd.pop("param_groups"), ValueError, r"state_dict"),
    ],
)
def test_load_state_dict_refuses_whole(edit, exc, match):
    a, o = _adam_after_one_step()
    sd = copy.deepcopy(o.state_dict())
    sd["state"][0]["exp_avg"] = torch.full((3,), 7.0)  # (a valid change that must not land)
    edit(sd)
    before = _snap(o, [a])
    with pytest.raises(exc, match=match):
        o.load_state_dict(sd)
    _same(before, _snap(o, [a]))
    o.step()  # still steps


@pytest.mark.parametrize(
    "bad, exc", [(None, TypeError), ({}, ValueError), ({"state": [], "param_groups": []}, TypeError)]
)
def test_load_state_dict_not_a_state_dict(bad, exc):
    a, o = _adam_after_one_step()
    before = _snap(o, [a])
    with pytest.raises(exc, match="state_dict"):
        o.load_state_dict(bad)
    _same(before, _snap(o, [a]))


def test_adagrad_norm_load_refuses_none():
    a = torch.nn.Parameter(torch.ones(3))
    o = ot.AdagradNorm([a])
    with pytest.raises(TypeError, match="state_dict"):
        o.load_state_dict(None)


def test_load_state_dict_still_crosses_with_torch():
    a, o = _adam_after_one_step()
    t = torch.nn.Parameter(a.detach().clone())
    to = torch.optim.Adam([t], lr=0.1)
    to.load_state_dict(o.state_dict())
    o.load_state_dict(to.state_dict())
    assert torch.equal(o.state[a]["exp_avg"], to.state[t]["exp_avg"])


# ---- construction --------------------------------------------------------------------------


def test_duplicate_params_refused():
    a, b = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['params'\]\[1\]: the same tensor as"):
        ot.Adam([a, a])
    with pytest.raises(ValueError, match=r"param_groups\[1\]\['params'\]\[0\]: the same tensor as"):
        ot.Adam([{"params": [a]}, {"params": [a]}])
    o = ot.SGD([a], lr=0.1)
    with pytest.raises(ValueError, match=r"params"):
        o.add_param_group({"params": [b, a]})
    assert len(o.param_groups) == 1


def test_bad_added_group_not_added():
    a, b = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    o = ot.Adam([a], lr=0.1)
    with pytest.raises(ValueError, match="lr"):
        o.add_param_group({"params": [b], "lr": -1.0})
    assert len(o.param_groups) == 1


def test_mixed_and_non_scalar_tensor_betas_refused_at_construction():
    a = torch.nn.Parameter(torch.ones(3))
    with pytest.raises(ValueError, match=r"^betas must be either both floats or both Tensors$"):
        ot.Adam([a], betas=(torch.tensor(0.9), 0.99))  # (as torch.optim.Adam refuses it)
    with pytest.raises(TypeError, match=r"betas"):
        ot.Adam([a], betas=(torch.tensor([0.9, 0.8]), 0.99))


@pytest.mark.parametrize(
    "params, match", [(None, r"^parameters: "), (5, r"^parameters: "), ([np.ones(3)], r"^parameters\[0\]: ")]
)
def test_clip_grad_norm_names_parameters(params, match):
    with pytest.raises(TypeError, match=match):
        ot.clip_grad_norm_(params, 1.0)
    with pytest.raises(TypeError, match=match):
        ot.clip_grad_value_(params, 1.0)


def test_adagrad_norm_load_refuses_bad_b_sq():
    a = torch.nn.Parameter(torch.ones(3))
    o = ot.AdagradNorm([a])
    a.grad = torch.ones(3)
    o.step()
    sd = copy.deepcopy(o.state_dict())
    sd["state"][0]["b_sq"] = torch.tensor([float("nan")])
    before = _snap(o, [a])
    with pytest.raises(ValueError, match=r"state_dict\['state'\]\[0\]\['b_sq'\]"):
        o.load_state_dict(sd)
    _same(before, _snap(o, [a]))
