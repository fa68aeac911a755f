"""LBFGS.load_state_dict keeps optkern's saved Gram matrices (gram_sy, gram_yy) once checked against the
vectors in O(k n) (optim/_lbfgs_gram.py), instead of rebuilding them by k pushes (k^2 n: 25 s at 4M/k=100):
an honest checkpoint resumes bit for bit, a stale or tampered one (gram_sy * 3, a diagonal entry off by more
than rounding, an asymmetric gram_yy) is refused with nothing changed; ro and H_diag stay derived. A pair
the step would not keep (s.y <= 1e-10: one predicate, _lbfgs_history.keeps_pair) is refused on both paths.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from optkern import optim
from optkern.optim import _lbfgs_gram
from optkern.optim._lbfgs_history import MIN_CURVATURE, keeps_pair


def _problem(n: int, dtype, seed: int = 0):
    rng = np.random.default_rng(seed)
    dd, b = rng.uniform(1, 5, n), rng.standard_normal(n)
    p = np.zeros(n, dtype)

    def closure():  # (a separable quartic: curvature positive, pairs kept)
        x = p.astype(np.float64)
        return float(0.5 * (dd * x * x).sum() + 0.1 * (x**4).sum() - b @ x), [(dd * x + 0.4 * x**3 - b).astype(dtype)]

    return p, closure


def _run(n, dtype, k, steps, sd=None, at=None):
    """Params after ``steps`` steps of an LBFGS (history_size ``k``), loaded from ``sd`` at ``at`` first."""
    p, closure = _problem(n, dtype)
    opt = optim.LBFGS([p], max_iter=7, history_size=k)
    if sd is not None:
        p[...] = at
        opt.load_state_dict(sd)
    for _ in range(steps):
        opt.step(closure)
    return opt, p


def _saved(n=1023, dtype=np.float64, k=6):
    opt, p = _run(n, dtype, k, steps=3)
    assert len(opt._S) >= 2
    return opt.state_dict(), p.copy()


def _torch_layout(sd):
    sd = copy.deepcopy(sd)
    del sd["state"][0]["gram_sy"], sd["state"][0]["gram_yy"]
    return sd


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("n", "k"), [(1, 3), (7, 5), (1023, 20), (70001, 8)])
@pytest.mark.parametrize("layout", ["optkern", "torch"])
def test_an_honest_checkpoint_resumes_bit_for_bit(dtype, n, k, layout):
    opt, p = _run(n, dtype, k, steps=3)
    sd, at = opt.state_dict(), p.copy()
    _, want = _run(n, dtype, k, steps=5)  # (the run that never stopped)
    loaded, got = _run(n, dtype, k, steps=2, sd=sd if layout == "optkern" else _torch_layout(sd), at=at)
    np.testing.assert_array_equal(got, want)
    # the loaded products are the saved bits (optkern's) or the push's (torch's: the same bits here)
    m = len(sd["state"][0]["old_stps"])
    fresh, _ = _run(n, dtype, k, steps=0, sd=sd, at=at)
    np.testing.assert_array_equal(fresh._sy[:m, :m], sd["state"][0]["gram_sy"])
    np.testing.assert_array_equal(fresh._yy[:m, :m], sd["state"][0]["gram_yy"])
    assert fresh._ro == [1.0 / sd["state"][0]["gram_sy"][j, j] for j in range(m)]
    assert loaded.state["n_iter"] > 0


def _refused(sd, at, match, n=1023, dtype=np.float64, k=6):
    opt, p = _run(n, dtype, k, steps=1)
    before, p0 = opt.state_dict(), p.copy()
    with pytest.raises(ValueError, match=match):
        opt.load_state_dict(sd)
    after = opt.state_dict()
    assert after["state"][0]["n_iter"] == before["state"][0]["n_iter"]
    np.testing.assert_array_equal(after["state"][0]["gram_sy"], before["state"][0]["gram_sy"])
    np.testing.assert_array_equal(p, p0)


def _scale_of(sd):
    """|s_a| |y_b|, float64."""
    st = sd["state"][0]
    ns = np.array([np.linalg.norm(np.asarray(s, np.float64)) for s in st["old_stps"]])
    ny = np.array([np.linalg.norm(np.asarray(y, np.float64)) for y in st["old_dirs"]])
    return np.outer(ns, ny), np.outer(ny, ny)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("key", ["gram_sy", "gram_yy"])
@pytest.mark.parametrize("how", ["times3", "diagonal", "off_diagonal"])
def test_a_tampered_gram_matrix_is_refused(dtype, key, how):
    sd, at = _saved(dtype=dtype)
    st = sd["state"][0]
    g = np.array(st[key])
    k = g.shape[0]
    sy_scale, yy_scale = _scale_of(sd)
    scale = sy_scale if key == "gram_sy" else yy_scale
    if how == "times3":
        g = g * 3.0
    elif how == "diagonal":  # (1e-3 of |s||y|: 50x the float32 bound at n = 1023, far past float64's)
        g[k - 1, k - 1] += 1e-3 * scale[k - 1, k - 1]
    else:  # one entry off by 1 % of |s_a| |y_b| (both halves of gram_yy: it stays symmetric)
        g[0, k - 1] += 1e-2 * scale[0, k - 1]
        if key == "gram_yy":
            g[k - 1, 0] = g[0, k - 1]
    st[key] = g
    _refused(sd, at, rf"^state_dict\['state'\]\[0\]\['{key}'\]: not the inner products", dtype=dtype)


def test_an_asymmetric_gram_yy_is_refused():
    sd, at = _saved()
    g = np.array(sd["state"][0]["gram_yy"])
    g[1, 0] = np.nextafter(g[1, 0], np.inf)
    sd["state"][0]["gram_yy"] = g
    _refused(sd, at, r"\['gram_yy'\]: not symmetric \(\[0, 1\]")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rounding_sized_differences_load(dtype):
    """Products summed in another order (float64 NumPy, as a torch-made or a GPU checkpoint would hold)
    are within the push's rounding: loaded, kept as given."""
    sd, at = _saved(dtype=dtype)
    st = sd["state"][0]
    S = np.stack([np.asarray(s, np.float64) for s in st["old_stps"]])
    Y = np.stack([np.asarray(y, np.float64) for y in st["old_dirs"]])
    st["gram_sy"], st["gram_yy"] = S @ Y.T, Y @ Y.T
    opt, _ = _run(1023, dtype, 6, steps=0, sd=sd, at=at)
    k = len(opt._S)
    np.testing.assert_array_equal(opt._sy[:k, :k], S @ Y.T)


