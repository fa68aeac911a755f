"""Hunt 40k: optkern.swa.update_bn against torch.optim.swa_utils.update_bn.

torch's update_bn switches the model to training mode itself, so every BatchNorm the data reaches
measures it. Here ``forward`` chooses the mode: one that ran the layers with ``training=False``
(an evaluation function handed in by mistake) measured nothing, and update_bn left every layer
with the reset statistics (mean 0, variance 1, no batches counted) -- the statistics the model had
were lost, silently. A layer that saw no batch of a non-empty pass is refused now, naming it, with
every layer's statistics and momentum restored."""

import numpy as np
import pytest

from optkern.norm import BatchNorm
from optkern.swa import update_bn


def _layers():
    rng = np.random.default_rng(3)
    a, b = BatchNorm(3), BatchNorm(3, momentum=0.3)
    for _ in range(3):
        a(rng.standard_normal((5, 3)).astype(np.float32) + 2, training=True)
        b(rng.standard_normal((5, 3)).astype(np.float32) * 3, training=True)
    return a, b


def _stats(layers):
    return [(m.running_mean.copy(), m.running_var.copy(), m.num_batches_tracked, m.momentum) for m in layers]


def _same(x, y):
    return all(
        np.array_equal(m1, m2) and np.array_equal(v1, v2) and n1 == n2 and k1 == k2
        for (m1, v1, n1, k1), (m2, v2, n2, k2) in zip(x, y)
    )


def test_forward_in_evaluation_mode_is_refused_and_restores_the_statistics():
    a, b = _layers()
    before = _stats([a, b])
    data = [np.ones((4, 3), np.float32), np.zeros((4, 3), np.float32)]
    with pytest.raises(ValueError, match=r"^modules\[0\]"):
        update_bn(data, lambda x: b(a(x, training=False), training=False), [a, b])
    assert _same(_stats([a, b]), before)


def test_a_layer_the_forward_never_trains_is_named():
    a, b = _layers()
    before = _stats([a, b])
    with pytest.raises(ValueError, match=r"^modules\[1\]: .*training"):
        update_bn([np.ones((4, 3), np.float32)], lambda x: b(a(x, training=True), training=False), [a, b])
    assert _same(_stats([a, b]), before)
    with pytest.raises(ValueError, match=r"^modules: .*training"):  # (one layer, not a list)
        update_bn([np.ones((4, 3), np.float32)], lambda x: b(x, training=False), b)
    assert _same(_stats([a, b]), before)


def test_training_forward_and_an_empty_pass_still_work_as_torchs():
    rng = np.random.default_rng(0)
    a, b = _layers()
    data = [rng.standard_normal((6, 3)).astype(np.float32) for _ in range(4)]
    update_bn(data, lambda x: b(a(x, training=True), training=True), [a, b])
    assert a.num_batches_tracked == b.num_batches_tracked == 4 and (a.momentum, b.momentum) == (0.1, 0.3)
    np.testing.assert_allclose(a.running_mean, np.mean([x.mean(0) for x in data], 0), rtol=1e-5, atol=1e-6)
    update_bn([], lambda x: b(a(x, training=True), training=True), [a, b])  # (torch: reset, nothing read)
    assert a.num_batches_tracked == 0 and np.array_equal(a.running_var, np.ones(3, np.float32))
