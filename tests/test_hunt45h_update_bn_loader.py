"""swa.update_bn over a BatchLoader (hunt 45h): the loader's epoch and position stay as they were.

Iterating the loader counted a pass of update_bn as a training epoch: the training run's next epoch
had another shuffle and a batch-size schedule's milestones came early (update_bn after each epoch:
at half the epochs). Inside the training loop it went on from the loop's position and ended the
epoch, the loop's own remaining batches skipped. torch's update_bn leaves its DataLoader as it was."""

import numpy as np

from optkern.data import BatchLoader
from optkern.norm import BatchNorm
from optkern.swa import update_bn


def _reference(batches):
    means = [b.astype(np.float64).mean(0) for b in batches]
    return np.mean(means, 0), np.mean([b.astype(np.float64).var(0, ddof=1) for b in batches], 0)


def test_update_bn_reads_the_epoch_and_leaves_the_loader():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((22, 3)).astype(np.float32), np.arange(22)
    loader = BatchLoader(x, y, 8, seed=3)
    bn = BatchNorm(3)
    update_bn(loader, lambda h: bn(h, training=True), bn)
    assert loader.state_dict() == {"epoch": 0, "seed": 3, "batch": 0}
    mean, var = _reference([xb for xb, _ in BatchLoader(x, y, 8, seed=3).batches(0)])
    np.testing.assert_allclose(bn.running_mean, mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.running_var, var, rtol=1e-5, atol=1e-6)
    assert bn.num_batches_tracked == 3


def test_update_bn_inside_the_training_loop_keeps_its_position():
    x = np.random.default_rng(1).standard_normal((20, 2)).astype(np.float32)
    loader = BatchLoader(x, None, 4, seed=1)
    bn = BatchNorm(2)
    seen = []
    for xb in loader:
        seen.append(xb)
        if len(seen) == 2:
            update_bn(loader, lambda h: bn(h, training=True), [bn])
    want = list(BatchLoader(x, None, 4, seed=1).batches(0))
    assert len(seen) == 5 and all(np.array_equal(a, b) for a, b in zip(seen, want))
    assert loader.epoch == 1
