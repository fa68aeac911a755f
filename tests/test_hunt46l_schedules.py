"""cosine's first argument is its value at step 0, exactly (decay.py's module contract, and torch's
CosineAnnealingLR, whose step 0 is the optimizer's lr untouched). The closed form
``eta_min + (lr - eta_min) (1 + cos 0) / 2`` rounded ``lr - eta_min`` and added ``eta_min`` back:
off by an ulp for ~3% of (lr, eta_min) pairs."""

import numpy as np

from optkern import schedules as S


def test_cosine_step_0_is_lr_exactly():
    rng = np.random.default_rng(46)
    pairs = [(float(10 ** rng.uniform(-5, 0)), float(10 ** rng.uniform(-8, -1))) for _ in range(400)]
    pairs.append((1e-4, 1e-3))  # (1e-4 - 1e-3) + 1e-3 rounds to 1.0000000000000005e-4 (an eta_min above lr)
    off = [(lr, eta) for lr, eta in pairs if S.cosine(lr, 100, eta)(0) != lr]
    assert not off, f"{len(off)} of {len(pairs)} pairs, e.g. {off[:3]}"


def test_cosine_other_steps_keep_torchs_closed_form():
    lr, eta, T = 1e-4, 1e-3, 10
    s = S.cosine(lr, T, eta)
    for t in range(1, T + 3):
        k = min(t, T)
        assert s(t) == eta + (lr - eta) * (1.0 + np.cos(np.pi * k / T)) / 2.0


def test_cosine_at_the_top_of_float_range_is_lr_at_step_0():
    # (lr - 0) * 2 overflowed before the halving: step 0 of a valid lr raised an overflow error
    assert S.cosine(1e308, 10)(0) == 1e308
