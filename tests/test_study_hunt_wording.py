"""Wording of `optkern study`'s report: what each number is (built from small hand-made results)."""

from optkern.study import captions
from optkern.study.lowprec import report_section
from optkern.study.summary import sharpness_sentences


def _curv(epoch, top=2.0):
    return {"epoch": epoch, "top_eigenvalues": [top], "grad_concentration": 0.5}


def test_loss_caption_says_epoch_0_is_the_whole_training_set_loss():
    caption = captions({"config": {"seeds": 1}, "runs": []})["loss.png"]
    # epoch 0's loss has no batches: it is measured on the whole training set before any step
    assert "at epoch 0, before any step, the loss over the whole training set" in caption
    assert "Training loss (mean over each epoch's batches" not in caption
    assert "Lines: mean over 2 seeds" in captions({"config": {"seeds": 2}, "runs": []})["loss.png"]


def _lowprec_run(name, status="done", diverged_epoch=None):
    epochs = [0, 1, 2] if status == "done" else [0, 1]
    return {
        "optimizer": name,
        "norm": "none",
        "seed": 0,
        "status": status,
        "diverged_epoch": diverged_epoch,
        "history": {"epoch": epochs, "train_loss": [1.0] * len(epochs), "val_acc": [0.5] * len(epochs)},
        "curvature": [_curv(0, 3.0), _curv(1, 4.0)] + ([_curv(2, 5.0)] if status == "done" else []),
        "state_bytes_per_param": 8.0,
    }


def test_lowprec_table_marks_a_diverged_runs_older_top_eigenvalue_with_its_epoch():
    runs = [_lowprec_run("adam"), _lowprec_run("adam-fp16", "diverged", 2)]
    text = "\n".join(report_section({"runs": runs}))
    (fp16,) = [line for line in text.splitlines() if line.startswith("| adam-fp16 (diverged at epoch 2) |")]
    assert "| 4 (epoch 1) |" in fp16  # its last measurement, before it diverged at epoch 2
    (adam,) = [line for line in text.splitlines() if line.startswith("| adam |")]
    assert "| 5 |" in adam and "(epoch" not in adam  # measured at its last epoch: no marker


def test_start_sentence_says_epoch_0_is_a_mean_over_seeds():
    runs = [
        {"optimizer": o, "norm": "none", "seed": s, "curvature": [_curv(0, 2.0 + s), _curv(3)]}
        for o in ("adam", "sgd")
        for s in (0, 1)
    ]
    (sentence,) = sharpness_sentences({"runs": runs, "checkpoint_epochs": [0, 3], "config": {"seeds": 2}})
    assert "is 2.5 at epoch 0 (mean over 2 seeds; the same weights for every optimizer" in sentence
    (one,) = sharpness_sentences(
        {"runs": [r for r in runs if r["seed"] == 0], "checkpoint_epochs": [0, 3], "config": {"seeds": 1}}
    )
    assert "mean over" not in one
