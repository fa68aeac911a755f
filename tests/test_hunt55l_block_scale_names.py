"""Which state entries are 8-bit block scales: one definition (``optim._lowp_config.block_scale_names``)
for optkern.optim and optkern.torch (55th hunt, l). Two had grown (optim's ``_per_block_states`` and
torch's ``block_scales``, by suffix): here both libraries' state, after steps, has the same scales,
each of shape ``(n_blocks,)``, and every other entry its param's shape -- for each optimizer, state
dtype and a param of one element (where a scale and a per-element state have the same size)."""

from __future__ import annotations

import numpy as np
import pytest

from optkern import optim
from optkern.optim._lowp_config import block_scale_names

torch = pytest.importorskip("torch")
import optkern.torch as ot  # noqa: E402

OPTIMIZERS = [
    ("Adam", dict(lr=0.1), ("exp_avg", "exp_avg_sq")),
    ("SGD", dict(lr=0.1, momentum=0.9), ("momentum_buffer",)),
    ("RMSprop", dict(lr=0.01, centered=True, momentum=0.5), ("square_avg", "momentum_buffer", "grad_avg")),
    ("Adagrad", dict(lr=0.1), ("sum",)),
    ("Adadelta", dict(lr=1.0), ("square_avg", "acc_delta")),
    ("NAdam", dict(lr=0.1), ("exp_avg", "exp_avg_sq")),
]


def test_the_definition():
    assert block_scale_names(("exp_avg", "exp_avg_sq"), "int8") == ("exp_avg_scale", "exp_avg_sq_scale")
    assert block_scale_names(("exp_avg",), "bfloat16") == () == block_scale_names(("sum",), "float32")


@pytest.mark.parametrize("shape", [(1, 1), (300,)], ids=str)
@pytest.mark.parametrize("state_dtype", ["int8", "bfloat16"])
@pytest.mark.parametrize("name, hp, moments", OPTIMIZERS, ids=lambda v: v if isinstance(v, str) else "")
def test_optim_and_torch_hold_the_same_block_scales(name, hp, moments, state_dtype, shape):
    rng = np.random.default_rng(5512)
    p = rng.standard_normal(shape).astype(np.float32)
    t = torch.nn.Parameter(torch.from_numpy(p.copy()))
    opt = getattr(optim, name)([p], state_dtype=state_dtype, block_size=256, **hp)
    tor = getattr(ot, name)([t], state_dtype=state_dtype, block_size=256, **hp)
    for _ in range(2):
        g = rng.standard_normal(shape).astype(np.float32)
        opt.step([g])
        t.grad = torch.from_numpy(g.copy())
        tor.step()
    want = set(block_scale_names(moments, state_dtype))
    n_blocks = -(-p.size // 256)
    ours = {k: v for k, v in opt.state_dict()["state"][0].items() if isinstance(v, np.ndarray) and v.ndim}
    theirs = {k: v for k, v in tor.state[t].items() if isinstance(v, torch.Tensor) and v.ndim}
    assert set(ours) == set(theirs) == set(moments) | want
    for k in want:
        assert ours[k].shape == tuple(theirs[k].shape) == (n_blocks,), k
    for k in moments:
        assert ours[k].shape == tuple(theirs[k].shape) == shape, k
    # (the class's every moment's: Adam's amsgrad max_exp_avg_sq too, unused here)
    per_block = set(opt._per_block_states())
    assert want <= per_block and bool(per_block) == (state_dtype == "int8")
