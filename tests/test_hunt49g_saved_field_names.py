"""A backward's ``saved`` tuple holding a masked array (or another array the argument views refuse)
names the field: ``saved.mean``, as the norms' own checks name it, not ``saved[0]`` (the tuple's
position), which told the caller of a named tuple nothing."""

from __future__ import annotations

import numpy as np
import pytest

from optkern import norm


def _x():
    return np.random.default_rng(0).standard_normal((4, 3, 5)).astype(np.float32)


def test_batch_norm_saved_field_named():
    x = _x()
    _, s = norm.batch_norm(x)
    bad = s._replace(rstd=np.ma.array(s.rstd, mask=[False, True, False]))
    with pytest.raises(TypeError, match=r"^saved\.rstd: expected a numpy\.ndarray, got a masked array"):
        norm.batch_norm_backward(x, x, None, bad)


def test_row_norm_and_weight_norm_saved_fields_named():
    x = _x()
    _, s = norm.layer_norm(x, 5)
    with pytest.raises(TypeError, match=r"^saved\.mean: .*masked array"):
        norm.layer_norm_backward(x, x, None, s._replace(mean=np.ma.array(s.mean)))
    v = x.reshape(4, 15)
    _, sw = norm.weight_norm(v, np.ones(4, np.float32))
    with pytest.raises(TypeError, match=r"^saved\.norm: .*masked array"):
        norm.weight_norm_backward(v, v, np.ones(4, np.float32), sw._replace(norm=np.ma.array(sw.norm)))


def test_a_plain_tuple_keeps_its_positions():
    x = _x()
    _, s = norm.layer_norm(x, 5)
    with pytest.raises(TypeError, match=r"^saved\[0\]: .*masked array"):
        norm.layer_norm_backward(x, x, None, (np.ma.array(s.mean), s.rstd, 1))
