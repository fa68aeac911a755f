"""The study's memory estimates against measured peaks (55th hunt, c).

``run_bytes`` is a floor (``check_memory`` refuses by it: it never refuses a run that fits); h321
measured 158 copies of the weights where it counts 81 for the default config, and the default
``--jobs`` cap used that floor, so it could start twice the workers the memory held. The cap now
counts runs by ``run_bytes_high``: the floor's Hessian part times the measured factor, the curvature
batch's activations and the pool's cap. Measured here: tracemalloc's peak of one checkpoint's
Hessian measurements (after a first call, whose one-time allocations are not a run's), between the
two estimates, for three configurations."""

from __future__ import annotations

import tracemalloc

import pytest

from optkern import nn
from optkern.datasets import load_digits
from optkern.study import config as C
from optkern.study.hessian_measures import curvature

CONFIGS = [
    ("quick", (256, 256), 8),
    ("default", (128, 128), 8),
    ("default", (32, 32), 64),  # (narrow, a larger batch: the activations count)
]


@pytest.mark.parametrize("which, hidden, batch", CONFIGS)
def test_measured_peak_lies_between_the_floor_and_the_estimate_from_above(which, hidden, batch):
    train, _ = load_digits().split(val_fraction=0.2, seed=0)
    kw = dict(hidden=hidden, curvature_batch=batch)
    cfg = C.StudyConfig.quick(**kw) if which == "quick" else C.StudyConfig(**kw)
    model = nn.MLP([64, *hidden, 10], activation="tanh")
    params = model.init_params(seed=0)
    x, y = train.x[:batch], train.y[:batch]
    warm = C.StudyConfig.quick(hidden=(8,), curvature_batch=4)  # (one-time allocations: caches, imports)
    curvature(nn.MLP([64, 8, 10]), nn.MLP([64, 8, 10]).init_params(0), x[:4], y[:4], warm, seed=0)
    tracemalloc.start()
    try:
        curvature(model, params, x, y, cfg, seed=1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    training = 4 * C._COPIES * model.num_params  # (the weights, gradient and states: not measured here)
    floor = C.run_bytes(cfg, 64, 10) - training
    high = C.run_bytes_high(cfg, 64, 10) - training
    copies = 4 * model.num_params
    assert floor <= peak <= high, (floor / copies, peak / copies, high / copies)
    if batch <= 8:  # (weights dominate: the measured factor itself bounds the Hessian part)
        assert peak <= C.MEASURED_FACTOR * floor, (peak / copies, floor / copies)


def test_the_default_jobs_cap_counts_runs_by_the_estimate_from_above():
    cfg = C.StudyConfig(hidden=(1024, 1024))
    high = C.run_bytes_high(cfg, 64, 10)
    assert high >= C.MEASURED_FACTOR * (C.run_bytes(cfg, 64, 10) - 4 * C._COPIES * C.model_weights(cfg, 64, 10))
    assert C.runs_that_fit(cfg, 64, 10, available=3 * high) == 3
    assert C.runs_that_fit(cfg, 64, 10, available=3 * high - 1) == 2
    # the refusal keeps the floor: a run that fits by the floor is not refused
    C.check_memory(cfg, 64, 10, available=C.run_bytes(cfg, 64, 10))
