"""Bad input to optkern.optim, optkern.functional and optkern.distributed: a TypeError/ValueError
naming the argument, raised before anything is written (params, grads and state unchanged).

The distributed checks run under ``mpiexec`` (tests/mpi/bad_input_checks.py, on 1 and 2 ranks).
"""

from __future__ import annotations

import copy
import importlib.util
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest

import optkern.functional as F
import optkern.optim as O

FIRST_ORDER = ["SGD", "Adagrad", "AdagradNorm", "RMSprop", "Adadelta", "Adam", "AdamW", "NAdam"]


def _two_groups(name, dtype=np.float32):
    rng = np.random.default_rng(0)
    params = [rng.standard_normal(3).astype(dtype), rng.standard_normal(2).astype(dtype)]
    opt = getattr(O, name)([{"params": [params[0]]}, {"params": [params[1]]}], lr=0.1)
    grads = [rng.standard_normal(3).astype(dtype), rng.standard_normal(2).astype(dtype)]
    opt.step(grads)  # state exists: a refused step must leave it alone too
    return params, grads, opt


def _snap(*xs) -> bytes:
    """Copies of arrays and of an optimizer's state (read from its runs: ``state_dict()`` reads the
    groups, which some tests spoil)."""
    out = []
    for x in xs:
        if isinstance(x, O.Optimizer):
            x = [(r.index, r.step, r.state, r.extra) for runs in x._runs for r in runs]
        out.append(copy.deepcopy(x))
    return pickle.dumps(out)


# ---- 1. a group's params edited between steps ------------------------------------------------


@pytest.mark.parametrize("name", FIRST_ORDER)
@pytest.mark.parametrize(
    "edit,exc,msg",
    [
        (
            lambda o: o.param_groups[1]["params"].append(np.ones(4, np.float32)),
            ValueError,
            r"param_groups\[1\]\['params'\]",
        ),
        (lambda o: o.param_groups[1]["params"].pop(), ValueError, r"param_groups\[1\]\['params'\]"),
        (lambda o: o.param_groups.pop(), ValueError, r"^param_groups: expected the 2 groups"),
        (
            lambda o: o.param_groups.append({"params": [], "lr": 0.1}),
            ValueError,
            r"^param_groups: expected the 2 groups",
        ),
        (lambda o: o.param_groups[1].pop("params"), ValueError, r"^param_groups\[1\]: missing 'params'"),
        (
            lambda o: o.param_groups[1].__setitem__("params", [np.ones(2, np.float32)]),
            ValueError,
            r"^param_groups\[1\]\['params'\]: expected the group's arrays",
        ),
        (lambda o: o.param_groups.__setitem__(1, [1]), TypeError, r"^param_groups\[1\]: expected a dict"),
        (
            lambda o: o.param_groups[1].__setitem__("params", tuple(o.param_groups[1]["params"])),
            TypeError,
            r"^param_groups\[1\]\['params'\]: expected a list",
        ),
    ],
    ids=["appended", "emptied", "group_popped", "group_appended", "params_deleted", "new_list", "not_a_dict", "tuple"],
)
def test_group_edited_between_steps_is_refused_before_any_write(name, edit, exc, msg):
    params, _, opt = _two_groups(name)
    edit(opt)
    grads = [np.ones(3, np.float32), np.ones(2, np.float32)]
    before = _snap(params, grads, opt)
    with pytest.raises(exc, match=msg):
        opt.step(grads)
    with pytest.raises(exc, match=msg):
        opt.step(grads + [np.ones(4, np.float32)])
    assert _snap(params, grads, opt) == before


def test_group_edited_is_refused_by_closure_step_and_loads():
    params, grads, opt = _two_groups("Adam")
    sd = opt.state_dict()
    calls = []
    opt.param_groups[0]["params"].append(np.ones(4, np.float32))
    before = _snap(params, opt)
    with pytest.raises(ValueError, match=r"^param_groups\[0\]\['params'\]"):
        opt.step(closure=lambda: calls.append(1) or (0.0, grads))
    assert not calls  # refused before the closure's forward/backward
    with pytest.raises(ValueError, match=r"^param_groups\[0\]\['params'\]"):
        opt.load_state_dict(sd)
    with pytest.raises(ValueError, match=r"^param_groups\[0\]\['params'\]"):
        opt.add_param_group({"params": [np.ones(5, np.float32)]})
    assert _snap(params, opt) == before and len(opt.param_groups) == 2
    opt.param_groups[0]["params"].pop()
    opt.step(grads)  # as added again: steps


def test_group_list_with_the_same_arrays_and_in_place_replacement_still_step():
    params, grads, opt = _two_groups("SGD")
    opt.param_groups[0]["params"] = list(opt.param_groups[0]["params"])  # the same arrays
    opt.step(grads)
    c = np.ones(2, np.float32)
    opt.param_groups[1]["params"][0] = c  # replaced in the group's own list: that array steps
    opt.step([np.zeros(3, np.float32), np.ones(2, np.float32)])
    assert np.allclose(c, 0.9)


@pytest.mark.parametrize("name", FIRST_ORDER)
def test_deleted_hyper_parameter_names_it(name):
    params, grads, opt = _two_groups(name)
    del opt.param_groups[1]["lr"]
    before = _snap(params, grads, opt)
    with pytest.raises(ValueError, match=r"^param_groups\[1\]: missing 'lr'"):
        opt.step(grads)
    assert _snap(params, grads, opt) == before


# ---- 6. step(closure=...) and load_state_dict(strict=...) ------------------------------------


