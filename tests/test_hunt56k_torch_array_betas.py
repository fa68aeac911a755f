"""optkern.torch's Adam, AdamW and NAdam with ``betas`` as a 1-D NumPy array
(``np.array([0.9, 0.999])``), which torch.optim takes: its for-loop step unpacks ``beta1, beta2 =
betas`` and computes with the NumPy scalars (float64 ones are Python floats), so a drop-in must step
with it bit for bit. It was refused at the step ("betas: expected a pair of numbers, got array(...)").
What torch refuses stays refused, by name: Adam's constructor takes no float32 pair nor a tuple of
0-d arrays ("betas must be either both floats or both Tensors")."""

from __future__ import annotations

import numpy as np
import pytest

import optkern.torch as okt

torch = pytest.importorskip("torch")

from torch_ieee_sqrt import ieee_sqrt, run_seeded  # noqa: E402 (after the torch skip)

SIZES = (0, 1, 7, 1023)
HYPER = {
    "Adam": dict(amsgrad=True, weight_decay=0.1),
    "AdamW": dict(weight_decay=0.1),
    "NAdam": dict(weight_decay=0.1, momentum_decay=0.01),
}
F64 = np.array([0.8, 0.99])


def _run(lib, name, dtype, betas, steps=20, set_later=False):
    hyper = dict(lr=1e-2, **HYPER[name])
    return run_seeded(lib, name, dtype, SIZES, hyper, "betas", betas, steps, set_later, placeholder=(0.5, 0.5))


def _same(name, dtype, betas, set_later=False):
    theirs = _run(torch.optim, name, dtype, betas, set_later=set_later)
    ours = _run(okt, name, dtype, betas, set_later=set_later)
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)


@pytest.mark.parametrize("set_later", [False, True], ids=["constructor", "group"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", sorted(HYPER))
def test_a_float64_array_of_betas_steps_as_torch_optim(name, dtype, set_later):
    _same(name, dtype, F64, set_later)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_nadam_takes_a_float32_array_of_betas_as_torch_optim(dtype):
    _same("NAdam", dtype, F64.astype(np.float32))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", sorted(HYPER))
def test_a_tuple_of_0d_tensors_still_steps_as_torch_optim(name, dtype):
    _same(name, dtype, (torch.tensor(0.8, dtype=torch.float64), torch.tensor(0.99, dtype=torch.float64)))


def test_the_group_keeps_the_users_array():
    opt = okt.Adam([torch.zeros(3, requires_grad=True)], betas=F64)
    assert opt.param_groups[0]["betas"] is F64


@pytest.mark.parametrize("name", ["Adam", "AdamW"])
@pytest.mark.parametrize(
    "betas", [F64.astype(np.float32), (np.array(0.8), np.array(0.99))], ids=["float32_array", "0d_arrays"]
)
def test_adams_constructor_refuses_what_torchs_refuses(name, betas):
    with pytest.raises(ValueError, match="betas must be either both floats or both Tensors"):
        getattr(torch.optim, name)([torch.zeros(3, requires_grad=True)], betas=betas)
    with pytest.raises(ValueError, match="betas"):
        getattr(okt, name)([torch.zeros(3, requires_grad=True)], betas=betas)


@pytest.mark.parametrize("name", sorted(HYPER))
@pytest.mark.parametrize(
    "bad",
    [
        np.array([0.9, 0.99, 0.999]),
        np.array([[0.9, 0.99]]),
        np.array([1, 0]),
        np.array([0.9, 1.0]),
        np.array([0.9j, 0]),
        (np.array(0.8), np.array(0.99)),
    ],
    ids=["three", "2d", "int", "beta2_1", "complex", "0d_arrays"],
)
def test_a_bad_array_of_betas_is_refused_by_name_before_anything_changes(name, bad):
    p = torch.ones(5, requires_grad=True)
    opt = getattr(okt, name)([p], betas=(0.9, 0.999))
    opt.param_groups[0]["betas"] = bad
    p.grad = torch.ones(5)
    with pytest.raises((TypeError, ValueError), match="betas"):
        opt.step()
    assert torch.equal(p.detach(), torch.ones(5))
    assert not opt.state[p]


def test_nadam_foreach_takes_a_float32_array_of_betas_as_torch_optim():
    # (torch's foreach NAdam takes NumPy scalars; only tensor betas it fails on, which stay refused)
    b = F64.astype(np.float32)
    for lib in (torch.optim, okt):
        p = torch.ones(5, requires_grad=True)
        opt = lib.NAdam([p], betas=b, foreach=True)
        p.grad = torch.ones(5)
        opt.step()
        assert torch.all(p.detach() < 1)


@pytest.mark.parametrize("name", sorted(HYPER))
def test_a_scheduler_drives_beta1_of_an_array_pair_as_for_torch_optim(name):
    # (optkern.schedules.Scheduler refused the array: "index: ... is an ndarray, not a tuple or list";
    # it writes a tuple back, as torch's own schedulers write betas)
    from optkern import schedules

    runs = []
    for lib in (torch.optim, okt):
        gen = torch.Generator().manual_seed(5)
        params = [torch.randn(n, generator=gen, dtype=torch.float64).requires_grad_() for n in SIZES]
        impl = {"foreach": False} if lib is torch.optim else {}
        opt = getattr(lib, name)(params, lr=1e-2, betas=F64.copy(), **HYPER[name], **impl)
        sched = schedules.Scheduler(opt, lambda t: 0.85 + 0.01 * (t % 5), key="betas", index=0)
        for _ in range(10):
            for p in params:
                p.grad = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            with ieee_sqrt():
                opt.step()
            sched.step()
        assert isinstance(opt.param_groups[0]["betas"], tuple) and opt.param_groups[0]["betas"][1] == 0.99
        runs.append([p.detach() for p in params])
    for a, b in zip(*runs):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", sorted(HYPER))
def test_the_numpy_api_steps_with_an_array_pair_as_with_its_floats(name):
    # (optkern.optim had no such gap: pinned, so the two APIs keep taking the same betas)
    from optkern import optim

    runs = []
    for betas in (F64, (0.8, 0.99)):
        rng = np.random.default_rng(56)
        params = [rng.standard_normal(n) for n in SIZES]
        opt = getattr(optim, name)(params, lr=1e-2, betas=betas, **HYPER[name])
        for _ in range(20):
            opt.step([rng.standard_normal(p.shape) for p in params])
        runs.append(params)
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)
