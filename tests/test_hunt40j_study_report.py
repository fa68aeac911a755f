"""report.md of an interrupted study (40th hunt, j): the run in flight at a Ctrl-C or SIGTERM keeps
the epochs it logged, possibly epoch 0 alone (the initial weights). The summary's "Final validation
accuracy ranges from 0.100 (adam without normalization) ..." then quoted the untrained network's
accuracy as a final one, and the results table gave its loss and accuracy under "final train loss"
/ "val accuracy" with no word of the epoch they are from (the Hessian columns of the same row say
"(epoch N)"). And a study of one configuration said "ranges from 0.638 (sgd ...) to 0.638 (sgd ...)"
(the time caption likewise "from 1.12 ms (sgd ...) to 1.12 ms (sgd ...)")."""

from __future__ import annotations

from optkern.study import report
from optkern.study import summary as S


def _run(optimizer, epochs, status, acc):
    return {
        "optimizer": optimizer,
        "norm": "none",
        "seed": 0,
        "status": status,
        "steps": 10 * epochs,
        "train_time_s": 0.1 * epochs,
        "curvature_time_s": 0.1,
        "history": {
            "epoch": list(range(epochs + 1)),
            "train_loss": [2.3] * epochs + [0.5 if epochs else 2.3],
            "val_acc": [0.1] * epochs + [acc],
        },
        "curvature": [{"epoch": 0, "top_eigenvalues": [6.5], "trace": 50.0, "trace_stderr": 1.0}],
    }


def _results(*runs):
    return {"config": {"seeds": 1, "epochs": 3}, "checkpoint_epochs": [0, 3], "num_val": 359, "runs": list(runs)}


INTERRUPTED = {**_results(_run("sgd", 3, "done", 0.85), _run("adam", 0, "interrupted", 0.1)), "interrupted": True}


def test_summary_quotes_no_interrupted_run_as_final():
    text = S.accuracy_sentence(INTERRUPTED)
    assert "0.100" not in text and "adam" not in text, text
    assert "0.850 (sgd without normalization)" in text, text


def test_summary_of_interrupted_runs_only_quotes_no_final_accuracy():
    results = {**_results(_run("adam", 1, "interrupted", 0.7)), "interrupted": True}
    assert S.accuracy_sentence(results) == ""


def test_table_says_the_epoch_of_an_interrupted_runs_loss_and_accuracy():
    (row,) = [ln for ln in report._table(INTERRUPTED) if ln.startswith("| adam |")]
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[2] == "2.3000 (epoch 0)" and cells[3] == "0.100 (epoch 0)", cells
    assert cells[4] == "6.5 (epoch 0)" and cells[5] == "50 (epoch 0)", cells  # as its Hessian's cells say
    (done,) = [ln for ln in report._table(INTERRUPTED) if ln.startswith("| sgd |")]
    assert "epoch" not in done.split("|")[3] + done.split("|")[4], done  # trained to the end: no note


def test_one_configuration_is_no_range():
    text = S.accuracy_sentence(_results(_run("sgd", 3, "done", 0.638)))
    assert "ranges" not in text, text
    assert text.startswith("Final validation accuracy is 0.638 (sgd without normalization)"), text


def test_time_caption_of_one_configuration_is_no_range():
    text = S.time_caption(_results(_run("sgd", 3, "done", 0.638)))
    assert " to " not in text, text
    assert "step (forward, backward and the optimizer's update, mean over the run's steps): 10.00 ms (sgd" in text
