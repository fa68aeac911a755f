"""Hunt 35: GradScaler (optkern.amp) and the low-precision optimizer options, as a demanding user."""

import numpy as np
import pytest

from optkern import amp
from optkern.optim import SGD


def _stepped(scaler):
    opt = SGD([np.zeros(1, np.float32)], lr=1.0)
    scaler.step(opt, [np.ones(1, np.float32)])


def test_update_takes_a_torch_tensor_new_scale_as_torch_does():
    # torch's update(new_scale) takes a float or a 1-element tensor; a CPU tensor was refused as
    # "expected a real number"
    torch = pytest.importorskip("torch")
    scaler = amp.GradScaler()
    _stepped(scaler)
    scaler.update(torch.tensor(4.0))
    assert scaler.get_scale() == 4.0
    _stepped(scaler)
    scaler.update(torch.full((1,), 8.0, requires_grad=True))
    assert scaler.get_scale() == 8.0
    _stepped(scaler)
    with pytest.raises(TypeError, match="new_scale"):
        scaler.update(torch.ones(2))
    assert scaler.get_scale() == 8.0
