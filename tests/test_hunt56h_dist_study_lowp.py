"""Hunt 56h: ``optkern study --low-precision`` under ``mpiexec`` ended at its first step. The data-parallel
objective reduced the model's float32 gradient through the optimizer's own buckets
(``DistributedOptimizer.synchronize``), but a half-precision run's optimizer steps the bfloat16 /
float16 weights (``grads[0]: expected bfloat16, got float32``) and SWALP is no optkern optimizer
(``optimizer: expected an optkern optimizer, got SWALP``): a TypeError on every rank, before the first
step. Those runs now reduce the float32 gradient through the communicator (rank-ordered) and round it
as one process does; the runs agree with one process's to float32 rounding (measured: losses within
4e-8 relative, top eigenvalues within 4e-8)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from optkern import cli
from optkern.study import parallel
from test_distributed import launch

ARGS = ["study", "--quick", "--optimizers", "adam-bf16,adam-fp16,swalp,adam-8bit", "--norms", "none"]
ARGS += ["--epochs", "2", "--hidden", "8", "--curvature-samples", "16", "--no-plots"]


def _runs(path) -> dict:
    res = json.loads((path / "results.json").read_text())
    return {r["optimizer"]: r for r in res["runs"]}


@pytest.mark.spawns
def test_low_precision_runs_on_two_ranks_give_the_single_process_study(tmp_path, monkeypatch):
    pytest.importorskip("mpi4py")
    pytest.importorskip("ml_dtypes")
    res = launch(2, "-m", "optkern", *ARGS, "--out", str(tmp_path / "mpi"), timeout=300)
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    for var in parallel.WORLD_SIZE_VARS:  # the reference: one process
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert cli.main([*ARGS, "--quiet", "--out", str(tmp_path / "one")]) == 0
    two, one = _runs(tmp_path / "mpi"), _runs(tmp_path / "one")
    assert two.keys() == one.keys() == {"adam-bf16", "adam-fp16", "swalp", "adam-8bit"}
    for name, r1 in one.items():
        r2 = two[name]
        assert r1["status"] == r2["status"] == "done" and r1["steps"] == r2["steps"] > 0, name
        for k in ("train_loss", "val_loss"):
            np.testing.assert_allclose(r2["history"][k], r1["history"][k], rtol=1e-5, err_msg=f"{name} {k}")
        for c1, c2 in zip(r1["curvature"], r2["curvature"]):
            np.testing.assert_allclose(c2["top_eigenvalues"], c1["top_eigenvalues"], rtol=1e-4, err_msg=name)
    assert ("swa" in two["swalp"]) == ("swa" in one["swalp"])


def test_only_an_optimizer_of_the_model_params_reduces_through_its_buckets():
    p = np.ones(3, np.float32)

    class Groups:
        def __init__(self, *arrays):
            self.param_groups = [{"params": list(arrays)}]

    assert parallel._steps_params(Groups(p), p)
    assert not parallel._steps_params(Groups(p.astype(np.float16)), p)  # (half weights)
    assert not parallel._steps_params(Groups(p, p.copy()), p)
    assert not parallel._steps_params(object(), p)  # (SWALP: no param groups)
