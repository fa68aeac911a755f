"""Session 35's known defects, each pinned by a test that failed before its fix.

* ``hessian.from_mlp(..., fixed=True)``: ``op.matvec(v, out=params)`` wrote the product over the
  caller's params (the operator reads its own copy, so the product was right, but the caller's
  weights were silently clobbered); an ``out`` over a batch's ``x`` / ``y`` likewise. Refused like
  the live operator's overlaps: ValueError naming ``out``, nothing written.
* SAM's ascent step with ``eps = 0`` and ``||g||`` so small that ``rho / ||g||`` is past the params'
  dtype (float32 gradients below ~1e-38, float64 ones below ~1e-308): the scale was inf in that
  dtype and every moved param inf (NaN where ``g`` is 0). The scale now carries its exponent apart
  (``rules::sam_scale_split``): ``w + rho g / ||g||`` as for a gradient scaled into range.
* ``optkern study``: a run flagged "collapsed to chance" (and a diverged run's curvature, where every
  seed diverged) entered its group's means, and the summary never said so. The means now leave both
  out (the cells say how many) and the summary names them.
* Dropout kept an element when its float32 uniform (the word's top 24 bits) was >= float32(p), while
  the kept ones were scaled by 1 / (1 - p): the keep probability sat on a 2^-24 grid, E[y] / x off by
  up to 2^-24 / (1 - p) (p = 1 - 2^-24 and above kept nothing at a scale of 2^24). Now the full 32-bit
  word is compared with round(p 2^32), formed once in double on the host (philox::dropout_threshold,
  CPU and CUDA).
"""

from __future__ import annotations

import copy
import math
import re

import numpy as np
import pytest

from optkern import _backend, hessian, optim
from optkern.nn import MLP


def _fixed_problem(loss="mse", batches=2):
    rng = np.random.default_rng(3)
    model = MLP(sizes=[4, 6, 3], activation="tanh", loss=loss, dtype=np.float64)
    p = model.init_params(0)
    data = []
    for b in range(batches):
        x = rng.standard_normal((5 + b, 4))
        y = rng.standard_normal((x.shape[0], 3)) if loss == "mse" else rng.integers(0, 3, x.shape[0])
        data.append((x, y))
    return model, p, data, rng


def _aliased(shape, n, dtype=np.float64):
    """(an array of ``shape``, an ``(n,)`` float64 array over the same memory)."""
    size = int(np.prod(shape))
    buf = np.zeros(max(size, n))
    return buf[:size].view(dtype).reshape(shape), buf[:n]


@pytest.mark.parametrize("kind", ["hessian", "ggn"])
@pytest.mark.parametrize("first", [True, False])  # the out= product is the operator's first, or a later one
def test_fixed_operator_refuses_an_out_over_the_callers_params(kind, first):
    model, p, data, rng = _fixed_problem()
    op = hessian.from_mlp(model, p, kind=kind, batches=data, fixed=True)
    v = rng.standard_normal(model.num_params)
    if not first:
        op.matvec(v)
    before = p.copy()
    with pytest.raises(ValueError, match="^out shares memory with params"):
        op.matvec(v, out=p)
    np.testing.assert_array_equal(p, before)
    with pytest.raises(ValueError, match="^out shares memory with params"):
        op.matvec(v, out=p[::-1][::-1])  # (a view of it: any overlap)
    np.testing.assert_array_equal(p, before)
    # one batch: the product goes straight into `out` (no checking pass over later batches)
    one = hessian.from_mlp(model, p, data[0][0], data[0][1], kind=kind, fixed=True)
    with pytest.raises(ValueError, match="^out shares memory with params"):
        one.matvec(v, out=p)
    np.testing.assert_array_equal(p, before)


@pytest.mark.parametrize("which", [0, 1])  # the first batch or a later one
@pytest.mark.parametrize("name", ["x", "y"])
def test_fixed_operator_refuses_an_out_over_a_batchs_arrays(which, name):
    model, p, data, rng = _fixed_problem()
    n = model.num_params
    arr = data[which][0 if name == "x" else 1]
    alias, out = _aliased(arr.shape, n)
    alias[...] = arr
    data[which] = (alias, data[which][1]) if name == "x" else (data[which][0], alias)
    op = hessian.from_mlp(model, p, kind="hessian", batches=data, fixed=True)
    live = hessian.from_mlp(model, p, kind="hessian", batches=[(a.copy(), b.copy()) for a, b in data])
    v = rng.standard_normal(n)
    saved = alias.copy()
    with pytest.raises(ValueError, match="^out shares memory with"):
        op.matvec(v, out=out)
    np.testing.assert_array_equal(alias, saved)
    # (the operator still works, and a separate out is fine)
    np.testing.assert_array_equal(op.matvec(v, out=np.empty(n)), live.matvec(v))


