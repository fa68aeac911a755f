"""The MLP's string options given as NumPy strings (np.str_, e.g. read from a config array) are kept
as plain ``str``: they were kept as given, and the model's repr read ``activation=np.str_('relu')``."""

import numpy as np

from optkern.nn import MLP


def test_numpy_strings_are_kept_as_str():
    m = MLP([3, 4, 2], activation=np.str_("relu"), norm=np.str_("layer"), loss=np.str_("mse"))
    for value in (m.activation, m.norm, m.loss_kind):
        assert type(value) is str
    assert repr(m) == (
        "MLP(sizes=[3, 4, 2], activation='relu', norm='layer', loss='mse', num_params=34, dtype=float32)"
    )
    # and the model computes as one built from plain strings
    p = m.init_params(0)
    x, y = np.ones((2, 3), np.float32), np.zeros((2, 2), np.float32)
    ref = MLP([3, 4, 2], activation="relu", norm="layer", loss="mse")
    assert np.array_equal(m.loss_and_grad(p, x, y)[1], ref.loss_and_grad(p, x, y)[1])
