"""Norm modules' state_dict / load_state_dict with torch's keys: a torch BatchNorm / LayerNorm /
GroupNorm / RMSNorm state loads into optkern's module and back, and both then compute the same."""

import numpy as np
import pytest

from optkern.norm import BatchNorm, GroupNorm, LayerNorm, RMSNorm

torch = pytest.importorskip("torch")

PAIRS = [
    (lambda: torch.nn.BatchNorm2d(3, dtype=torch.float64), lambda: BatchNorm(3, dtype=np.float64), (4, 3, 2, 2)),
    (
        lambda: torch.nn.BatchNorm1d(3, affine=False, dtype=torch.float64),
        lambda: BatchNorm(3, affine=False, dtype=np.float64),
        (4, 3),
    ),
    (
        lambda: torch.nn.BatchNorm1d(3, track_running_stats=False, dtype=torch.float64),
        lambda: BatchNorm(3, track_running_stats=False, dtype=np.float64),
        (4, 3),
    ),
    (lambda: torch.nn.LayerNorm((2, 3), dtype=torch.float64), lambda: LayerNorm((2, 3), dtype=np.float64), (4, 2, 3)),
    (
        lambda: torch.nn.LayerNorm(3, bias=False, dtype=torch.float64),
        lambda: LayerNorm(3, bias=False, dtype=np.float64),
        (4, 3),
    ),
    (lambda: torch.nn.GroupNorm(2, 4, dtype=torch.float64), lambda: GroupNorm(2, 4, dtype=np.float64), (3, 4, 5)),
    (lambda: torch.nn.RMSNorm(3, dtype=torch.float64), lambda: RMSNorm(3, dtype=np.float64), (4, 3)),
]
IDS = ["bn2d", "bn-no-affine", "bn-no-stats", "ln", "ln-no-bias", "gn", "rms"]


def _randomize(m):
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for t in list(m.parameters()) + [b for b in m.buffers() if b.is_floating_point()]:
            t.copy_(torch.rand(t.shape, generator=g, dtype=t.dtype) + 0.5)
    if getattr(m, "num_batches_tracked", None) is not None:
        m.num_batches_tracked.fill_(7)


@pytest.mark.parametrize("make_torch, make_ours, shape", PAIRS, ids=IDS)
def test_torch_state_loads_here_and_back(make_torch, make_ours, shape):
    theirs, ours = make_torch(), make_ours()
    _randomize(theirs)
    sd = theirs.state_dict()
    ours.load_state_dict(sd)
    assert sorted(ours.state_dict()) == sorted(sd)
    x = np.random.default_rng(1).standard_normal(shape)
    theirs.eval()
    train = isinstance(ours, BatchNorm) and ours.running_mean is None
    np.testing.assert_allclose(ours(x, training=train), theirs(torch.from_numpy(x)).detach().numpy(), rtol=1e-12)
    back = make_torch()
    back.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in ours.state_dict().items()})
    for k, v in back.state_dict().items():
        assert torch.equal(v, sd[k]), k


def test_load_refuses_bad_state_before_writing():
    bn = BatchNorm(3, dtype=np.float64)
    good = bn.state_dict()
    cases = [
        ({**good, "extra": np.zeros(3)}, ValueError, "unexpected keys"),
        ({k: v for k, v in good.items() if k != "running_var"}, ValueError, "missing keys"),
        ({**good, "running_var": np.ones(4)}, ValueError, r"state_dict\['running_var'\]: expected shape"),
        ({**good, "weight": np.array(["a", "b", "c"])}, TypeError, r"state_dict\['weight'\]"),
        ({**good, "num_batches_tracked": -1}, ValueError, "num_batches_tracked"),
        ([1, 2], TypeError, "state_dict: expected a dict"),
    ]
    for sd, err, msg in cases:
        if isinstance(sd, dict) and "weight" in sd and sd is not good:
            sd = {**sd, "bias": np.full(3, 9.0)}  # (would be written first: must not be)
        with pytest.raises(err, match=msg):
            bn.load_state_dict(sd)
        assert (bn.bias == 0).all() and bn.num_batches_tracked == 0


def test_state_dict_returns_copies():
    bn = BatchNorm(2)
    sd = bn.state_dict()
    sd["running_mean"][...] = 5
    assert (bn.running_mean == 0).all()
