"""Hunt 39i: ``optkern study --data FILE`` splits the file 80/20 at random (by --seed); a class with
few samples could land wholly in the validation split, and the study trained on one class while the
report said "2 classes" (its runs then flagged as collapsed to chance). The file is refused when
its training split holds fewer than 2 classes, as a file of one class is, saying what to change."""

import numpy as np

from optkern import cli


def _rare(path):
    x = np.random.default_rng(1).standard_normal((40, 2)).astype(np.float32)
    y = np.zeros(40, int)
    y[0] = 1  # (--seed 1 puts sample 0 in the validation split, --seed 0 in the training one)
    np.savez(path, x=x, y=y)


ARGS = ["--quick", "--epochs", "1", "--norms", "none", "--hidden", "8", "--checkpoints", "2"]
ARGS += ["--curvature-samples", "16", "--optimizers", "sgd", "--no-plots", "--quiet"]


def test_a_training_split_of_one_class_is_refused(tmp_path, capsys):
    _rare(tmp_path / "rare.npz")
    out = tmp_path / "out"
    rc = cli.main(["study", *ARGS, "--data", str(tmp_path / "rare.npz"), "--seed", "1", "--out", str(out)])
    assert rc == 2
    err = capsys.readouterr().err
    assert "rare.npz" in err and "training split" in err and "1 of 2 classes" in err and "--seed" in err
    assert not (out / "report.md").exists()


def test_a_training_split_with_every_class_runs(tmp_path):
    _rare(tmp_path / "rare.npz")
    out = tmp_path / "out"
    assert cli.main(["study", *ARGS, "--data", str(tmp_path / "rare.npz"), "--seed", "0", "--out", str(out)]) == 0
    assert (out / "report.md").exists()