@pytest.mark.parametrize("layout", ["optkern", "torch"])
def test_a_pair_the_step_would_not_keep_is_refused(layout):
    """s.y = 1e-12 (the step keeps a pair only if s.y > 1e-10): ro would be 1e12. Refused on both paths,
    with Gram matrices consistent with the vectors (so the curvature rule, not the Gram check, refuses)."""
    sd, at = _saved(n=7)
    st = sd["state"][0]
    s0, y0 = st["old_stps"][-1], st["old_dirs"][-1]
    st["old_stps"][-1] = s0 * (1e-12 / float(s0 @ y0))
    if layout == "torch":
        sd = _torch_layout(sd)
    else:  # the products the push gives the tampered vectors
        opt, _ = _run(7, np.float64, 6, steps=0)
        st["gram_sy"], st["gram_yy"] = opt._gram_of(st["old_stps"], st["old_dirs"])
    k = len(st["old_stps"])
    _refused(sd, at, rf"\['old_stps'\]\[{k - 1}\], .*\['old_dirs'\]\[{k - 1}\]: not a pair the step keeps", n=7)


def test_the_curvature_rule_is_the_steps():
    assert MIN_CURVATURE == 1e-10
    assert not keeps_pair(1e-10) and keeps_pair(np.nextafter(1e-10, 1.0))
    assert not keeps_pair(float("nan")) and not keeps_pair(-1.0)


def test_the_stated_bound_is_above_the_measured_rounding():
    """The check's allowance against float32 products of honest pairs (n = 70001, two sub-blocks):
    the saved bits' distance from float64 products is inside the stated bound gamma |s| |y|."""
    sd, _ = _saved(n=70001, dtype=np.float32, k=8)
    st = sd["state"][0]
    sy_scale, _ = _scale_of(sd)
    S = np.stack([np.asarray(s, np.float64) for s in st["old_stps"]])
    Y = np.stack([np.asarray(y, np.float64) for y in st["old_dirs"]])
    g, _ = _lbfgs_gram.gammas(70001, len(S), np.float32)
    err = np.abs(st["gram_sy"] - S @ Y.T)
    assert np.all(err <= g * sy_scale)
    assert 0 < err.max()  # (float32 sums: not the float64 products)
