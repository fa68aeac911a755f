"""``optkern study --low-precision`` (study/lowprec.py): bfloat16 and float16 (loss-scaled)
weights with a float32 master, 8-bit Adam states and SWALP run through the study's loop and are
reported beside their float32 baselines, with the SWA average measured like a checkpoint."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from optkern import datasets, lowp
from optkern.study import lowprec, report, runner
from optkern.study.methods import LOW_PRECISION

needs_bf16 = pytest.mark.skipif(lowp.bfloat16_dtype() is None, reason="ml_dtypes (optkern[study]) not installed")


def _cfg(**kw):
    return runner.StudyConfig.quick(
        optimizers=["adam", "momentum", *LOW_PRECISION],
        norms=["none"],
        epochs=4,
        checkpoints=2,
        hidden=(12,),
        curvature_batch=48,
        low_precision=True,
        **kw,
    )


@pytest.fixture(scope="module")
def study():
    if lowp.bfloat16_dtype() is None:
        pytest.skip("ml_dtypes (optkern[study]) not installed")
    train, val = datasets.load_digits().split(0.2, seed=0)
    return runner.run_study(train, val, _cfg(), progress=False)


@needs_bf16
def test_bf16_weights_are_what_the_model_reads_exactly():
    p = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    w = lowprec.HalfWeights(p, "bfloat16")
    assert np.array_equal(p, lowp.from_half(lowp.to_bfloat16(p)))  # on the bfloat16 grid
    w.half[...] = lowp.to_bfloat16(np.full(1000, 1.0 + 2.0**-8, np.float32))  # a tie: rounds to 1.0
    w.sync()
    assert np.array_equal(p, np.ones(1000, np.float32))
    (g,) = w.grads([np.full(3, 1.0 + 3 * 2.0**-9, np.float32)])
    assert g.dtype == lowp.bfloat16_dtype() and float(g[0]) == 1.0 + 2.0**-7


def test_fp16_weights_take_scaled_gradients_and_skip_overflowed_steps():
    """float16 gradients are stored times the loss scale; an overflowed step changes nothing and
    backs the scale off; a finite one unscales in float32 inside the step."""
    from optkern import optim

    p = np.random.default_rng(0).standard_normal(64).astype(np.float32)
    w = lowprec.HalfWeights(p, "float16")
    assert w.scaler is not None and w.scaler.get_scale() == 2.0**16
    (g,) = w.grads([np.full(3, 2.0**-20, np.float32)])  # below float16's subnormals unscaled
    assert g.dtype == np.float16 and float(g[0]) == 2.0**-4
    opt = optim.Adam([w.half], lr=1e-3, master_weights=True)
    before = w.half.copy()
    w.step(opt, [np.full(64, 1.0, np.float32)])  # 65536 overflows float16: skipped
    assert w.skipped == 1 and w.scaler.get_scale() == 2.0**15 and np.array_equal(w.half, before)
    w.step(opt, [np.full(64, 2.0**-3, np.float32)])  # 4096: finite, a real step
    assert w.skipped == 1 and not np.array_equal(w.half, before)
    np.testing.assert_array_equal(p, w.half.astype(np.float32))  # the model reads the new weights


def test_swalp_averages_the_last_quarter_of_the_epochs_once_per_epoch():
    assert lowprec.extra_hyperparameters("swalp", 30, 23, 5) == {"swa_start": 23 * 23, "cycle": 23, "seed": 5}
    assert lowprec.extra_hyperparameters("swalp", 1, 7, 0) == {"swa_start": 7, "cycle": 7, "seed": 0}
    assert lowprec.extra_hyperparameters("adam-8bit", 30, 23, 5) == {}


def test_low_precision_runs_train_and_hold_the_memory_they_promise(study):
    runs = {r["optimizer"]: r for r in study["runs"]}
    assert set(runs) == {"adam", "momentum", *LOW_PRECISION}
    for name, r in runs.items():
        assert r["status"] == "done", name
        assert r["history"]["val_acc"][-1] > 0.3, name  # 10 classes (chance 0.1): every run learned
        assert r["history"]["train_loss"][-1] < r["history"]["train_loss"][0], name
    bytes_ = {n: r["state_bytes_per_param"] for n, r in runs.items()}
    assert bytes_["adam"] == 8.0 and bytes_["momentum"] == 4.0
    assert bytes_["adam-bf16"] == bytes_["adam-fp16"] == 12.0  # fp32 master + fp32 m, v
    n = runs["adam"]["num_params"]
    assert bytes_["adam-8bit"] == pytest.approx((2 * n + 2 * 4 * math.ceil(n / 256)) / n)
    assert bytes_["swalp"] == 8.0  # momentum buffer + SWA average
    # bf16 Adam tracks fp32 Adam closely on this problem; 8-bit states too
    for low in ("adam-bf16", "adam-fp16", "adam-8bit"):
        assert abs(runs[low]["history"]["train_loss"][-1] - runs["adam"]["history"]["train_loss"][-1]) < 0.05
    fp16 = runs["adam-fp16"]  # (this small problem's gradients fit in float16 at torch's 2^16)
    assert 0 <= fp16["skipped_steps"] < fp16["steps"] / 4 and 0 < fp16["loss_scale"] <= 2.0**16
    assert not any("loss_scale" in r for n, r in runs.items() if n != "adam-fp16")


def test_swa_average_is_measured_like_a_checkpoint(study):
    (swalp,) = [r for r in study["runs"] if r["optimizer"] == "swalp"]
    swa = swalp["swa"]
    assert swa["averaged_iterates"] == 4 - math.ceil(0.75 * 4) + 1
    assert len(swa["top_eigenvalues"]) == 3 and all(math.isfinite(v) for v in swa["top_eigenvalues"])
    assert 0.3 < swa["val_acc"] <= 1.0 and math.isfinite(swa["train_loss"])
    assert not any("swa" in r for r in study["runs"] if r["optimizer"] != "swalp")


def test_report_section_compares_each_run_with_its_baseline(study, tmp_path):
    lines = lowprec.report_section(study)
    text = "\n".join(lines)
    assert lines[0] == "## Low precision"
    for name in ("adam", "momentum", *LOW_PRECISION):
        assert f"| {name} | none |" in text
    swa = next(r for r in study["runs"] if r["optimizer"] == "swalp")["swa"]
    assert "| swalp (SWA average of 2 iterates) | none |" in text
    top = swa["top_eigenvalues"][0]
    last = next(r for r in study["runs"] if r["optimizer"] == "swalp")["curvature"][-1]["top_eigenvalues"][0]
    word = "flatter" if top < last else "sharper"
    assert f"the SWA average of swalp's iterates is {word} than its last iterate" in text
    md = Path(report.write_markdown(study, str(tmp_path), [])).read_text()
    assert "## Low precision" in md and "`optkern.swalp.SWALP`" in md
    assert lowprec.report_section({"runs": [r for r in study["runs"] if r["optimizer"] == "adam"]}) == []


def test_low_precision_on_a_gpu_is_refused_naming_the_flag():
    with pytest.raises(runner.ConfigError) as e:
        _cfg(device="cuda").validate()
    assert e.value.field == "low_precision" and "CPU only" in str(e.value)
