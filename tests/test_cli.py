"""The ``optkern`` command line: ``study`` end to end, bad inputs, help and info.

The study runs in-process through ``optkern.cli.main`` on a reduced ``--quick``
configuration (two optimizers) to keep the suite fast; a few checks run the
real ``python -m optkern`` in a subprocess for exit codes and stderr.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import optkern
from optkern import cli
from optkern.study import runner

SRC = os.path.dirname(os.path.dirname(os.path.abspath(optkern.__file__)))
PNGS = ("loss.png", "accuracy.png", "top_eigenvalue.png", "spectral_density.png", "training_time.png")


def _has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _python_m(*args, timeout=120):
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
        [sys.executable, "-m", "optkern", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def _finite_numbers(obj, path="results"):
    """Every number in a JSON tree (booleans aside) is finite."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            _finite_numbers(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _finite_numbers(v, f"{path}[{i}]")
    elif isinstance(obj, float):
        assert math.isfinite(obj), f"{path} = {obj}"


# ---- the quick study, end to end ----------------------------------------------


@pytest.fixture(scope="module")
def quick_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    rc = cli.main(["study", "--quick", "--optimizers", "sgd,adam", "--out", str(out), "--quiet"])
    with open(out / "results.json") as f:
        results = json.load(f)
    return rc, out, results


def test_quick_study_writes_report_json_and_figures(quick_study):
    rc, out, results = quick_study
    assert rc == 0
    report = (out / "report.md").read_text()
    assert "| optimizer | norm |" in report
    for name in ("sgd", "adam"):
        for norm in ("none", "batch"):
            assert f"| {name} | {norm} |" in report
    if _has_matplotlib():
        for png in PNGS:
            data = (out / png).read_bytes()
            assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000, png
            assert f"({png})" in report


def test_quick_study_results_are_finite_and_the_loss_falls(quick_study):
    _, _, results = quick_study
    assert not results["interrupted"]
    runs = results["runs"]
    assert [(r["optimizer"], r["norm"]) for r in runs] == [
        ("sgd", "none"),
        ("adam", "none"),
        ("sgd", "batch"),
        ("adam", "batch"),
    ]
    _finite_numbers(results)
    cfg = results["config"]
    for r in runs:
        assert r["status"] == "done"
        h = r["history"]
        assert h["epoch"] == list(range(cfg["epochs"] + 1))
        assert h["train_loss"][-1] < 0.7 * h["train_loss"][0], (r["optimizer"], r["norm"], h["train_loss"])
        assert h["val_acc"][-1] > 0.5  # 10 classes: chance is 0.1
        assert [c["epoch"] for c in r["curvature"]] == runner.StudyConfig.quick().checkpoint_epochs()
        for c in r["curvature"]:
            top = c["top_eigenvalues"]
            assert len(top) == cfg["top_k"] and top == sorted(top, reverse=True) and top[0] > 0
            assert 0 <= c["grad_concentration"] <= 1 + 1e-6
            # The trace is the sum of all eigenvalues; the SLQ density integrates to about 1.
            grid, dens = np.array(c["density"]["grid"]), np.array(c["density"]["density"])
            assert abs(np.trapezoid(dens, grid) - 1) < 0.05
            assert grid[-1] >= top[0] * 0.99


def test_quick_study_is_reproducible(quick_study, tmp_path):
    _, _, results = quick_study
    rc = cli.main(
        ["study", "--quick", "--optimizers", "sgd", "--norms", "none", "--out", str(tmp_path), "--quiet", "--no-plots"]
    )
    assert rc == 0
    again = json.loads((tmp_path / "results.json").read_text())["runs"][0]
    first = results["runs"][0]
    assert again["history"]["train_loss"] == first["history"]["train_loss"]
    assert again["curvature"][-1]["top_eigenvalues"] == first["curvature"][-1]["top_eigenvalues"]
    assert not any(p.suffix == ".png" for p in tmp_path.iterdir())


TINY = ["--quick", "--optimizers", "sgd", "--norms", "none", "--epochs", "1", "--checkpoints", "1", "--quiet"]


def test_without_matplotlib_the_study_runs_and_says_plots_were_skipped(monkeypatch, tmp_path, capsys):
    for mod in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    rc = cli.main(["study", *TINY[:-1], "--out", str(tmp_path)])
    assert rc == 0
    err = capsys.readouterr().err
    assert "plots skipped" in err and "matplotlib" in err
    assert "skipped" in (tmp_path / "report.md").read_text()
    assert not any(p.suffix == ".png" for p in tmp_path.iterdir())


