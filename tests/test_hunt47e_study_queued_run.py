"""``optkern study --jobs N`` stopped by Ctrl-C (hunt 47e): a run queued for a worker stops too.

The pool hands one run more than it has workers to its call queue, where ``Future.cancel()``
cannot take it back. Interrupted, the study forwarded SIGINT to its workers once and waited for
every run it could not cancel: the queued one then started on a worker that had ignored the
signal while idle, and trained to its last epoch (a study of 3 seeds on 2 jobs went on for the
whole third run after the Ctrl-C). The study now signals its workers again until every run
returned. A run stopped before ``train_run`` named it has no record: it is named among the runs
not measured (it left ``{}`` among the runs).
"""

from __future__ import annotations

import json
import os
import signal

import pytest

from optkern.cli import main
from optkern.study import runner
from test_study_sigterm import _finish, _study, _wait, _workers_training

pytestmark = pytest.mark.skipif(not os.path.exists(f"/proc/{os.getpid()}/task"), reason="Linux /proc")


@pytest.mark.spawns
def test_ctrl_c_stops_a_run_queued_for_a_worker(tmp_path):
    out = tmp_path / "out"
    # three seeds: three runs sent to the pool at once, on 2 workers (one queued); 100,000 epochs:
    # only the signal ends them
    proc = _study(out, "--jobs", "2", "--optimizers", "sgd", "--seeds", "3", "--epochs", "100000")

    _wait(proc, lambda: _workers_training(proc.pid, 2))  # both workers in their runs
    err = _finish(proc, signal.SIGINT)  # (60 s: the queued run went on for its 100,000 epochs)
    assert proc.returncode == 130, err
    results = json.loads((out / "results.json").read_text())
    statuses = [r["status"] for r in results["runs"]]
    assert statuses in (["interrupted"] * 3, ["interrupted"] * 2), err
    # the queued run (seed 2: the pool takes the runs in seed order) either began and was stopped,
    # or is named among the runs not measured; the two running ones are never missing
    ran = sorted((r["optimizer"], r["norm"], r["seed"]) for r in results["runs"])
    queued = {"optimizer": "sgd", "norm": "none", "seed": 2}
    if len(statuses) == 3:
        assert ran == [("sgd", "none", s) for s in range(3)] and results["missing"] == [], err
    else:
        assert ran == [("sgd", "none", 0), ("sgd", "none", 1)] and results["missing"] == [queued], err


def test_a_run_stopped_before_it_began_is_named_not_an_empty_record(tmp_path, monkeypatch):
    real = runner.MLP
    made = []

    def mlp(*a, **k):  # Ctrl-C as the second run builds its network
        made.append(1)
        if len(made) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(runner, "MLP", mlp)
    out = tmp_path / "out"
    args = ["study", "--quick", "--optimizers", "sgd,adam", "--norms", "none", "--epochs", "1", "--hidden", "8"]
    args += ["--curvature-samples", "32", "--checkpoints", "2", "--jobs", "1", "--no-plots", "--quiet"]
    assert main([*args, "--out", str(out)]) == 130
    results = json.loads((out / "results.json").read_text())
    assert [r.get("optimizer") for r in results["runs"]] == ["sgd"]
    assert results["missing"] == [{"optimizer": "adam", "norm": "none", "seed": 0}]
