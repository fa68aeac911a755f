"""The float32 Adam state and native Adam step shared by the held-capsule tests
(test_held_capsules.py, test_hunt39e_adapter_exchange.py): params as NumPy arrays, grads as torch
tensors (the tests hand them over as DLPack capsules or through torch's exchange API)."""

import numpy as np

from optkern import _cpu


def adam_state(sizes, seed=0):
    """(params, grads, exp_avg, exp_avg_sq) lists of float32 arrays of ``sizes``, grads as tensors."""
    import torch  # (each importing test module skips first where torch is missing)

    rng = np.random.default_rng(seed)
    ps = [rng.standard_normal(n).astype(np.float32) for n in sizes]
    gs = [torch.from_numpy(rng.standard_normal(n).astype(np.float32)) for n in sizes]
    return ps, gs, [np.zeros(n, np.float32) for n in sizes], [np.zeros(n, np.float32) for n in sizes]


def adam_step(ps, grads, ms, vs):
    """One native Adam step (lr 1e-2, step 1) of ``ps`` by ``grads`` (arrays or a HeldCapsules)."""
    _cpu.adam_(ps, grads, ms, vs, None, 1e-2, 0.9, 0.999, 1e-8, 0.0, False, False, False, 1)
