"""Shapes of the normalization R-operator's arrays (``norm_rop_fwd`` / ``norm_rop_bwd``, the MLP's exact
HVP through batch / layer norm).

The kernels checked each array's element COUNT only: for h of shape (4, 6), a direction R{h} (or dy,
R{dy}, R{x̂}, or an output) of shape (6, 4) or (24,) was read in h's layout without an error (the MLP's
``normalization.norm_rop_forward`` then returned R{y} shaped (6, 4) holding the values of (4, 6)), and a
(2, 3) mean was taken for 6 groups. Now each (N, D) array must have h's shape and each per-group or
per-feature one must be 1-D: ValueError naming the argument, before anything is written.
"""

import numpy as np
import pytest

from optkern import _cpu
from optkern.nn import normalization as nz

N, D = 4, 6

FWD = ("h", "mean", "rstd", "rh", "weight", "vweight", "vbias", "ry", "rxhat", "m_xrh")
BWD = ("h", "mean", "rstd", "dy", "rdy", "weight", "vweight", "rxhat", "m_xrh", "dh", "rdh", "rdweight", "rdbias")
FWD_OUT, BWD_OUT = ("ry", "rxhat", "m_xrh"), ("dh", "rdh", "rdweight", "rdbias")
FEATURE = ("weight", "vweight", "vbias", "rdweight", "rdbias")
GROUP = ("mean", "rstd", "m_xrh")


def _args(names, axis, rng):
    G = D if axis == 0 else N
    out = {}
    for k in names:
        shape = (G,) if k in GROUP else (D,) if k in FEATURE else (N, D)
        out[k] = (1.0 + np.abs(rng.standard_normal(shape))).astype(np.float32)
    return out


def _misshaped(a):
    """The same elements in another shape: (N, D) transposed, a 1-D array as (2, n / 2)."""
    return np.ascontiguousarray(a.T) if a.ndim == 2 else a.reshape(2, -1)


def _call(kernel, names, outs, bad, axis):
    rng = np.random.default_rng(0)
    args = _args(names, axis, rng)
    for k in outs:
        args[k][...] = np.nan  # (a written output would lose its NaNs)
    args[bad] = _misshaped(args[bad])
    if bad in outs:
        args[bad][...] = np.nan
    with pytest.raises(ValueError, match=f"^{bad}: expected shape"):
        kernel(*(args[k] for k in names), axis)
    for k in outs:
        assert np.isnan(args[k]).all(), f"{k} written before the error"


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("bad", [k for k in FWD if k != "h"])
def test_fwd_refuses_a_misshaped_array(bad, axis):
    _call(_cpu.norm_rop_fwd, FWD, FWD_OUT, bad, axis)


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("bad", [k for k in BWD if k != "h"])
def test_bwd_refuses_a_misshaped_array(bad, axis):
    _call(_cpu.norm_rop_bwd, BWD, BWD_OUT, bad, axis)


@pytest.mark.parametrize("axis", [0, 1])
def test_the_mlp_functions_refuse_a_transposed_direction(axis):
    """``normalization.norm_rop_forward`` / ``norm_rop_backward`` (the MLP's) name the direction."""
    rng = np.random.default_rng(1)
    h = rng.standard_normal((N, D)).astype(np.float32)
    g, b = np.ones(D, np.float32), np.zeros(D, np.float32)
    _, saved = nz.norm_forward(h, g, b, 1e-5, axis)
    rh = rng.standard_normal((N, D)).astype(np.float32)
    with pytest.raises(ValueError, match="^rh: expected shape"):
        nz.norm_rop_forward(np.ascontiguousarray(rh.T), g, g, b, saved, axis)
    _, rs = nz.norm_rop_forward(rh, g, g, b, saved, axis)
    for i, name in enumerate(("dy", "rdy")):
        dys = [rh, rh]
        dys[i] = rh.reshape(-1)
        with pytest.raises(ValueError, match=f"^{name}: expected shape"):
            nz.norm_rop_backward(*dys, g, g, saved, rs, axis)