@pytest.mark.parametrize("name", FIRST_ORDER)
@pytest.mark.parametrize("closure", [5, "f", [lambda: None]])
def test_closure_not_callable(name, closure):
    params, grads, opt = _two_groups(name)
    before = _snap(params, opt)
    with pytest.raises(TypeError, match=r"^closure: expected a callable"):
        opt.step(closure=closure)
    assert _snap(params, opt) == before


@pytest.mark.parametrize("name", FIRST_ORDER)
@pytest.mark.parametrize("strict", ["no", None, 0, 1, [True]])
def test_load_state_dict_strict_must_be_a_bool(name, strict):
    params, grads, opt = _two_groups(name)
    sd = copy.deepcopy(opt.state_dict())
    for g in sd["param_groups"]:
        g["lr"] = 0.5
    opt.step(grads)
    before = _snap(params, opt, opt.param_groups[0]["lr"])
    with pytest.raises(TypeError, match=r"^strict: expected a bool"):
        opt.load_state_dict(sd, strict=strict)
    with pytest.raises(TypeError, match=r"^strict: expected a bool"):
        opt._check_state_dict(sd, strict=strict)
    assert _snap(params, opt, opt.param_groups[0]["lr"]) == before
    opt.load_state_dict(sd, strict=np.bool_(False))
    assert opt.param_groups[0]["lr"] == 0.5


# ---- 5. functional step counts: bounded like state dicts' (2**53) ------------------------------


def _adam_args():
    return [np.ones(4, np.float32)], [np.ones(4, np.float32)], [np.zeros(4, np.float32)], [np.zeros(4, np.float32)]


FUNCTIONAL = {
    "adam_": lambda step, a: F.adam_(*a, step=step),
    "adamw_": lambda step, a: F.adamw_(*a, step=step),
    "nadam_": lambda step, a: F.nadam_(*a, step=step),
    "adagrad_": lambda step, a: F.adagrad_(a[0], a[1], a[2], step=step),
}


@pytest.mark.parametrize("fn", list(FUNCTIONAL))
@pytest.mark.parametrize("step", [10**400, 2**64, 2**63, 2**53 + 1])
def test_functional_step_beyond_2_53(fn, step):
    args = _adam_args()
    before = _snap(args)
    with pytest.raises(ValueError, match=r"^step: must be <= 9007199254740992"):
        FUNCTIONAL[fn](step, args)
    assert _snap(args) == before


@pytest.mark.parametrize("fn", list(FUNCTIONAL))
def test_functional_step_2_53_is_what_a_state_dict_may_hold(fn):
    FUNCTIONAL[fn](2**53, _adam_args())
    p = [np.ones(4, np.float32)]
    opt = O.Adam(p, lr=0.1)
    opt.step([np.ones(4, np.float32)])
    sd = opt.state_dict()
    sd["state"][0]["step"] = 2**53
    opt.load_state_dict(sd)
    sd["state"][0]["step"] = 2**53 + 1
    with pytest.raises(ValueError, match=r"step"):
        opt.load_state_dict(sd)


# ---- the wrapped optimizer's precheck (used by DistributedOptimizer) ---------------------------


@pytest.mark.parametrize("name", FIRST_ORDER)
def test_check_step_raises_what_step_would_and_writes_nothing(name):
    params, grads, opt = _two_groups(name)
    before = _snap(params, grads, opt)
    opt._check_step(grads)  # fine: nothing happens
    # (two groups: the param named by its group and place, hunt 51f; one group keeps params[i])
    with pytest.raises(ValueError, match=r"^grads\[0\] shares memory with param_groups\[0\]\['params'\]\[0\]"):
        opt._check_step(params)
    one = getattr(O, name)([params[0]], lr=0.1)  # one native call: step checks natively, _check_step here
    with pytest.raises(ValueError, match=r"^grads\[0\] shares memory with params\[0\]"):
        one._check_step([params[0]])
    opt.param_groups[0]["lr"] = -1.0
    with pytest.raises(ValueError, match=r"^param_groups\[0\]\['lr'\]"):
        opt._check_step(grads)
    assert _snap(params, grads, opt) == before


# ---- 2-4. optkern.distributed under MPI -----------------------------------------------------


def _launch(n: int):
    if importlib.util.find_spec("mpi4py") is None:
        pytest.skip("mpi4py is not installed (pip install 'optkern[mpi]')")
    exe = shutil.which("mpiexec")
    if exe is None:
        pytest.skip("mpiexec is not on PATH (pip install mpich)")
    import optkern

    env = dict(os.environ)
    src = os.path.dirname(os.path.dirname(os.path.abspath(optkern.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([src] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["OMP_NUM_THREADS"] = "1"
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mpi", "bad_input_checks.py")
    cmd = [exe, "-n", str(n), sys.executable, "-m", "mpi4py", script]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, check=False)


@pytest.mark.spawns
@pytest.mark.parametrize("n", [1, 2])
def test_distributed_bad_input(n):
    """DistributedOptimizer checks the wrapped step before it scales/reduces the grads; bucket_mb /
    grad_weight beyond float range; ShardedOptimizer refuses repeated or overlapping params, bad
    AdaGrad-Norm hyper-parameters and malformed shards; allreduce's ``ordered`` must be a bool."""
    res = _launch(n)
    out = res.stdout + res.stderr
    assert res.returncode == 0, f"exit {res.returncode}\n{out[-6000:]}"
    assert f"bad_input: 6 checks passed on {n}" in res.stdout, out[-6000:]
