"""A reviewer's findings on the 50th session's merged Python changes, each fixed at its root.

- ``from_hvp(into=)``: the caller's ``out`` was NaN-filled before the user's ``into`` ran, so an
  ``into`` that raised (or was refused: it returned its product) left ``out`` all NaN -- written
  before an error, and a torch ``out`` changed without a version bump.
- ``optkern.torch.AdagradNorm.load_state_dict``: an entry without ``b_sq`` had ``float(step)`` read
  before ``step`` was checked: a bad step raised an unnamed ValueError.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from optkern import hessian as H
from optkern.torch import AdagradNorm


def _raising_into(v, out):
    raise RuntimeError("into failed")


def _returning_into(d):
    return lambda v, out: d * v  # (refused: the product returned, not written)


def _half_into(d):
    def into(v, out):
        out[: len(out) // 2] = (d * v)[: len(out) // 2]

    return into


@pytest.mark.parametrize("n", [1, 7, 1023])
@pytest.mark.parametrize("kind", ["raises", "returns", "half"])
def test_a_failed_into_leaves_the_callers_out_as_it_was(n, kind):
    rng = np.random.default_rng(n)
    d = rng.standard_normal(n) + 3.0
    into = {"raises": _raising_into, "returns": _returning_into(d), "half": _half_into(d)}[kind]
    op = H.from_hvp(lambda v: d * v, n, np.float64, into=into)
    before = rng.standard_normal(n)
    out = before.copy()
    err = RuntimeError if kind == "raises" else (TypeError if kind == "returns" else ValueError)
    with pytest.raises(err):
        op.matvec(rng.standard_normal(n), out=out)
    np.testing.assert_array_equal(out, before)
    assert op.num_matvecs == 0


def test_a_failed_into_leaves_a_torch_out_and_its_version_as_they_were():
    d = np.arange(1.0, 8.0)
    op = H.from_hvp(lambda v: d * v, 7, np.float64, into=_raising_into)
    out = torch.full((7,), 5.0, dtype=torch.float64)
    version = out._version
    with pytest.raises(RuntimeError, match="into failed"):
        op.matvec(np.ones(7), out=out)
    assert torch.equal(out, torch.full((7,), 5.0, dtype=torch.float64))
    assert out._version == version


@pytest.mark.parametrize("n", [1, 7, 1023])
def test_a_working_into_still_writes_the_callers_out(n):
    rng = np.random.default_rng(n + 1)
    d = rng.standard_normal(n)
    op = H.from_hvp(lambda v: d * v, n, np.float64, into=lambda v, out: np.multiply(d, v, out=out))
    v = rng.standard_normal(n)
    out = np.full(n, 7.0)
    r = op.matvec(v, out=out)
    assert r is out
    np.testing.assert_array_equal(out, d * v)  # (one multiply: exact)
    t = torch.zeros(n, dtype=torch.float64)
    version = t._version
    assert op.matvec(v, out=t) is t
    np.testing.assert_array_equal(t.numpy(), d * v)
    assert t._version > version


def _agn_saved():
    p = torch.nn.Parameter(torch.ones(3))
    opt = AdagradNorm([p], lr=0.1)
    p.grad = torch.ones(3)
    opt.step()
    return opt, opt.state_dict()


@pytest.mark.parametrize("bad", ["x", torch.ones(2), [1], -1.0, 1.5, float("nan")])
def test_agn_load_names_a_bad_step_in_an_entry_without_b_sq(bad):
    opt, sd = _agn_saved()
    entry = {k: v for k, v in sd["state"][0].items() if k != "b_sq"}
    entry["step"] = bad
    with pytest.raises((TypeError, ValueError), match=r"state_dict\['state'\]\[0\]\['step'\]"):
        opt.load_state_dict({"state": {0: entry}, "param_groups": sd["param_groups"]})


def test_agn_load_still_refuses_a_stepped_entry_without_b_sq():
    opt, sd = _agn_saved()
    entry = {k: v for k, v in sd["state"][0].items() if k != "b_sq"}
    with pytest.raises(ValueError, match=r"state_dict\['state'\]\[0\]: missing 'b_sq'"):
        opt.load_state_dict({"state": {0: entry}, "param_groups": sd["param_groups"]})


@pytest.mark.parametrize("cls", ["LBFGS", "NewtonCG"])
def test_a_param_replaced_in_place_is_not_kept_alive_by_the_optimizer(cls):
    import gc
    import weakref

    from optkern import optim as O

    rng = np.random.default_rng(5101)
    ps = [rng.standard_normal(7), rng.standard_normal(3)]

    def closure():
        return float(sum((p * p).sum() for p in ps)), [2 * p for p in ps]

    args = () if cls == "LBFGS" else (H.from_hvp(lambda v: 2.0 * v, 10, np.float64),)
    opt = getattr(O, cls)(ps, *args)
    opt.step(closure)
    old = weakref.ref(ps[1])
    opt.param_groups[0]["params"][1] = ps[1] = rng.standard_normal(3)
    gc.collect()
    assert old() is None  # (before: the tuple of the params seen last held it until the next step)
    before = ps[1].copy()
    opt.step(closure)
    assert not np.array_equal(ps[1], before)


def test_an_owning_array_freed_and_its_address_given_to_another_counts_as_replaced():
    import weakref

    from optkern.optim import _lbfgs_state as L

    class Gone:
        pass

    g = Gone()
    dead = weakref.ref(g)
    del g
    a = np.ones(3)
    address = a.ctypes.data
    now = L._seen(a, None)
    assert not L._other(now, (weakref.ref(a), address, True))  # (the same array)
    assert not L._other(now, (dead, address, False))  # (a view gone: another view of the same memory)
    assert L._other(now, (dead, address, True))  # (its owner freed: a new array was given its memory)
    assert L._other(now, (weakref.ref(a), address + 8, True))  # (another address)


_HYPER_VALUES = [
    ("lr", torch.tensor(0.25), 0.25),
    ("lr", torch.tensor([0.5], dtype=torch.float64), 0.5),
    ("lr", torch.tensor(-0.0).neg(), 0.0),  # (a neg-bit view: its shown value)
    ("betas", torch.tensor([0.8, 0.95]), (pytest.approx(0.8), pytest.approx(0.95))),
    ("betas", (torch.tensor(0.8, dtype=torch.float64), 0.9), (0.8, 0.9)),
    ("weight_decay", 0.01, 0.01),
]


@pytest.mark.parametrize("key,given,read", _HYPER_VALUES)
def test_optims_loader_and_optkern_torch_read_a_tensor_hyper_parameter_alike(key, given, read):
    from optkern.optim._state_checks import saved_values
    from optkern.torch._host_values import host_group

    loaded = saved_values({"params": [0], key: given}, "g")[key]
    stepped = host_group({"params": [], "lr": torch.tensor(1.0), key: given}, "g")[key]
    assert loaded == read and stepped == read
    assert type(loaded) is type(stepped)


@pytest.mark.parametrize(
    "key,given", [("lr", torch.empty((), device="meta")), ("betas", torch.empty(2, device="meta"))]
)
def test_a_meta_tensor_hyper_parameter_is_refused_by_name_by_both_readers(key, given):
    from optkern.optim._state_checks import saved_values
    from optkern.torch._host_values import host_group

    with pytest.raises(TypeError, match=rf"^g\['{key}'\]: is a tensor on the meta device"):
        saved_values({"params": [0], key: given}, "g")
    with pytest.raises(TypeError, match=rf"^g\['{key}'\]: is a tensor on the meta device"):
        host_group({"params": [], key: given}, "g")


class _Raising:
    def __init__(self, err):
        self.err = err

    def state_dict(self):
        raise self.err


def test_a_failing_state_dict_is_named_not_taken_for_another_state():
    from optkern.distributed.data_parallel import _state_digest

    for err in (RuntimeError("perturbed"), MemoryError("no room")):
        with pytest.raises(ValueError, match=rf"^optimizer.state_dict\(\): raised {type(err).__name__}: "):
            _state_digest(_Raising(err))
    with pytest.raises(TypeError, match="its own"):  # (reported on every rank by the set-up as it is)
        _state_digest(_Raising(TypeError("its own")))
    assert _state_digest(object()) is None  # (no state_dict: nothing compared)


def test_lbfgs_state_is_digested_over_its_own_vectors_not_copies():
    from optkern import optim as O
    from optkern.distributed.agreement import state_digest
    from optkern.distributed.data_parallel import _state_digest

    rng = np.random.default_rng(5102)
    ps = [rng.standard_normal(1023)]
    opt = O.LBFGS(ps, history_size=3)
    for _ in range(4):
        opt.step(lambda: (float((ps[0] ** 2).sum()), [2 * ps[0]]))
    live = opt._live_state_dict()["state"][0]
    assert live["d"] is opt._d and all(a is b for a, b in zip(live["old_dirs"], opt._Y))
    full = opt.state_dict()
    assert full["state"][0]["d"] is not opt._d  # (state_dict() copies: the digest no longer takes it)
    assert _state_digest(opt) == state_digest({"state": full["state"]})


@pytest.mark.spawns
def test_a_rank_whose_state_dict_fails_raises_on_every_rank_naming_it():
    pytest.importorskip("mpi4py")
    from mpi_cases import run_case

    run_case(__file__, "dp_failing_state", 2, timeout=60)


def case_dp_failing_state(comm) -> None:
    """Rank 1's SAM is between its two steps (its state_dict() raises RuntimeError): it was taken for
    "rank 1 holds another state"; now every rank raises the ValueError naming state_dict()."""
    from mpi_cases import raises
    from optkern import optim
    from optkern.distributed import DistributedOptimizer

    p = [np.linspace(-1.0, 1.0, 7)]
    opt = optim.SAM(optim.SGD(p, lr=0.1), rho=0.05)
    if comm.rank == 1:
        opt.first_step([np.ones(7)])
    said = "optimizer.state_dict(): raised RuntimeError: state_dict: the params are perturbed"
    with raises(ValueError, said if comm.rank == 1 else said[:30]):
        DistributedOptimizer(opt, comm)


@pytest.mark.spawns
def test_a_rank_arriving_after_a_refusals_wait_is_told_and_neither_hangs():
    pytest.importorskip("mpi4py")
    from mpi_cases import run_case

    run_case(__file__, "late_rank", 2, timeout=60)


def case_late_rank(comm) -> None:
    """Rank 1 refuses its comm and gives up waiting (``no_comm.WAIT_S``, shortened) before rank 0
    comes to its first exchange; rank 1 then retries with a good one. Rank 0's header met rank 1's
    refusal request, left pending, and waited in the allgather that follows; rank 1's retry waited in
    a new header: both hung. Now rank 1's retry completes the pending header first: both raise, then
    go on together."""
    import time

    from mpi_cases import raises
    from optkern.distributed import Communicator, no_comm

    own = "comm: expected an mpi4py.MPI.Comm or a Communicator, got str"
    wait, no_comm.WAIT_S = no_comm.WAIT_S, 0.5
    try:
        if comm.rank == 1:
            with raises(TypeError, own):
                Communicator("x")
            with raises(TypeError, own + " (this rank's refusal, reported after no_comm.WAIT_S seconds"):
                Communicator()
        else:
            time.sleep(2.5)  # (later than rank 1's wait)
            with raises(TypeError, own + " (on rank 1"):
                Communicator()
    finally:
        no_comm.WAIT_S = wait
    x = np.full(5, comm.rank + 1.0)
    Communicator(backend="mpi").allreduce(x)
    np.testing.assert_array_equal(x, np.full(5, 3.0))


if __name__ == "__main__":
    import sys

    from mpi_cases import run_here

    run_here(globals(), sys.argv[1:])
