"""Session 34's SAM-norm and study-collapse hunt.

* ``sam_perturb_``'s ||g|| (ASAM: ||w g||) was ``sqrt`` of a plain float64 sum of squares: inf for a
  float64 gradient past ~1e154 and 0 below ~1e-162, and since a non-finite norm gives scale 0 the
  ascent step was silently skipped for a perfectly finite gradient (below: scale rho / 0 = inf, w
  became inf / NaN). The sum out of range is now taken again scaled by a power of two (the rule
  Lanczos' norm uses), so a gradient scaled by 2**k moves w exactly as the unscaled one does.
* ``optkern study``: a run whose network died at a high learning rate (loss ~ ln C, chance accuracy)
  was reported "done" like a healthy one (below: ``divergence.collapsed``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from optkern import _backend
from test_hunt34_misc import _sgd_run

RHO = 0.05


def _case(dtype, adaptive, sizes=(5, 1031, 17), seed=0):
    rng = np.random.default_rng(seed + 7 * adaptive + len(sizes))
    ws = [rng.standard_normal(n).astype(dtype) for n in sizes]
    gs = [rng.standard_normal(n).astype(dtype) for n in sizes]
    return ws, gs


def _perturb(ws, gs, adaptive, eps=0.0):
    ps = [w.copy() for w in ws]
    bk = [np.full_like(w, 7) for w in ws]
    out = np.zeros(1)
    nrm = _backend.cpu.sam_perturb_(ps, gs, bk, RHO, eps, out, adaptive)
    assert nrm == out[0] or (math.isnan(nrm) and math.isnan(out[0]))
    for b, w in zip(bk, ws):
        assert b.tobytes() == w.tobytes()
    return ps, nrm


def _hypot_norm(ws, gs, adaptive):
    """Independent float64 reference: math.hypot scales internally, exact over float64's range."""
    terms = [
        float(w) * float(g) if adaptive else float(g)
        for wl, gl in zip(ws, gs)
        for w, g in zip(wl.tolist(), gl.tolist())
    ]
    return math.hypot(*terms)


# float64's squares leave its range past 2**511 and below 2**-537; 2**+-600 is well beyond both.
# float32's squares never leave double's range (2**+-60 kept as a guard that the rescan, were it
# taken, would not change float32's bits).
SCALES = [(np.float64, k) for k in (600, -600, 530, -560)] + [(np.float32, k) for k in (60, -60)]


@pytest.mark.parametrize("adaptive", [False, True])
@pytest.mark.parametrize(("dtype", "k"), SCALES)
def test_ascent_of_a_power_of_two_scaled_gradient_is_the_unscaled_ascent(dtype, k, adaptive):
    ws, gs = _case(dtype, adaptive)
    want, nrm0 = _perturb(ws, gs, adaptive)
    big = [(g * dtype(2.0**k)).astype(dtype) for g in gs]
    assert all(np.isfinite(b).all() for b in big)
    got, nrm = _perturb(ws, big, adaptive)
    # the norm scales exactly, and rho / ||2^k g|| 2^k g is the same product: the same bits of w
    assert nrm == math.ldexp(nrm0, k)
    ref = _hypot_norm(ws, big, adaptive)
    assert abs(nrm - ref) <= 1e-12 * ref
    for a, b in zip(got, want):
        assert a.tobytes() == b.tobytes()
    assert any((a != w).any() for a, w in zip(got, ws))  # the ascent step was taken


@pytest.mark.parametrize("adaptive", [False, True])
@pytest.mark.parametrize("k", [700, -700])
def test_one_huge_or_tiny_entry_dominates_the_norm_as_the_float64_reference(k, adaptive):
    """Mixed magnitudes: the rescan's scale comes from the largest term, the others' squares may
    underflow in it (below its precision: the reference agrees)."""
    ws, gs = _case(np.float64, adaptive, sizes=(300, 9))
    gs = [g * 2.0**k for g in gs]
    gs[1][3] *= 2.0**40
    _, nrm = _perturb(ws, gs, adaptive, eps=1e-12)
    ref = _hypot_norm(ws, gs, adaptive)
    assert math.isfinite(nrm) and abs(nrm - ref) <= 1e-12 * ref