def test_ctrl_c_leaves_a_valid_partial_report(monkeypatch, tmp_path, capsys):
    real = runner.train_run
    calls = []

    def interrupted_second_run(*args, **kw):
        calls.append(1)
        if len(calls) == 2:
            rec = args[5]
            rec.update(
                optimizer=args[0],
                norm=args[1],
                status="running",
                history={"epoch": [0], "train_loss": [2.3], "val_loss": [2.3], "val_acc": [0.1]},
                curvature=[],
            )
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(runner, "train_run", interrupted_second_run)
    rc = cli.main(
        [
            "study",
            "--quick",
            "--optimizers",
            "sgd,adam",
            "--norms",
            "none",
            "--epochs",
            "1",
            "--checkpoints",
            "1",
            "--jobs",
            "1",  # in this process, where the patch is (worker processes: tests/test_study_jobs.py)
            "--no-plots",
            "--out",
            str(tmp_path),
        ]
    )
    assert rc == 130
    assert "interrupted" in capsys.readouterr().err
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["interrupted"] is True
    assert [r["status"] for r in results["runs"]] == ["done", "interrupted"]
    report = (tmp_path / "report.md").read_text()
    assert "Interrupted" in report and "| sgd | none |" in report and "| interrupted |" in report


# ---- bad --data and bad options: one line on stderr, exit code 2 ---------------


def _bad_inputs(tmp):
    cases = {"missing file": str(tmp / "nope.npz")}
    p = tmp / "ragged.csv"
    p.write_text("1,2,3,0\n4,5,1\n7,8,9,1\n")
    cases["csv with a short row"] = str(p)
    p = tmp / "one_column.csv"
    p.write_text("\n".join(str(i % 2) for i in range(20)) + "\n")
    cases["csv with only a label column"] = str(p)
    p = tmp / "nan.csv"
    rows = [f"{i},{i * 0.5},{i % 2}" for i in range(20)]
    rows[3] = "1,nan,0"
    p.write_text("\n".join(rows) + "\n")
    cases["csv with NaN"] = str(p)
    p = tmp / "text.csv"
    p.write_text("a,b,label\n1,x,0\n2,y,1\n")
    cases["csv with text"] = str(p)
    p = tmp / "no_y.npz"
    np.savez(p, x=np.random.default_rng(0).standard_normal((20, 3)))
    cases["npz without y"] = str(p)
    p = tmp / "too_many_labels.npz"
    np.savez(p, x=np.random.default_rng(0).standard_normal((20, 3)), y=np.arange(20))
    cases["more classes than fit"] = str(p)
    p = tmp / "fractional.npz"
    np.savez(p, x=np.random.default_rng(0).standard_normal((20, 3)), y=np.linspace(0, 1, 20))
    cases["fractional labels"] = str(p)
    p = tmp / "mismatch.npz"
    np.savez(p, x=np.random.default_rng(0).standard_normal((20, 3)), y=np.arange(19) % 2)
    cases["x and y lengths differ"] = str(p)
    p = tmp / "data.txt"
    p.write_text("1,2\n")
    cases["unknown extension"] = str(p)
    p = tmp / "folder.csv"
    p.mkdir()
    cases["a directory"] = str(p)
    p = tmp / "empty.csv"
    p.write_text("")
    cases["empty csv"] = str(p)
    p = tmp / "header_only.csv"
    p.write_text("a,b,label\n")
    cases["csv with only a header"] = str(p)
    p = tmp / "nan_first.csv"
    p.write_text("\n".join(["nan,1,0"] + [f"{i},{i * 0.5},{i % 2}" for i in range(1, 20)]) + "\n")
    cases["csv with NaN in the first row"] = str(p)
    x, y = np.random.default_rng(0).standard_normal((20, 3)), np.arange(20) % 2
    npz = {
        "scalar y": dict(x=x, y=np.array(1)),
        "no feature columns": dict(x=x[:, :0], y=y),
        "complex features": dict(x=x + 1j, y=y),
        "byte-string labels": dict(x=x, y=np.array([b"cat", b"dog"] * 10)),
    }
    for name, arrays in npz.items():
        p = tmp / (name.replace(" ", "_") + ".npz")
        np.savez(p, **arrays)
        cases[name] = str(p)
    return cases


