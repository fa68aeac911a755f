"""``amp.GradScaler.step`` of an optimizer that steps from a closure (defect hunt 42b).

Defect fixed: ``scaler.step(lbfgs, grads)`` (L-BFGS, Newton-CG, SAM, or a DistributedOptimizer of
one) unscaled ``grads`` in place, recorded the optimizer as unscaled, and only then did the
optimizer's step refuse the list as a closure ("closure: expected a callable ..." -- an argument
``step`` has not): a refused call had written the caller's grads. Such an optimizer evaluates its
loss and grads itself, several times a step; torch's GradScaler refuses closures ("Closure use is
not currently supported if GradScaler is enabled."). Now ``step`` refuses it first, a TypeError
naming ``optimizer``, nothing written; a disabled scaler still hands the call to the optimizer.
"""

import numpy as np
import pytest

from optkern import amp, hessian, optim


def _closure_optimizers():
    p = np.zeros(3, np.float32)
    yield "LBFGS", optim.LBFGS([p])
    yield "NewtonCG", optim.NewtonCG([p], hessian.as_operator(np.eye(3, dtype=np.float32)))
    yield "SAM", optim.SAM(optim.SGD([p], lr=0.1))


@pytest.mark.parametrize("which", ["LBFGS", "NewtonCG", "SAM"])
def test_step_of_a_closure_optimizer_is_refused_before_the_grads_are_written(which):
    opt = dict(_closure_optimizers())[which]
    scaler = amp.GradScaler(init_scale=4.0)
    g = np.full(3, 4.0, np.float32)
    with pytest.raises(TypeError, match=f"^optimizer: {which} steps from a closure"):
        scaler.step(opt, [g])
    np.testing.assert_array_equal(g, np.full(3, 4.0, np.float32))  # (was unscaled to 1)
    assert not scaler._iteration  # (nothing recorded: update() has no step to count)
    with pytest.raises(RuntimeError, match="no inf checks"):
        scaler.update()


def test_step_of_a_distributed_closure_optimizer_is_refused_before_the_grads_are_written():
    pytest.importorskip("mpi4py")
    from optkern.distributed import Communicator, DistributedOptimizer

    p = np.zeros(3, np.float32)
    opt = DistributedOptimizer(optim.LBFGS([p]), Communicator(backend="mpi"))
    scaler = amp.GradScaler(init_scale=4.0)
    g = np.full(3, 4.0, np.float32)
    with pytest.raises(TypeError, match="^optimizer: LBFGS steps from a closure"):
        scaler.step(opt, [g])
    np.testing.assert_array_equal(g, np.full(3, 4.0, np.float32))
    assert not scaler._iteration


def test_a_disabled_scaler_hands_the_closure_to_the_optimizer():
    # (torch's disabled step is the optimizer's own: a closure optimizer steps as without a scaler)
    p = np.full(2, 3.0)
    opt = optim.LBFGS([p], max_iter=1)
    scaler = amp.GradScaler(enabled=False)
    loss = scaler.step(opt, lambda: (float(p @ p), [2 * p]))
    assert loss == 18.0
    assert not np.array_equal(p, np.full(2, 3.0))
