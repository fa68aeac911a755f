"""Defects found in the 31st session's hunt over optkern.nn and hessian.from_mlp."""

import numpy as np
import pytest

from optkern.nn import MLP


@pytest.mark.parametrize(
    "kw, name",
    [
        ({"norm": np.array("batch")}, "norm"),
        ({"norm": np.array("layer")}, "norm"),
        ({"loss": np.array("mse")}, "loss"),
    ],
)
def test_norm_and_loss_as_0d_string_arrays_are_refused_naming_them(kw, name):
    # np.array("batch") == "batch" is true, so `in` let it through and the model kept the array:
    # the first loss failed with an unnamed "unhashable type: 'numpy.ndarray'"
    with pytest.raises(ValueError, match=f"^{name}: expected"):
        MLP([3, 4, 2], **kw)


def test_numpy_str_names_still_work():
    m = MLP([3, 4, 2], norm=np.str_("batch"), loss=np.str_("mse"), dtype=np.float64)
    p = m.init_params(0)
    x = np.random.default_rng(0).standard_normal((5, 3))
    assert np.isfinite(float(m.loss(p, x, np.zeros((5, 2)))))