# The message must name the problem, not just the file.
BAD_DATA_WORDS = {
    "missing file": "no such file",
    "csv with a short row": "columns",
    "csv with only a label column": "feature column",
    "csv with NaN": "NaN",
    "csv with text": "numeric",
    "npz without y": "'y'",
    "more classes than fit": "does not fit",
    "fractional labels": "integers",
    "x and y lengths differ": "n == len(y)",
    "unknown extension": "unsupported",
    "a directory": "directory",
    "empty csv": "empty",
    "csv with only a header": "no data rows",
    "csv with NaN in the first row": "NaN",
    "scalar y": "one-dimensional",
    "no feature columns": "no feature columns",
    "complex features": "real numbers",
    "byte-string labels": "labels must be integers or class names",
}


@pytest.mark.filterwarnings("error")  # a warning (say numpy's on an empty file) must not reach stderr either
@pytest.mark.parametrize("case", list(BAD_DATA_WORDS))
def test_bad_data_gives_one_line_and_exit_code_2(case, tmp_path, capsys):
    path = _bad_inputs(tmp_path)[case]
    rc = cli.main(["study", "--data", path, "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("optkern study: error: ") and os.path.basename(path) in lines[0]
    assert BAD_DATA_WORDS[case] in lines[0], lines[0]
    assert not (tmp_path / "out" / "report.md").exists()


@pytest.mark.parametrize("data, batch", [("n81.npz", None), (None, "479")])
def test_batch_norm_with_a_one_row_last_batch(data, batch, tmp_path):
    # 81 samples -> 65 training rows: batch 64 leaves one row; digits' 1,438 rows do at 479.
    args = ["study", *TINY[:3], "--norms", "batch", *TINY[5:], "--no-plots", "--out", str(tmp_path / "out")]
    if data:
        rng = np.random.default_rng(0)
        np.savez(tmp_path / data, x=rng.standard_normal((81, 4)), y=np.arange(81) % 3)
        args += ["--data", str(tmp_path / data)]
    if batch:
        args += ["--batch-size", batch]
    assert cli.main(args) == 0
    run = json.loads((tmp_path / "out" / "results.json").read_text())["runs"][0]
    assert run["status"] == "done" and math.isfinite(run["history"]["train_loss"][-1])


@pytest.mark.parametrize(
    "args, words",
    [
        (["--optimizers", "sgd,lion"], ("--optimizers:", "lion")),
        (["--norms", "group"], ("--norms:", "group")),
        (["--epochs", "0"], ("--epochs: must be >= 1",)),
        (["--hidden", "64,x"], ("--hidden:",)),
        (["--threads", "0"], ("--threads:",)),
        (["--curvature-samples", "0"], ("--curvature-samples: must be >= 1",)),
        (["--batch-size", "1"], ("--batch-size: batch norm needs at least 2",)),
        (["--seeds", "0"], ("--seeds:",)),
        (["--checkpoints", "0"], ("--checkpoints:",)),
        (["--lr", "adam"], ("--lr: expected NAME=VALUE",)),
        (["--lr", "adam=fast"], ("--lr:", "'fast' is not a number")),
        (["--lr", "lion=1e-3"], ("--lr:", "lion")),
        (["--lr", "sgd=-1"], ("--lr:", "positive")),
        (["--label-column", "2"], ("--label-column:", ".csv")),
    ],
)
def test_bad_options_give_one_line_naming_the_flag_and_exit_code_2(args, words, tmp_path, capsys):
    rc = cli.main(["study", *args, "--out", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert all(w in err for w in words), err
    for field in ("curvature_batch", "batch_size", "overrides"):  # internal names never reach the user
        assert field not in err, err


@pytest.mark.spawns
def test_python_m_bad_data_exits_2_without_traceback(tmp_path):
    r = _python_m("study", "--data", str(tmp_path / "missing.csv"), "--out", str(tmp_path))
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr
    assert "missing.csv: no such file" in r.stderr


@pytest.mark.spawns
def test_python_m_study_help_explains_the_study():
    r = _python_m("study", "--help")
    assert r.returncode == 0 and r.stderr == ""
    for word in ("--quick", "--data", "--optimizers", "--out", "Hessian", "batch norm", "report.md"):
        assert word in r.stdout, word


@pytest.mark.spawns
def test_version_flag():
    r = _python_m("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"optkern {optkern.__version__}"


def test_quiet_still_prints_where_the_report_is(tmp_path, capsys):
    assert cli.main(["study", *TINY, "--no-plots", "--out", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == f"report: {tmp_path / 'report.md'}" and err == ""


def test_default_output_folder_is_git_ignored():
    default = cli._parser().parse_args(["study"]).out
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the checkout, also when optkern is installed
    with open(os.path.join(root, ".gitignore")) as f:
        ignored = f.read().split()
    assert f"/{default}/" in ignored


def test_csv_with_labels_from_1_and_a_label_column_is_remapped_and_said(tmp_path, capsys):
    rng = np.random.default_rng(0)
    y = np.arange(60) % 3 + 1  # classes 1, 2, 3: no empty class 0
    x = rng.standard_normal((60, 4)) + y[:, None]
    lines = ["species,a,b,c,d"] + [",".join([str(y[i]), *(f"{v:.4f}" for v in x[i])]) for i in range(60)]
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    rc = cli.main(
        [
            "study",
            *TINY,
            "--no-plots",
            "--data",
            str(tmp_path / "d.csv"),
            "--label-column",
            "species",
            "--curvature-samples",
            "1000",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert rc == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["num_classes"] == 3 and results["num_features"] == 4
    assert results["curvature_samples"] == results["num_train"] == 48  # what was used, not what was asked
    report = (tmp_path / "out" / "report.md").read_text()
    for phrase in (
        "labels {1, 2, 3} renumbered 0..2",
        "features standardized",
        "label from the CSV's 'species'",
        "on the same 48 training samples for every run (asked for 1000",
    ):
        assert phrase in report, phrase
    # Without --label-column the last column (fractional) is read as the label: the error says what to do.
    capsys.readouterr()
    rc = cli.main(["study", *TINY, "--data", str(tmp_path / "d.csv"), "--out", str(tmp_path / "out2")])
    err = capsys.readouterr().err
    assert rc == 2 and "choose another with --label-column" in err, err


def test_seeds_2_runs_each_configuration_twice_and_plots_mean_and_spread(tmp_path):
    rc = cli.main(
        [
            "study",
            "--quick",
            "--optimizers",
            "sgd,adam",
            "--norms",
            "none,batch",
            "--epochs",
            "2",
            "--checkpoints",
            "2",
            "--hidden",
            "16",
            "--curvature-samples",
            "64",
            "--seeds",
            "2",
            "--lr",
            "adam=3e-3",
            "--quiet",
            "--out",
            str(tmp_path),
        ]
    )
    assert rc == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert [(r["optimizer"], r["norm"], r["seed"]) for r in results["runs"]] == [
        (o, n, s) for n in ("none", "batch") for o in ("sgd", "adam") for s in (0, 1)
    ]
    assert results["runs"][0]["history"]["train_loss"] != results["runs"][1]["history"]["train_loss"]
    assert results["optimizers"]["adam"]["hyperparameters"]["lr"] == 3e-3
    report = (tmp_path / "report.md").read_text()
    assert "| sgd | none |" in report and " ± " in report and "done (2 seeds)" in report
    assert "**lr=0.003**" in report and "## Summary" in report
    if _has_matplotlib():
        for png in PNGS:
            data = (tmp_path / png).read_bytes()
            assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000, png
            assert f"({png})" in report
        assert "Lines: mean over 2 seeds" in report  # the captions say what the bands are


@pytest.mark.spawns
def test_python_m_info_and_no_command():
    r = _python_m("info")
    assert r.returncode == 0
    assert "version" in r.stdout and optkern.__version__ in r.stdout and "threads" in r.stdout
    r = _python_m()
    assert r.returncode == 0 and "study" in r.stdout


def test_out_that_is_a_file_gives_one_line_and_exit_code_2(tmp_path, capsys):
    f = tmp_path / "taken"
    f.write_text("x")
    rc = cli.main(["study", *TINY, "--out", str(f)])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "--out" in err and "Traceback" not in err, err


def test_ctrl_c_inside_a_run_keeps_what_it_measured(monkeypatch, tmp_path):
    real = runner.curvature
    calls = []

    def interrupt_second_measurement(*a, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(runner, "curvature", interrupt_second_measurement)
    rc = cli.main(
        [
            "study",
            *TINY[:2],
            "sgd",
            "--norms",
            "none",
            "--epochs",
            "2",
            "--checkpoints",
            "2",
            "--quiet",
            "--out",
            str(tmp_path),
        ]
    )
    assert rc == 130
    results = json.loads((tmp_path / "results.json").read_text())
    run = results["runs"][0]
    assert results["interrupted"] and run["status"] == "interrupted"
    assert [c["epoch"] for c in run["curvature"]] == [0] and run["history"]["epoch"] == [0, 1]
    assert run["train_time_s"] > 0
    report = (tmp_path / "report.md").read_text()
    assert "Interrupted" in report and "| sgd | none |" in report
    if _has_matplotlib():
        assert (tmp_path / "loss.png").exists()
