"""Batch-norm statistics after weight averaging: BatchNorm(momentum=None) and swa.update_bn,
against a float64 reference and torch.optim.swa_utils.update_bn."""

import numpy as np
import pytest

from optkern.norm import BatchNorm
from optkern.swa import AveragedParams, update_bn


def _batches(rng, sizes, C, spatial=()):
    return [rng.standard_normal((n, C, *spatial)).astype(np.float32) * 3 + 1 for n in sizes]


def _reference(batches):
    """The cumulative average of the batch means and unbiased variances, in float64."""
    axes = lambda b: (0,) + tuple(range(2, b.ndim))
    means = [b.astype(np.float64).mean(axis=axes(b)) for b in batches]
    vars_ = [b.astype(np.float64).var(axis=axes(b), ddof=1) for b in batches]
    return np.mean(means, axis=0), np.mean(vars_, axis=0)


@pytest.mark.parametrize("spatial", [(), (5,), (3, 4)])
def test_momentum_none_is_the_cumulative_average(spatial):
    rng = np.random.default_rng(0)
    batches = _batches(rng, [7, 2, 31, 5], C=6, spatial=spatial)
    bn = BatchNorm(6, momentum=None)
    for b in batches:
        bn(b, training=True)
    mean, var = _reference(batches)
    np.testing.assert_allclose(bn.running_mean, mean, rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(bn.running_var, var, rtol=2e-6)
    assert bn.num_batches_tracked == len(batches)


def test_momentum_none_equals_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    batches = _batches(rng, [9, 4, 17], C=3, spatial=(6,))
    ours, theirs = BatchNorm(3, momentum=None), torch.nn.BatchNorm1d(3, momentum=None)
    for b in batches:
        ours(b, training=True)
        theirs(torch.from_numpy(b))
    np.testing.assert_allclose(ours.running_mean, theirs.running_mean.numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(ours.running_var, theirs.running_var.numpy(), rtol=1e-6)
    assert ours.num_batches_tracked == int(theirs.num_batches_tracked)


def _model(rng):
    """Linear -> BatchNorm -> tanh -> Linear -> BatchNorm, as arrays and as a torch model."""
    W1, b1 = rng.standard_normal((16, 8)).astype(np.float32), rng.standard_normal(16).astype(np.float32)
    W2, b2 = rng.standard_normal((4, 16)).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    return W1, b1, W2, b2


def test_update_bn_equals_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    W1, b1, W2, b2 = _model(rng)
    data = [(rng.standard_normal((n, 8)).astype(np.float32), None) for n in (32, 32, 11)]
    bn1, bn2 = BatchNorm(16, momentum=0.3), BatchNorm(4)
    bn1(rng.standard_normal((5, 16)).astype(np.float32))  # stale statistics, as after training
    stale = bn2.num_batches_tracked = 7

    def forward(x):
        h = np.tanh(bn1(x @ W1.T + b1, training=True))
        return bn2(h @ W2.T + b2, training=True)

    update_bn(data, forward, [bn1, bn2])

    tm = torch.nn.Sequential(
        torch.nn.Linear(8, 16), torch.nn.BatchNorm1d(16, momentum=0.3), torch.nn.Tanh(), torch.nn.Linear(16, 4)
    )
    tm.append(torch.nn.BatchNorm1d(4))
    with torch.no_grad():
        for layer, (W, b) in zip((tm[0], tm[3]), ((W1, b1), (W2, b2))):
            layer.weight.copy_(torch.from_numpy(W))
            layer.bias.copy_(torch.from_numpy(b))
    tm.eval()  # update_bn switches to training mode and back
    torch.optim.swa_utils.update_bn([(torch.from_numpy(x), y) for x, y in data], tm)
    assert not tm.training
    for ours, theirs in ((bn1, tm[1]), (bn2, tm[4])):
        np.testing.assert_allclose(ours.running_mean, theirs.running_mean.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ours.running_var, theirs.running_var.numpy(), rtol=1e-5, atol=1e-6)
        assert ours.num_batches_tracked == int(theirs.num_batches_tracked) == len(data) != stale
    assert bn1.momentum == 0.3 and bn2.momentum == 0.1  # restored


def test_update_bn_after_averaging_is_the_average_models_statistics():
    rng = np.random.default_rng(3)
    W = [rng.standard_normal((5, 3)).astype(np.float32) for _ in range(4)]
    avg = AveragedParams([W[0]])
    for w in W[1:]:
        avg.update([w])
    Wa = np.empty_like(W[0])
    avg.copy_to([Wa])
    bn = BatchNorm(5)
    xs = [rng.standard_normal((20, 3)).astype(np.float32) for _ in range(3)]
    update_bn(xs, lambda x: bn(x @ Wa.T, training=True), bn)
    mean, var = _reference([x @ Wa.T for x in xs])
    np.testing.assert_allclose(bn.running_mean, mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.running_var, var, rtol=1e-5)


def test_update_bn_leaves_untracked_layers_alone():
    bn, plain = BatchNorm(2), BatchNorm(2, track_running_stats=False)
    x = np.arange(8, dtype=np.float32).reshape(4, 2)
    update_bn([x], lambda x: (bn(x, training=True), plain(x, training=True)), [bn, plain])
    np.testing.assert_allclose(bn.running_mean, [3.0, 4.0])
    assert plain.running_mean is None and plain.momentum == 0.1


def test_update_bn_restores_everything_when_forward_raises():
    bn = BatchNorm(3, momentum=0.2)
    bn(np.random.default_rng(4).standard_normal((6, 3)).astype(np.float32))
    before = (bn.running_mean.copy(), bn.running_var.copy(), bn.num_batches_tracked)

    def forward(x):
        bn(x, training=True)
        raise KeyError("user error")

    with pytest.raises(KeyError, match="user error"):
        update_bn([np.ones((4, 3), np.float32)], forward, bn)
    np.testing.assert_array_equal(bn.running_mean, before[0])
    np.testing.assert_array_equal(bn.running_var, before[1])
    assert bn.num_batches_tracked == before[2] and bn.momentum == 0.2


@pytest.mark.parametrize(
    "args, exc, name",
    [
        (([], lambda x: x, "bn"), TypeError, "modules"),
        (([], lambda x: x, [object()]), TypeError, r"modules\[0\]"),
        (([], None, []), TypeError, "forward"),
        ((3, lambda x: x, []), TypeError, "batches"),
    ],
)
def test_update_bn_bad_input(args, exc, name):
    with pytest.raises(exc, match=name):
        update_bn(*args)


def test_update_bn_refuses_a_layer_twice():
    bn = BatchNorm(2)
    with pytest.raises(ValueError, match="modules"):
        update_bn([], lambda x: x, [bn, bn])


def test_batchnorm_momentum_none_checks():
    with pytest.raises(TypeError, match="momentum"):
        BatchNorm(2, momentum="0.1")
    with pytest.raises(ValueError, match="momentum"):
        BatchNorm(2, momentum=1.5)
