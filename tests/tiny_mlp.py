"""A tiny float64 MLP problem for the curvature products' out= tests."""

import numpy as np

from optkern.nn import MLP


def tiny_mlp_problem():
    """(model, params, x, y, v): a 3-5-2 tanh MLP, six samples and a direction v."""
    m = MLP([3, 5, 2], activation="tanh", dtype=np.float64)
    p = m.init_params(1)
    rng = np.random.default_rng(0)
    x, y, v = rng.standard_normal((6, 3)), np.array([0, 1, 1, 0, 1, 0]), rng.standard_normal(m.num_params)
    return m, p, x, y, v
