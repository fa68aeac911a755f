"""GradScaler against torch.amp.GradScaler where they parted: a scale that backed off to 0 (its
state_dict did not load back), a user optimizer over torch tensors (its float32 grads refused as
not torch.float32), a 0-d float16 / bfloat16 torch loss (scaled in float16: inf)."""

import numpy as np
import pytest

from optkern.amp import GradScaler

torch = pytest.importorskip("torch")


class PlainOptimizer:
    """A user's optimizer: param_groups of dicts and step(grads), nothing of optkern's."""

    def __init__(self, params):
        self.param_groups = [{"params": params}]
        self.seen = None

    def step(self, grads):
        self.seen = [torch.as_tensor(g).numpy().copy() for g in grads]
        return "stepped"


def _backed_off_to_zero():
    """An optkern and a torch scaler after 170 non-finite steps from 2**16: torch's scale 0, ours
    the smallest scale whose unscale factor is finite (tests/test_hunt38b_amp_floor.py)."""
    ours, theirs = GradScaler(), torch.amp.GradScaler("cpu")
    opt = PlainOptimizer([np.zeros(1, np.float32)])
    tp = torch.nn.Parameter(torch.zeros(1))
    topt = torch.optim.SGD([tp], lr=0.0)
    for _ in range(170):
        ours.step(opt, [np.array([np.inf], np.float32)])
        ours.update()
        theirs.scale(torch.tensor(1.0))
        tp.grad = torch.tensor([np.inf])
        theirs.step(topt)
        theirs.update()
    return ours, theirs


def test_a_scale_backed_off_to_zero_loads_back():
    ours, theirs = _backed_off_to_zero()
    assert theirs.get_scale() == 0.0 and ours.get_scale() == np.float32(2.0**-128 * (1 + 2.0**-21))
    for state in (ours.state_dict(), theirs.state_dict()):  # (torch's 0 loads as our floor)
        other = GradScaler(init_scale=8.0)
        other.load_state_dict(state)
        assert other.state_dict() == ours.state_dict()
    # (0 only: a negative scale is still refused, and 0 as init_scale)
    with pytest.raises(ValueError, match=r"state_dict\['scale'\]"):
        GradScaler().load_state_dict({**ours.state_dict(), "scale": -1e-45})
    with pytest.raises(ValueError, match="init_scale"):
        GradScaler(init_scale=0.0)


def test_user_optimizer_over_torch_tensors_is_unscaled_and_stepped():
    params = [torch.zeros(3), torch.zeros(2, requires_grad=True)]
    opt = PlainOptimizer(params)
    scaler = GradScaler(init_scale=4.0)
    grads = [torch.full((3,), 8.0), torch.full((2,), 2.0)]
    assert scaler.step(opt, grads) == "stepped"
    np.testing.assert_array_equal(opt.seen[0], [2.0, 2.0, 2.0])
    np.testing.assert_array_equal(opt.seen[1], [0.5, 0.5])
    scaler.update()
    # still checked against the params: a float64 grad for a float32 param is refused by name
    with pytest.raises(TypeError, match=r"grads\[0\]: expected float32, got float64"):
        scaler.unscale_(opt, [torch.zeros(3, dtype=torch.float64), torch.zeros(2)])


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_a_half_torch_loss_is_scaled_as_torch_scales_it(dtype):
    for loss in (torch.tensor(1.5, dtype=getattr(torch, dtype)), torch.tensor([1.5, 3.0], dtype=getattr(torch, dtype))):
        ours = GradScaler().scale(loss)
        theirs = torch.amp.GradScaler("cpu").scale(loss)
        assert ours.dtype == theirs.dtype
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    # the product stays in autograd's graph (torch's scaled loss is differentiated)
    w = torch.tensor(3.0, requires_grad=True)
    GradScaler(init_scale=8.0).scale((w * w).to(getattr(torch, dtype))).backward()
    assert w.grad.item() == 48.0


def test_unscale_errors_name_the_grad_by_its_place_after_none_entries():
    a = np.ones(4, np.float32)
    strided = np.ones(6, np.float32)[::2]
    with pytest.raises(ValueError, match=r"^grads\[2\]: array must be C-contiguous"):
        GradScaler().unscale_([a, None, strided])
    with pytest.raises(ValueError, match=r"^grads\[2\] shares memory with grads\[1\]"):
        GradScaler().unscale_([None, a, a])
    np.testing.assert_array_equal(a, 1.0)  # (refused before anything was unscaled)


def test_a_low_precision_step_names_a_half_grad_by_its_place_in_grads():
    from optkern import optim

    ml_dtypes = pytest.importorskip("ml_dtypes")
    params = [np.zeros(4, ml_dtypes.bfloat16), np.zeros(4, np.float16), np.zeros(3, np.float16)]
    opt = optim.Adam(params, lr=1e-3, master_weights=True)
    grads = [np.ones(4, ml_dtypes.bfloat16), np.ones(4, np.float16), np.ones(6, np.float16)[::2]]
    scaler = GradScaler(init_scale=8.0)
    with pytest.raises(ValueError, match=r"^grads\[2\]: array must be C-contiguous"):
        scaler.step(opt, grads)
    grads[2] = np.ones(3, np.float16)  # (the refused step changed nothing: the same step runs)
    scaler.step(opt, grads)
    scaler.update()
    assert opt.state_dict()["state"][2]["step"] == 1


def test_grads_from_a_generator_are_unscaled_once_and_stepped():
    from optkern import optim

    # unscale_(optimizer, generator): the check read the generator and the unscale got nothing
    # (found False, grads left scaled: the step moved the param by 8, not 2)
    p = [np.zeros(2, np.float32)]
    opt, scaler = optim.SGD(p, lr=1.0), GradScaler(init_scale=4.0)
    g = [np.full(2, 8.0, np.float32)]
    assert scaler.unscale_(opt, (x for x in g)) is False
    np.testing.assert_array_equal(g[0], 2.0)
    scaler.step(opt, g)
    np.testing.assert_array_equal(p[0], -2.0)
    # step(optimizer, generator): refused as "0 arrays", and a user's optimizer stepped on none
    p = [np.zeros(2, np.float32)]
    opt, scaler = optim.SGD(p, lr=1.0), GradScaler(init_scale=4.0)
    scaler.step(opt, (x for x in [np.full(2, 8.0, np.float32)]))
    np.testing.assert_array_equal(p[0], -2.0)
    user = PlainOptimizer([np.zeros(2, np.float32)])
    GradScaler(init_scale=4.0).step(user, (x for x in [np.full(2, 8.0, np.float32)]))
    np.testing.assert_array_equal(user.seen, [[2.0, 2.0]])
