"""Hunt 50d: loss scaling, schedules, clipping, SWA / SWALP."""

import numpy as np
import pytest

from optkern.amp import GradScaler


class _PlainOptimizer:
    """An optimizer that is not optkern's: ``param_groups`` of arrays and ``step(grads)``."""

    def __init__(self, params):
        self.param_groups = [{"params": list(params[:1]), "lr": 0.5}, {"params": list(params[1:]), "lr": 0.5}]
        self.steps = 0

    def step(self, grads):
        self.steps += 1
        for p, g in zip([p for grp in self.param_groups for p in grp["params"]], grads):
            if g is not None:
                p -= 0.5 * g


def _plain(n=3):
    params = [np.full(5, 1.0 + k, np.float32) for k in range(n)]
    return _PlainOptimizer(params), params


@pytest.mark.parametrize("call", ["step", "unscale_"])
@pytest.mark.parametrize("where", ["itself", "view"])
def test_grad_sharing_memory_with_a_plain_optimizers_param_is_refused_before_writing(call, where):
    # optkern's optimizers refuse a grad that is (or overlaps) one of their params before the scaler
    # unscales it in place; an optimizer of another kind was checked for kind, dtype and shape only,
    # and the unscale divided its param by the scale (then its step moved it by that), silently
    opt, params = _plain()
    grads = [np.full(5, 4.0, np.float32) for _ in params]
    grads[2] = params[1] if where == "itself" else params[1][:]
    before = [p.copy() for p in params]
    scaler = GradScaler(init_scale=4.0)
    with pytest.raises(ValueError, match=r"^grads\[2\] shares memory with params\[1\] "):
        getattr(scaler, call)(opt, grads)
    for p, b in zip(params, before):
        np.testing.assert_array_equal(p, b)
    assert opt.steps == 0
    scaler2 = GradScaler(init_scale=4.0)  # (the refused call recorded nothing: update() has no flag)
    with pytest.raises(RuntimeError, match="no inf checks"):
        scaler2.update()


def test_plain_optimizer_with_its_own_grads_still_steps():
    opt, params = _plain()
    grads = [np.full(5, 4.0, np.float32) for _ in params]
    grads[1] = None  # (a param without a grad: skipped)
    scaler = GradScaler(init_scale=4.0)
    scaler.step(opt, grads)
    scaler.update()
    assert opt.steps == 1
    np.testing.assert_array_equal(grads[0], np.full(5, 1.0, np.float32))
    np.testing.assert_array_equal(params[0], np.full(5, 0.5, np.float32))


def test_plain_optimizer_params_sharing_memory_with_each_other_are_not_refused():
    # (two params over one buffer are the optimizer's business, not the scaler's: it writes only grads)
    buf = np.ones(10, np.float32)
    opt = _PlainOptimizer([buf[:5], buf[5:], buf])
    grads = [np.full(5, 2.0, np.float32), np.full(5, 2.0, np.float32), np.full(10, 2.0, np.float32)]
    GradScaler(init_scale=2.0).unscale_(opt, grads)
    np.testing.assert_array_equal(grads[2], np.ones(10, np.float32))
