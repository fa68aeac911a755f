"""``clip_grads_with_norm_`` takes ``max_norm=inf`` (torch's, and the native ``clip_scale_``: "must be >=
0 or inf"), but its refusal of a negative or NaN one said "must be in [0.0, inf)", a range without the
inf it had just taken. Now the native check's words; nothing written."""

from __future__ import annotations

import math

import numpy as np
import pytest

from optkern.clip import clip_grads_with_norm_


@pytest.mark.parametrize("max_norm", [-1.0, -0.5e-300, math.nan, -math.inf, -3])
def test_the_refusal_names_the_range_it_takes(max_norm):
    g = np.array([1.0, -2.0, 3.0], dtype=np.float32)
    with pytest.raises(ValueError, match=r"^max_norm: must be >= 0 or inf, got "):
        clip_grads_with_norm_([g], max_norm, 5.0)
    assert np.array_equal(g, [1.0, -2.0, 3.0])


def test_inf_is_taken_as_the_words_say():
    g = np.array([1.0, -2.0, 3.0], dtype=np.float32)
    clip_grads_with_norm_([g], math.inf, 5.0)
    assert np.array_equal(g, [1.0, -2.0, 3.0])
