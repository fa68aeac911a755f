"""Hunt 39i: a study interrupted (SIGTERM, Ctrl-C) with --seeds keeps the run in flight, whose last
epoch is an early one; the table's "final train loss" and "val accuracy" (and the train /
curvature seconds) averaged it with the finished seeds' last epoch: a mean +- s.d. of epoch 1's
loss and epoch 30's (0.95 +- 1.26 where the finished seed had 0.06), where the Hessian columns of
the same row pooled one epoch only and said "(1 of 2 seeds)". The loss, accuracy and time columns
now pool the seeds that reached the latest epoch, and say so."""

from optkern.study import report
from optkern.study import summary as S


def _run(seed, epochs, status, loss, acc, secs):
    return {
        "optimizer": "sgd",
        "norm": "batch",
        "seed": seed,
        "status": status,
        "steps": 10 * epochs,
        "train_time_s": secs,
        "curvature_time_s": secs / 2,
        "history": {
            "epoch": list(range(epochs + 1)),
            "train_loss": [2.0] * epochs + [loss],
            "val_acc": [0.1] * epochs + [acc],
        },
        "curvature": [{"epoch": epochs, "top_eigenvalues": [1.5], "trace": 50.0, "trace_stderr": 1.0}],
    }


RESULTS = {
    "config": {"seeds": 2, "epochs": 30},
    "interrupted": True,
    "runs": [_run(0, 1, "interrupted", 1.84, 0.79, 0.07), _run(1, 30, "done", 0.06, 0.97, 1.13)],
}


def test_the_means_pool_the_seeds_that_reached_the_last_epoch():
    (grp,) = S.groups(RESULTS)
    st = grp["stats"]
    for key, want in [("final_train_loss", 0.06), ("final_val_acc", 0.97), ("train_time_s", 1.13)]:
        assert st[key].n == 1 and st[key].mean == want, key
    assert st["curvature_time_s"].mean == 1.13 / 2
    assert st["step_ms"].n == 2  # (the cost of a step: every run's)


def test_the_table_says_which_seeds_its_loss_is_of():
    (line,) = [x for x in report._table(RESULTS) if x.startswith("| sgd | batch")]
    cells = [c.strip() for c in line.split("|")[1:-1]]
    assert cells[2] == "0.0600 (1 of 2 seeds)" and cells[3] == "0.970 (1 of 2 seeds)", cells


def test_finished_seeds_are_pooled_as_before():
    done = {
        **RESULTS,
        "interrupted": False,
        "runs": [_run(0, 30, "done", 0.1, 0.9, 1.0), _run(1, 30, "done", 0.3, 0.8, 1.2)],
    }
    (grp,) = S.groups(done)
    assert grp["stats"]["final_train_loss"].n == 2
    (line,) = [x for x in report._table(done) if x.startswith("| sgd | batch")]
    assert "of 2 seeds" not in line
