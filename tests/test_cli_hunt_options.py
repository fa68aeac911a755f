"""``optkern study`` / ``optkern bench`` options that were silently ignored or failed late.

Each case used to run (or start) a study or a benchmark: an empty ``--optimizers ""`` ran the
whole default study, ``adam,adam`` trained adam twice and reported the copies as two seeds,
``--lr`` for an optimizer the study does not run did nothing, an output folder that could not be
written ended the study with a traceback after its first run, and ``bench --json`` into a missing
folder after all the measuring. Now each is one line on stderr and exit code 2, before any work.
"""

from __future__ import annotations

import json

import pytest

from optkern import cli
from optkern.benchmarks import dist, suite
from optkern.study import runner

TINY = ["--quick", "--epochs", "1", "--hidden", "8", "--curvature-samples", "32", "--jobs", "1", "--no-plots"]


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if a study starts training (every case must stop before)."""

    def refuse(*a, **k):
        raise AssertionError("the study ran")

    monkeypatch.setattr(runner, "run_study", refuse)
    import optkern.study as study

    monkeypatch.setattr(study, "run_study", refuse)


def _one_line_error(capsys, *words):
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("optkern "), err
    assert all(w in lines[0] for w in words), err
    return lines[0]


@pytest.mark.parametrize(
    "args, words",
    [
        (["--optimizers", ""], ("--optimizers:", "no optimizer given")),
        (["--optimizers", " , "], ("--optimizers:", "no optimizer given")),
        (["--norms", ""], ("--norms:", "no normalization given")),
        (["--hidden", ""], ("--hidden:",)),
        (["--optimizers", "adam,sgd,adam"], ("--optimizers:", "adam listed more than once")),
        (["--norms", "none,batch,none"], ("--norms:", "none listed more than once")),
        (["--optimizers", "sgd", "--lr", "adam=1e-3"], ("--lr:", "adam", "--optimizers")),
        (["--lr", "sam=0.1"], ("--lr:", "sam")),  # sam is not in the default set
    ],
)
def test_empty_duplicate_and_idle_options_are_errors(args, words, tmp_path, capsys, no_training):
    rc = cli.main(["study", *TINY, *args, "--out", str(tmp_path / "out"), "--quiet"])
    assert rc == 2
    _one_line_error(capsys, *words)
    assert not (tmp_path / "out" / "report.md").exists()


def test_lr_of_an_optimizer_added_by_low_precision_is_accepted(tmp_path):
    out = tmp_path / "out"
    args = ["study", *TINY, "--optimizers", "sgd", "--norms", "none", "--low-precision", "--lr", "adam-bf16=1e-3"]
    assert cli.main([*args, "--out", str(out), "--quiet"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["optimizers"]["adam-bf16"]["hyperparameters"]["lr"] == 1e-3


@pytest.mark.parametrize("name", ["results.json", "report.md", "loss.png"])
def test_an_output_that_is_a_directory_stops_before_training(name, tmp_path, capsys, no_training):
    (tmp_path / name).mkdir()
    rc = cli.main(["study", *TINY, "--out", str(tmp_path), "--quiet"])
    assert rc == 2
    _one_line_error(capsys, "--out", name, "not a file")


def test_an_unwritable_output_folder_stops_before_training(tmp_path, capsys, monkeypatch, no_training):
    import tempfile

    def denied(*a, **k):  # (the tests may run as root, which every permission bit lets through)
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", denied)
    rc = cli.main(["study", *TINY, "--out", str(tmp_path), "--quiet"])
    assert rc == 2
    _one_line_error(capsys, "--out", "cannot write", "Permission denied")


@pytest.fixture
def no_benchmarks(monkeypatch):
    """Benchmarks that measure nothing (the cases below must fail before any would run)."""
    monkeypatch.setattr(suite, "run", lambda *a, **k: [])
    monkeypatch.setattr(dist, "allreduce_rows", lambda *a, **k: [])
    monkeypatch.setattr(dist, "zero_rows", lambda *a, **k: [])


@pytest.mark.parametrize("where", ["missing/x.json", "."])
def test_bench_json_that_cannot_be_written_fails_first(where, tmp_path, capsys, no_benchmarks):
    path = tmp_path / where
    rc = cli.main(["bench", "hvp", "--quick", "--json", str(path)])
    assert rc == 2
    _one_line_error(capsys, "--json", str(path))
    assert not path.is_file()


def test_bench_json_check_leaves_no_file_behind_and_keeps_an_old_one(tmp_path, capsys, no_benchmarks):
    from optkern.benchmarks import env

    new, old = tmp_path / "new.json", tmp_path / "old.json"
    old.write_text("previous")
    env.check_output(str(new))
    env.check_output(str(old))
    assert not new.exists() and old.read_text() == "previous"
    assert cli.main(["bench", "hvp", "--quick", "--json", str(new)]) == 0
    assert json.loads(new.read_text())["rows"] == []


def test_bench_dist_refuses_cuda_instead_of_timing_the_cpu(capsys, no_benchmarks):
    rc = cli.main(["bench", "dist", "--quick", "--device", "cuda"])
    assert rc == 2
    _one_line_error(capsys, "--device cuda", "not supported")


def test_bench_dist_json_that_cannot_be_written_fails_first(tmp_path, capsys, no_benchmarks):
    pytest.importorskip("mpi4py")
    rc = cli.main(["bench", "dist", "--quick", "--json", str(tmp_path / "missing" / "x.json")])
    assert rc == 2
    _one_line_error(capsys, "--json", "cannot write")


def test_bench_dist_applies_threads(monkeypatch, no_benchmarks):
    pytest.importorskip("mpi4py")
    import optkern

    seen = []
    monkeypatch.setattr(dist, "zero_rows", lambda *a, **k: seen.append(optkern.get_num_threads()) or [])
    before = optkern.get_num_threads()
    assert cli.main(["bench", "dist", "--quick", "--threads", "1"]) == 0
    assert seen == [1] and optkern.get_num_threads() == before
