"""optkern.optim (hunt 32): the core optimizers' checks and semantics at their edges.

- A param replaced in its group's own list by an array of another dtype: the group's
  hyper-parameters are checked against the new dtype (the per-group cache of that check kept
  the old dtype's verdict, and an ``lr`` beyond float32 wrote NaN into a float32 param).
- A param replaced in its group's list after the group's runs split (a None grad, a loaded state
  dict) is the one stepped (the runs held lists of their own: the old array went on stepping).
- A param replaced in its group's list by a non-array (None, a list) or an array of a dtype the
  optimizer cannot run is named as ``add_param_group`` names it, before anything is read or
  written (None and lists raised AttributeError from the step's shape checks).
- State arrays loaded from another memory layout (Fortran order, a transpose, torch's channels_last
  state; 8-bit codes too) are copied in C order (copies in the source's layout were refused at
  every later step: ``exp_avgs[0]: array must be C-contiguous``).
- AdaGrad-Norm loads ``b_sq`` given as a one-element array of any shape (optkern.torch's is a
  float64 tensor of shape (1,)), as the state checks accept it (its loader's ``float()`` raised
  NumPy 2's TypeError after ``_check_state_dict`` had passed the dict).
"""

from __future__ import annotations

import numpy as np
import pytest

import optkern.optim as O


def test_param_replaced_by_another_dtype_checks_the_hyper_parameters_again():
    p = np.ones(3)
    opt = O.SGD([p], lr=1e39)  # finite in float64, inf in float32
    opt.step([np.zeros(3)])
    new = np.ones(3, np.float32)
    opt.param_groups[0]["params"][0] = new
    with pytest.raises(ValueError, match=r"^param_groups\[0\]\['lr'\]: 1e\+39 is not finite in float32"):
        opt.step([np.zeros(3, np.float32)])
    np.testing.assert_array_equal(new, 1.0)


def _split_by_a_none_grad(opt, ps):
    opt.step([np.ones_like(ps[0]), None])  # (param 0 has stepped once, param 1 not: two runs)


def _split_by_loading_mixed_steps(opt, ps):
    opt.step([np.ones_like(p) for p in ps])
    sd = opt.state_dict()
    sd["state"][1]["step"] = 5
    opt.load_state_dict(sd)


def _loaded(opt, ps):
    opt.step([np.ones_like(p) for p in ps])
    opt.load_state_dict(opt.state_dict())


REPLACED = [
    (name, hp, before)
    for name, hp in [("SGD", dict(momentum=0.9)), ("Adam", {}), ("AdagradNorm", {})]
    for before in (_split_by_a_none_grad, _split_by_loading_mixed_steps, _loaded)
    if not (name == "AdagradNorm" and before is _split_by_loading_mixed_steps)  # (one step count a group)
]


@pytest.mark.parametrize("name, hp, before", REPLACED, ids=[f"{n}-{b.__name__}" for n, _, b in REPLACED])
def test_a_param_replaced_in_its_groups_list_is_the_one_stepped(name, hp, before):
    """``_check_param_groups``: "a param may be replaced in place by another array". The runs of a
    group split (None grads, a loaded state dict) held lists of their own: the old array went on
    stepping and the new one never moved."""
    ps = [np.zeros(3), np.zeros(4)]
    opt = getattr(O, name)(ps, lr=0.1, **hp)
    before(opt, ps)
    old = ps[0].copy()
    new = np.zeros(3)
    opt.param_groups[0]["params"][0] = new
    opt.step([np.ones(3), np.ones(4)])
    np.testing.assert_array_equal(ps[0], old)  # (no longer a param of the optimizer)
    assert (new < 0).all()
    assert opt.state[new] is not None


def _fortran(a):
    return np.asfortranarray(a)


def _transposed(a):
    return np.ascontiguousarray(a.T).T


def _torch_channels_last(a):
    torch = pytest.importorskip("torch")
    return torch.from_numpy(a.copy()).to(memory_format=torch.channels_last)


@pytest.mark.parametrize("layout", [_fortran, _transposed, _torch_channels_last])
@pytest.mark.parametrize("name, hp", [("Adam", dict(amsgrad=True)), ("SGD", dict(momentum=0.9)), ("RMSprop", {})])
def test_state_loaded_from_another_memory_layout_still_steps(name, hp, layout):
    """A state dict's arrays in another memory layout (a Fortran-ordered array, a transpose, torch's
    channels_last state of a channels_last param) loaded as copies in that layout: every later step
    then refused them (``exp_avgs[0]: array must be C-contiguous``)."""
    shape = (2, 3, 4, 5)
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal(shape)
    grads = [rng.standard_normal(shape) for _ in range(2)]
    ref_p, p = p0.copy(), p0.copy()
    ref, opt = getattr(O, name)([ref_p], lr=0.1, **hp), getattr(O, name)([p], lr=0.1, **hp)
    ref.step([grads[0]])
    sd = ref.state_dict()
    opt.load_state_dict(
        {**sd, "state": {0: {k: layout(v) if isinstance(v, np.ndarray) else v for k, v in sd["state"][0].items()}}}
    )
    np.copyto(p, ref_p)
    ref.step([grads[1]])
    opt.step([grads[1]])
    np.testing.assert_array_equal(p, ref_p)