@pytest.mark.parametrize("adaptive", [False, True])
def test_zero_and_non_finite_gradients_keep_their_norms(adaptive):
    """The rescan must not invent a norm: all-zero stays 0 (w untouched), NaN stays NaN."""
    ws, gs = _case(np.float64, adaptive, sizes=(33,))
    zero = [np.zeros_like(g) for g in gs]
    ps, nrm = _perturb(ws, zero, adaptive, eps=1e-12)
    assert nrm == 0.0 and all(p.tobytes() == w.tobytes() for p, w in zip(ps, ws))
    bad = [g.copy() for g in gs]
    bad[0][4] = np.nan
    bad[0][5] = 1e300
    ps, nrm = _perturb(ws, bad, adaptive, eps=1e-12)
    assert math.isnan(nrm) and all(p.tobytes() == w.tobytes() for p, w in zip(ps, ws))


# ---- optkern study: a run that finished as a dead network ------------------------------------

LN10 = math.log(10.0)
SE = math.sqrt(0.1 * 0.9 / 360)  # chance's standard error, 10 classes, 360 validation samples


@pytest.mark.parametrize(
    ("loss", "acc", "want"),
    [
        (LN10 + 0.06, 0.092, True),  # lr=5's end below: uniform-guess loss, chance accuracy
        (LN10, 0.1, True),  # exactly the uniform guess
        (LN10, 0.1 + 2.9 * SE, True),
        (LN10, 0.1 - 2.9 * SE, True),
        (LN10, 0.1 + 3.1 * SE, False),  # a few points above chance: it learned something
        (LN10, 0.1 - 3.1 * SE, False),
        (LN10 - 0.05, 0.1, False),  # loss below the uniform guess's: alive
        (0.4, 0.9, False),  # healthy
        (9.0, 0.5, False),  # far above ln C but clearly not chance
        (math.inf, 0.1, False),  # not finite: the divergence rule's case, not this one
        (math.nan, 0.1, False),
        (LN10, math.nan, False),
    ],
)
def test_collapsed_is_uniform_guess_loss_and_chance_accuracy(loss, acc, want):
    from optkern.study import divergence

    assert divergence.collapsed(loss, acc, 10, 360) is want


def test_collapsed_scales_with_classes_and_refuses_degenerate_sizes():
    from optkern.study import divergence

    se3 = math.sqrt(0.5 * 0.5 / 100)  # two classes, 100 samples
    assert divergence.collapsed(math.log(2.0), 0.5 + 2.9 * se3, 2, 100)
    assert not divergence.collapsed(math.log(2.0), 0.5 + 3.1 * se3, 2, 100)
    assert not divergence.collapsed(math.log(2.0) - 0.01, 0.5, 2, 100)
    assert divergence.collapsed(math.log(100.0), 0.01, 100, 1000)
    assert not divergence.collapsed(0.0, 1.0, 1, 360)  # one class: nothing to guess
    assert not divergence.collapsed(LN10, 0.1, 10, 0)  # no validation set: no accuracy to judge


@pytest.fixture(scope="module")
def digits():
    from optkern import datasets

    return datasets.load_digits().split(0.2, seed=0)


def _study(digits, lr):
    """The whole study result of test_hunt34_misc's quick SGD run, 3 epochs."""
    return _sgd_run(digits, lr, 3, whole=True)


def _row(md: str) -> str:
    (row,) = [x for x in md.splitlines() if x.startswith("| sgd | none |")]
    return row


@pytest.mark.parametrize(("lr", "collapsed"), [(5.0, True), (2.0, False)])
def test_a_study_run_that_died_at_a_high_lr_is_reported_collapsed(digits, tmp_path, lr, collapsed):
    # sgd at lr=5 on digits: its loss jumps to 3x the start, then the network dies and the cosine
    # schedule ends it at 2.37 nats (ln 10 = 2.30) with 9.2% validation accuracy -- it was "done".
    # lr=2 trains to ~91%: still "done".
    from pathlib import Path

    from optkern.study import report

    res = _study(digits, lr)
    (run,) = res["runs"]
    h = run["history"]
    assert run["status"] == "done"  # (within the divergence bound: the case at hand)
    assert run["collapsed"] is collapsed
    # the definition, checked against the run's own numbers (chance 0.1, 3 s.e. over the val set)
    n_val = digits[1].x.shape[0]
    dead = h["train_loss"][-1] >= LN10 and abs(h["val_acc"][-1] - 0.1) <= 3 * math.sqrt(0.09 / n_val)
    assert dead is collapsed
    md = Path(report.write_markdown(res, str(tmp_path), [])).read_text()
    row = _row(md)
    assert row.endswith("| collapsed to chance |" if collapsed else "| done |"), row
    assert ("Collapsed to chance:" in md) is collapsed
