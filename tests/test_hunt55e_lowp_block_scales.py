"""optkern.optim with 8-bit states: the block scales keep their own layout in ``state_dict()``.

``state_dict()`` lays each state array out as its param (``_state_dict.follow_reshaped``: a param
reshaped at its own address takes its state along). It took every array of the param's *size* for
per-element state, and 8-bit block scales (``<moment>_scale``, one float32 per block) have that size
exactly when the param holds one element or none: the scales of a 0-d param (a learnable scalar), a
(1, 1) one or an empty (3, 0) one came out shaped like the param, and the optimizer's own checkpoint
was refused by its ``load_state_dict`` ("expected 1 float32 block scale (shape (1,)), got float32 of
shape (1, 1)"), and by optkern.torch's. optkern.torch's own state dict kept them (n_blocks,).
"""

import copy

import numpy as np
import pytest

from optkern import optim

SHAPES = [(), (1, 1), (1, 1, 1), (3, 0), (0, 5)]
OPTIMIZERS = [
    (optim.Adam, dict(lr=0.1)),
    (optim.SGD, dict(lr=0.1, momentum=0.9)),
    (optim.RMSprop, dict(lr=0.01, centered=True, momentum=0.5)),
    (optim.Adagrad, dict(lr=0.1)),
    (optim.Adadelta, dict(lr=1.0)),
    (optim.NAdam, dict(lr=0.1)),
]


def _stepped(cls, hp, shape, block_size=256):
    rng = np.random.default_rng(5505)
    p = rng.standard_normal(shape).astype(np.float32)
    opt = cls([p], state_dtype="int8", block_size=block_size, **hp)
    for _ in range(2):
        opt.step([rng.standard_normal(shape).astype(np.float32)])
    return p, opt


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("cls, hp", OPTIMIZERS, ids=lambda v: getattr(v, "__name__", ""))
def test_the_scales_of_a_param_of_one_element_or_none_keep_one_per_block(cls, hp, shape):
    p, opt = _stepped(cls, hp, shape)
    size = int(np.prod(shape))
    entry = opt.state_dict()["state"][0]
    scales = [k for k in entry if k.endswith("_scale")]
    assert scales  # (the 8-bit moments of this optimizer)
    for k in scales:
        assert entry[k].shape == (-(-size // 256),), k
        assert entry[k[: -len("_scale")]].shape == shape  # (the codes: one per element, as the param)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("cls, hp", OPTIMIZERS, ids=lambda v: getattr(v, "__name__", ""))
def test_its_own_checkpoint_loads_and_resumes_bit_for_bit(cls, hp, shape):
    p, opt = _stepped(cls, hp, shape)
    sd = copy.deepcopy(opt.state_dict())
    q = p.copy()
    resumed = cls([q], state_dtype="int8", **hp)
    resumed.load_state_dict(sd)  # (refused: "expected 1 float32 block scale (shape (1,)) ...")
    g = np.full(shape, 0.25, np.float32)
    opt.step([g])
    resumed.step([g])
    assert p.tobytes() == q.tobytes()
    a, b = opt.state_dict()["state"][0], resumed.state_dict()["state"][0]
    for k, v in a.items():
        if isinstance(v, np.ndarray):
            assert v.shape == b[k].shape and v.tobytes() == b[k].tobytes(), k


def test_a_param_reshaped_at_its_address_still_takes_its_codes_along_not_its_scales():
    """What follow_reshaped is for, kept: a (6,) param reshaped in place to (2, 3) -- its 8-bit codes
    follow the new shape (per element), its one block scale stays (1,)."""
    p = np.arange(1.0, 7.0, dtype=np.float32)
    opt = optim.Adam([p], lr=0.1, state_dtype="int8")
    opt.step([np.ones(6, np.float32)])
    p.shape = (2, 3)
    entry = opt.state_dict()["state"][0]
    assert entry["exp_avg"].shape == (2, 3) and entry["exp_avg_sq"].shape == (2, 3)
    assert entry["exp_avg_scale"].shape == (1,) and entry["exp_avg_sq_scale"].shape == (1,)
    fresh = optim.Adam([p.copy()], lr=0.1, state_dtype="int8")
    fresh.load_state_dict(copy.deepcopy(opt.state_dict()))


def test_the_checkpoint_of_a_scalar_param_loads_into_optkern_torch():
    torch = pytest.importorskip("torch")
    import optkern.torch as ot

    p, opt = _stepped(optim.Adam, dict(lr=0.1), ())
    t = torch.nn.Parameter(torch.from_numpy(p.copy()))
    tor = ot.Adam([t], lr=0.1, state_dtype="int8")
    tor.load_state_dict(copy.deepcopy(opt.state_dict()))
    g = np.float32(0.5)
    opt.step([np.full((), g, np.float32)])
    t.grad = torch.full((), float(g))
    tor.step()
    assert t.detach().numpy().tobytes() == p.tobytes()