def test_int8_state_codes_loaded_in_fortran_order_still_step():
    """The same for the 8-bit codes of ``state_dtype="int8"`` (kept as saved, exactly)."""
    rng = np.random.default_rng(1)
    p0 = rng.standard_normal((6, 70)).astype(np.float32)
    grads = [rng.standard_normal(p0.shape).astype(np.float32) for _ in range(2)]
    ref_p, p = p0.copy(), p0.copy()
    ref, opt = (O.Adam([q], lr=0.1, state_dtype="int8") for q in (ref_p, p))
    ref.step([grads[0]])
    sd = ref.state_dict()
    entry = {
        k: np.asfortranarray(v) if isinstance(v, np.ndarray) and v.ndim == 2 else v for k, v in sd["state"][0].items()
    }
    opt.load_state_dict({**sd, "state": {0: entry}})
    np.copyto(p, ref_p)
    ref.step([grads[1]])
    opt.step([grads[1]])
    np.testing.assert_array_equal(p, ref_p)


def _one_element(shape):
    return lambda v: np.full(shape, v)


def _torch_one_element(v):
    torch = pytest.importorskip("torch")
    return torch.tensor([v], dtype=torch.float64)  # (optkern.torch.AdagradNorm's b_sq)


@pytest.mark.parametrize(
    "form", [_one_element((1,)), _one_element((1, 1)), _torch_one_element], ids=["1", "1x1", "torch"]
)
def test_adagrad_norm_loads_b_sq_as_a_one_element_array(form):
    """The state checks accept a per-parameter scalar as a one-element array; AdaGrad-Norm's loader
    then called ``float()`` on it, which NumPy 2 refuses for ndim > 0: a TypeError naming nothing,
    after ``_check_state_dict`` (what ``optkern.load`` checks every target with) had passed it."""
    ref_p, p = np.ones(3), np.ones(3)
    ref, opt = O.AdagradNorm([ref_p], lr=0.1), O.AdagradNorm([p], lr=0.1)
    ref.step([np.arange(3.0)])
    sd = ref.state_dict()
    sd = {**sd, "state": {0: {**sd["state"][0], "b_sq": form(sd["state"][0]["b_sq"])}}}
    opt._check_state_dict(sd)
    opt.load_state_dict(sd)
    np.copyto(p, ref_p)
    ref.step([np.ones(3)])
    opt.step([np.ones(3)])
    np.testing.assert_array_equal(p, ref_p)
    assert opt.state_dict()["state"][0]["b_sq"] == ref.state_dict()["state"][0]["b_sq"]


def test_adagrad_norm_b_sq_of_several_elements_is_named():
    opt = O.AdagradNorm([np.ones(3)], lr=0.1)
    opt.step([np.ones(3)])
    sd = opt.state_dict()
    sd["state"][0]["b_sq"] = np.ones(2)
    with pytest.raises(ValueError, match=r"^state_dict\['state'\]\[0\]\['b_sq'\]: expected a real number"):
        opt.load_state_dict(sd)


@pytest.mark.parametrize(
    "new, error, message",
    [
        (None, TypeError, r"expected a numpy or cupy array, got NoneType"),
        ([1.0, 2.0, 3.0], TypeError, r"expected a numpy or cupy array, got list"),
        (np.ones(3, np.int32), TypeError, r"expected float32 or float64, got int32"),
        (np.ones(3, np.complex64), TypeError, r"expected float32 or float64, got complex64"),
        (np.ones(3, np.float16), TypeError, r"float16 params need master_weights=True"),
    ],
    ids=["None", "list", "int32", "complex64", "float16"],
)
@pytest.mark.parametrize("groups", [1, 2])
def test_a_param_replaced_by_a_non_array_or_another_dtype_is_named(new, error, message, groups):
    """A param replaced in its group's list is checked as ``add_param_group`` checks one, before
    anything is read or written (a None or a list raised AttributeError from the shape checks)."""
    ps = [np.ones(3), np.ones(2)]
    opt = O.Adam([{"params": ps[:1]}, {"params": ps[1:]}] if groups == 2 else ps, lr=0.1)
    opt.step([np.ones(3), np.ones(2)])
    opt.param_groups[0]["params"][0] = new
    before = ps[1].copy()
    with pytest.raises(error, match=r"^param_groups\[0\]\['params'\]\[0\]: " + message):
        opt.step([np.ones(3), np.ones(2)])
    np.testing.assert_array_equal(ps[1], before)
    assert opt.state_dict()["state"][1]["step"] == 1