def test_fixed_operator_out_elsewhere_still_written_directly():
    model, p, data, rng = _fixed_problem()
    op = hessian.from_mlp(model, p, kind="ggn", batches=data, fixed=True)
    live = hessian.from_mlp(model, p, kind="ggn", batches=data)
    v = rng.standard_normal(model.num_params)
    out = np.full(model.num_params, np.nan)
    assert op.writes_into and op.matvec(v, out=out) is out
    np.testing.assert_array_equal(out, live.matvec(v))


RHO = 0.05


def _tiny_case(dtype, n=1053, seed=5):
    """w ~ N(0, 1) and a gradient of small integers times the dtype's least subnormal (exact, and
    exact again times any power of two that keeps it in range)."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(n).astype(dtype)
    tiny = 2.0**-149 if dtype == np.float32 else 2.0**-1074
    g = (rng.integers(-40, 41, n).astype(np.float64) * tiny).astype(dtype)
    g[3] = 0.0  # (a zero entry: inf * 0 made it NaN)
    return w, g


def _ascent(w, g, adaptive, eps=0.0):
    p, bk, out = w.copy(), np.full_like(w, 7), np.zeros(1)
    _backend.cpu.sam_perturb_([p], [g], [bk], RHO, eps, out, adaptive)
    assert bk.tobytes() == w.tobytes()
    return p, float(out[0])


@pytest.mark.parametrize(("dtype", "up"), [(np.float32, 2.0**120), (np.float64, 2.0**1000)])
@pytest.mark.parametrize("adaptive", [False, True])
def test_sam_ascent_of_an_underflowing_gradient_stays_finite_and_on_the_ray(dtype, up, adaptive):
    w, g = _tiny_case(dtype)
    p, nrm = _ascent(w, g, adaptive)
    assert 0.0 < nrm < RHO / np.finfo(dtype).max  # (the case: the scale is past the dtype's range)
    assert np.isfinite(p).all()
    # independent reference: w + rho t / ||t|| in float64 from the exact gradient taken into range
    # (t = g, or w g for ASAM; the move along g, or w^2 g). float64: the returned ||t|| is itself a
    # float64, subnormal here and so only ~10 bits exact, but the move is by the exact norm (the scale
    # from the rescanned sum: rules::sam_scale_rescanned; ASAM's terms w g scaled apart,
    # rules::sam_norm_term_scaled -- before, rounded below the normal range, they moved w by nrm).
    g64, w64 = g.astype(np.float64) * up, w.astype(np.float64)
    t = w64 * g64 if adaptive else g64
    exact = math.hypot(*t.tolist())
    assert nrm * up == pytest.approx(exact, rel=2.0**-50 if dtype == np.float32 else 2.0**-9)
    move = RHO * (w64 * w64 * g64 if adaptive else g64) / exact
    assert np.abs(move).max() > 1e-3  # (a real move, not a skipped one)
    np.testing.assert_allclose(p, w64 + move, rtol=0, atol=4 * np.finfo(dtype).eps * (np.abs(w64).max() + RHO))


# (float32 only: a float64 gradient whose scale leaves float64 has a subnormal norm, fewer bits than
# the norm of the gradient scaled into range)
@pytest.mark.parametrize(("dtype", "up"), [(np.float32, 2.0**120)])
@pytest.mark.parametrize("adaptive", [False, True])
def test_sam_ascent_of_an_underflowing_gradient_is_the_ascent_of_it_scaled_into_range(dtype, up, adaptive):
    w, g = _tiny_case(dtype)
    big = (g.astype(np.float64) * up).astype(dtype)
    assert np.array_equal(big.astype(np.float64) / up, g.astype(np.float64))  # (exact)
    p_tiny, n_tiny = _ascent(w, g, adaptive)
    p_big, n_big = _ascent(w, big, adaptive)
    assert n_big == n_tiny * up
    assert p_tiny.tobytes() == p_big.tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sam_step_with_eps_0_and_an_underflowing_gradient_writes_finite_params(dtype):
    w, g = _tiny_case(dtype, n=64)
    p = w.copy()
    opt = optim.SAM(optim.SGD([p], lr=0.1), rho=RHO, eps=0.0)
    seen = []

    def closure():
        seen.append(p.copy())
        return 1.0, [g]

    opt.step(closure)
    assert np.isfinite(seen[1]).all() and not np.array_equal(seen[1], w)  # the ascent point
    assert np.isfinite(p).all()


@pytest.fixture(scope="module")
def digits():
    from optkern import datasets

    return datasets.load_digits().split(0.2, seed=0)


@pytest.fixture(scope="module")
def outcomes(digits):
    """Real quick SGD studies on digits (test_hunt34_misc's): lr=2 trains (~91 %), lr=5 collapses to
    chance within the divergence bound (test_hunt34_sam_study), lr=20 diverges in epoch 1."""
    from test_hunt34_misc import _sgd_run

    res = {
        name: _sgd_run(digits, lr, ep, whole=True)
        for name, lr, ep in (("ok", 2.0, 3), ("dead", 5.0, 3), ("gone", 20.0, 1))
    }
    (ok,), (dead,), (gone,) = (res[k]["runs"] for k in ("ok", "dead", "gone"))
    assert ok["status"] == "done" and not ok["collapsed"]
    assert dead["status"] == "done" and dead["collapsed"]
    assert gone["status"] == "diverged"
    return res


def _seeds(outcomes, *names):
    """The ok study's result with its runs replaced by the named studies' runs as seeds 0, 1, ... of one group."""
    res = copy.deepcopy(outcomes["ok"])
    res["runs"] = [dict(copy.deepcopy(outcomes[n]["runs"][0]), seed=i) for i, n in enumerate(names)]
    res["config"]["seeds"] = len(names)
    return res


def _report(res, tmp_path) -> str:
    from optkern.study import report

    with open(report.write_markdown(res, str(tmp_path), figures=[])) as f:
        return f.read()


@pytest.mark.parametrize(("other", "what"), [("dead", "collapsed"), ("gone", "diverged")])
def test_study_means_leave_out_a_collapsed_or_diverged_seed_and_say_so(outcomes, tmp_path, other, what):
    from optkern.study import summary

    res = _seeds(outcomes, "ok", other)
    (grp,) = summary.groups(res)
    ok_row = summary.run_row(outcomes["ok"]["runs"][0])
    for m in ("final_train_loss", "final_val_acc", "top_eigenvalue", "trace"):
        st = grp["stats"][m]
        assert st.n == 1 and st.mean == ok_row[m], m  # the healthy seed's alone
    assert grp["excluded"] == {"collapsed": int(what == "collapsed"), "stuck": 0, "diverged": int(what == "diverged")}
    assert grp["stats"]["step_ms"].n == 2  # (the cost of a step: every run's)
    md = _report(res, tmp_path)
    (row,) = [x for x in md.splitlines() if x.startswith("| sgd | none |")]
    assert f"(1 {what} excluded)" in row
    summ = md.split("## Summary", 1)[1].split("## ", 1)[0]
    assert f"1 run {what}" in summ.lower() and "seed 1" in summ and "left out of every mean" in summ


def test_study_of_only_a_collapsed_run_has_no_means(outcomes, tmp_path):
    from optkern.study import summary

    res = _seeds(outcomes, "dead")
    (grp,) = summary.groups(res)
    assert grp["stats"]["final_val_acc"] is None and grp["stats"]["top_eigenvalue"] is None
    assert grp["excluded"]["collapsed"] == 1
    md = _report(res, tmp_path)
    (row,) = [x for x in md.splitlines() if x.startswith("| sgd | none |")]
    assert row.split("|")[3].strip() == "— (1 collapsed excluded)"
    summ = md.split("## Summary", 1)[1].split("## ", 1)[0]
    assert "collapsed to chance (sgd without normalization)" in summ.lower()
    assert "Final validation accuracy ranges" not in summ  # (no healthy run: no accuracy to give)


def test_study_of_healthy_seeds_reports_as_before(outcomes, tmp_path):
    from optkern.study import summary

    res = _seeds(outcomes, "ok", "ok")
    (grp,) = summary.groups(res)
    assert grp["excluded"] == {"collapsed": 0, "stuck": 0, "diverged": 0} and grp["stats"]["final_val_acc"].n == 2
    md = _report(res, tmp_path)
    assert "excluded" not in md and "left out" not in md


def _words(n, seed, offset):
    from test_random import words_ref  # (an independent pure-Python Philox4x32-10)

    return words_ref(n, seed, offset)


def _threshold(p: float) -> int:
    """round(p 2^32), half up, from p's exact value (fractions: no float rounding at all)."""
    from fractions import Fraction

    return int(Fraction(p) * 2**32 + Fraction(1, 2))


@pytest.mark.parametrize("p", [0.0, 0.3, 0.5, 1 - 2.0**-20, 1 - 1e-9, 2.0**-30, 1.0])
def test_dropout_mask_is_the_full_word_against_round_p_2_32(p):
    from optkern import norm

    seed, offset, n = 2**33 + 7, 3, 257
    x = np.ones(n, np.float64)
    y, mask = norm.dropout(x, p, seed=seed, offset=offset, return_mask=True)
    want = _words(n, seed, offset) >= _threshold(p)
    np.testing.assert_array_equal(mask.astype(bool), want)
    if p < 1:
        np.testing.assert_array_equal(y, np.where(want, 1.0 / (1.0 - p), 0.0))
    else:
        assert not y.any()


def test_dropout_mask_splits_a_24_bit_bucket():
    """A threshold inside a word's top-24-bit bucket (words >= 2^31: float32's grid there is the
    bucket's): the old rule rounded p to the grid and gave the bucket one fate."""
    from optkern import norm

    seed, offset, n = 12345, 0, 4096
    w = _words(n, seed, offset)
    low, high = w & 0xFF, w >= 2**31
    i = int(np.flatnonzero(high & (low >= 0x90))[0])  # p 8 below it: float32(p) rounded up past it
    j = int(np.flatnonzero(high & (low <= 0x70))[0])  # p 1 above it: float32(p) rounded down to its bucket
    p = float(int(w[i]) - 8) * 2.0**-32
    q = float(int(w[j]) + 1) * 2.0**-32
    x = np.ones(n, np.float32)
    _, m_p = norm.dropout(x, p, seed=seed, offset=offset, return_mask=True)
    _, m_q = norm.dropout(x, q, seed=seed, offset=offset, return_mask=True)
    assert m_p[i] == 1 and m_q[j] == 0
    np.testing.assert_array_equal(m_p.astype(bool), w >= _threshold(p))
    np.testing.assert_array_equal(m_q.astype(bool), w >= _threshold(q))


@pytest.mark.parametrize("p", [1 - 1e-5, 1 - 2.0**-22, 1 - 3e-7, 0.999, 2.0**-20, 1e-6])
def test_dropout_keep_fraction_at_extreme_p_is_unbiased(p):
    """The keep fraction over many draws within 3 standard errors of 1 - p, the probability the scale
    1 / (1 - p) assumes (a sanity check: the old rule's bias, <= 2^-24 absolute, needs far more draws
    to see; the exact-mask tests above pin the rule)."""
    from optkern import norm

    n = 1 << 22
    x = np.ones(n, np.float32)
    kept = 0
    draws = 8 if p > 0.99 else 1
    for d in range(draws):
        _, m = norm.dropout(x, p, seed=77, offset=d * n, return_mask=True)
        kept += int(np.count_nonzero(m))
    total = draws * n
    q = 1.0 - p  # the keep probability the scale 1 / (1 - p) assumes
    se = math.sqrt(q * (1 - q) / total)
    assert abs(kept / total - q) <= 3 * se + 2.0**-33, (kept, total * q)


def test_dropout_p_0_keeps_all_and_p_to_1_keeps_none():
    from optkern import norm

    x = np.linspace(-1.0, 1.0, 1 << 16)
    y, m = norm.dropout(x, 0.0, seed=1, return_mask=True)
    assert m.all() and np.array_equal(y, x)
    for p in (1.0, 1 - 2.0**-34, np.nextafter(1.0, 0.0)):  # round(p 2^32) = 2^32: none kept
        y, m = norm.dropout(x, p, seed=1, return_mask=True)
        assert not m.any() and not np.any(y), p


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_masks_repeat_for_the_same_seed_and_offset(dtype):
    from optkern import norm

    x = np.ones(5000, dtype)
    a = norm.dropout(x, 0.37, seed=9, offset=11, return_mask=True)[1]
    b = norm.dropout(x, 0.37, seed=9, offset=11, return_mask=True)[1]
    c = norm.dropout(np.ones(5011, dtype), 0.37, seed=9, offset=0, return_mask=True)[1]
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c[11:])
    np.testing.assert_array_equal(norm.dropout_backward(x, 0.37, seed=9, offset=11) != 0, a.astype(bool))


@pytest.mark.parametrize("fixed", [True, False])
def test_block_operator_refuses_an_out_over_the_callers_arrays(fixed):
    """A layer block's product is copied into ``out`` after it is computed (no direct writing): an
    ``out`` over the caller's params (or a batch's x) was written over them, no error."""
    model, p, data, rng = _fixed_problem()
    op = hessian.from_mlp(model, p, kind="hessian", batches=data, block="layer2", fixed=fixed)
    m = op.shape[0]
    v = rng.standard_normal(m)
    before = p.copy()
    with pytest.raises(ValueError, match="^out shares memory with params"):
        op.matvec(v, out=p[:m])
    np.testing.assert_array_equal(p, before)
    for i, name in ((0, "x"), (1, "batches[1]'s x")):
        x = data[i][0]
        if x.size >= m:
            saved = x.copy()
            with pytest.raises(ValueError, match=rf"^out shares memory with {re.escape(name)}$"):
                op.matvec(v, out=x.reshape(-1)[:m])
            np.testing.assert_array_equal(x, saved)
    out = np.empty(m)
    assert op.matvec(v, out=out) is out  # (elsewhere: written)
