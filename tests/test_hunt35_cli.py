"""``optkern study --data``: files that trained on something other than what they hold.

A CSV whose numbers are all in double quotes (Python's ``csv.QUOTE_ALL``, or a quoted label
column) lost its first row: a quoted number is not a number to the header test, so the row was
taken for a header and dropped without a word (and its label became the label column's "name").
An .npz of long doubles whose values exceed float64's range had that column scaled by an
infinite peak: silently all zeros, "a constant column".
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from optkern import cli
from optkern.datasets import load_file

TINY = ["--quick", "--epochs", "1", "--hidden", "8", "--curvature-samples", "32", "--jobs", "1", "--no-plots"]
TINY += ["--optimizers", "sgd", "--norms", "none", "--quiet"]


def _data(n=60, d=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.integers(0, 3, n)


def _write_quoted(path, x, y, header=None, quote_features=True):
    with open(path, "w", newline="") as f:
        if header:
            f.write(",".join(f'"{h}"' for h in header) + "\n")
        for row, label in zip(x, y):
            feats = [f'"{v!r}"' if quote_features else repr(v) for v in row.tolist()]
            f.write(",".join([*feats, f'"{int(label)}"']) + "\n")


@pytest.mark.parametrize("quote_features", [True, False])
def test_a_quoted_first_data_row_is_not_a_header(tmp_path, quote_features):
    x, y = _data()
    path = tmp_path / "quoted.csv"
    _write_quoted(path, x, y, quote_features=quote_features)
    d = load_file(str(path))
    assert len(d.y) == len(y)  # was len(y) - 1: the first row read as a header and dropped
    assert "label from CSV column 4 of 4" in d.notes


def test_quote_all_csv_writer_keeps_every_row(tmp_path):
    x, y = _data()
    path = tmp_path / "qall.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f, quoting=csv.QUOTE_ALL)
        for row, label in zip(x.tolist(), y.tolist()):
            w.writerow([*row, label])
    assert len(load_file(str(path)).y) == len(y)


def test_a_quoted_header_is_still_a_header(tmp_path):
    x, y = _data()
    path = tmp_path / "qh.csv"
    _write_quoted(path, x, y, header=["a", "b", "c", "label"])
    d = load_file(str(path), label_column="label")
    assert len(d.y) == len(y)
    assert "label from the CSV's 'label'" in d.notes


def test_study_of_a_quoted_csv_trains_on_every_row(tmp_path):
    x, y = _data(n=50)
    path = tmp_path / "q.csv"
    _write_quoted(path, x, y)
    out = tmp_path / "out"
    assert cli.main(["study", *TINY, "--data", str(path), "--out", str(out)]) == 0
    data = (out / "report.md").read_text().split("Data: ")[1].split("\n")[0]
    assert "40 training / 10 validation" in data and "label from CSV column 4 of 4" in data, data
    assert json.loads((out / "results.json").read_text())["runs"]


@pytest.mark.skipif(np.finfo(np.longdouble).max <= np.finfo(np.float64).max, reason="long double is float64 here")
def test_long_double_features_beyond_float64_are_not_zeroed():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 3)).astype(np.longdouble)
    x[:, 1] *= np.longdouble(10) ** 4000  # finite in long double, past float64's max
    y = rng.integers(0, 2, 40)
    from optkern.datasets import _features
    from optkern.datasets._scaling import _standardized

    rows = np.arange(len(x))
    with np.errstate(over="raise"):
        (f,) = _standardized(_features(x, "ld.npz"), rows, (rows,), np.float32, "ld.npz")
    assert np.all(np.isfinite(f))
    np.testing.assert_allclose(f.std(0), 1.0, rtol=1e-5)  # column 1 was all zeros
    ref = np.asarray(x[:, 1] / np.abs(x[:, 1]).max(), dtype=np.float64)
    np.testing.assert_allclose(f[:, 1], (ref - ref.mean()) / ref.std(), rtol=1e-4, atol=1e-5)
    assert y.shape == (40,)


def test_pandas_column_number_header_is_a_header(tmp_path):
    # pd.DataFrame(np.c_[x, y]).to_csv(path, index=False) names the columns 0..n-1: that line was
    # read as a sample with label n-1, an extra class of one sample ("labels {0, 1, 2, 4}").
    x, y = _data()
    path = tmp_path / "pandas.csv"
    with open(path, "w") as f:
        f.write(",".join(str(i) for i in range(x.shape[1] + 1)) + "\n")
        for row, label in zip(x.tolist(), y.tolist()):
            f.write(",".join(map(repr, [*row, float(label)])) + "\n")
    d = load_file(str(path))
    assert len(d.y) == len(y) and d.num_classes == 3
    assert not any("renumbered" in n for n in d.notes), d.notes
    assert load_file(str(path), label_column="3").num_classes == 3


def test_a_two_column_zero_one_first_row_is_still_data(tmp_path):
    # "0,1" in a file of one feature and a label is as likely a sample as a header: kept
    path = tmp_path / "two.csv"
    rows = ["0,1"] + [f"{i / 10},{i % 2}" for i in range(1, 30)]
    path.write_text("\n".join(rows) + "\n")
    assert len(load_file(str(path)).y) == 30


@pytest.mark.parametrize(
    "args, words",
    [
        # --large-batch sets newton-cg's batches alone: with the default optimizers it did nothing
        (["--optimizers", "sgd,adam", "--large-batch", "128"], ("--large-batch:", "newton-cg", "--optimizers")),
        # --batch-size sets the mini-batch optimizers' batches: L-BFGS takes the whole training set
        (["--optimizers", "lbfgs", "--batch-size", "7"], ("--batch-size:", "lbfgs", "--optimizers")),
        (["--optimizers", "lbfgs,newton-cg", "--batch-size", "7"], ("--batch-size:", "--optimizers")),
    ],
)
def test_a_batch_option_no_run_uses_is_an_error(args, words, tmp_path, capsys, monkeypatch):
    import optkern.study as study

    monkeypatch.setattr(study, "run_study", lambda *a, **k: pytest.fail("the study ran"))
    rc = cli.main(["study", *TINY[:-5], "--norms", "none", "--quiet", *args, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err, err
    line = err.strip()
    assert len(line.splitlines()) == 1 and line.startswith("optkern study: error: "), err
    assert all(w in line for w in words), line


def test_batch_options_a_run_uses_are_accepted(tmp_path):
    args = ["study", *TINY[:-5], "--norms", "none", "--quiet", "--optimizers", "sgd,newton-cg"]
    args += ["--batch-size", "16", "--large-batch", "32", "--out", str(tmp_path / "o")]
    assert cli.main(args) == 0
    runs = json.loads((tmp_path / "o" / "results.json").read_text())["runs"]
    assert sorted(r["batch_size"] for r in runs) == [16, 32]


def _numpy_out_of_memory(*a, **k):
    # NumPy's MemoryError (as from --hidden 65536,65536), raised rather than provoked: a 1 PiB
    # request aborts the whole process under AddressSanitizer, which CI's sanitizer run preloads
    raise MemoryError("Unable to allocate 1.00 PiB for an array with shape (1125899906842624,) and data type uint8")


def test_a_study_out_of_memory_is_one_line_not_a_traceback(tmp_path, capsys, monkeypatch):
    import optkern.study as study

    monkeypatch.setattr(study, "run_study", _numpy_out_of_memory)
    rc = cli.main(["study", *TINY, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("optkern study: error: out of memory"), err
    assert "--hidden" in line and "--jobs" in line, line


def test_a_worker_that_died_is_one_line_not_a_traceback(tmp_path, capsys, monkeypatch):
    from concurrent.futures.process import BrokenProcessPool

    import optkern.study as study

    def broken(*a, **k):
        raise BrokenProcessPool("A process in the process pool was terminated abruptly")

    monkeypatch.setattr(study, "run_study", broken)
    rc = cli.main(["study", *TINY, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("optkern study: error: a worker process died"), err
    assert "--jobs" in line, line


def test_csv_integer_labels_past_2_53_stay_distinct(tmp_path):
    # A CSV's numbers were all read as float64, where 2**53 and 2**53 + 1 are one value: two classes
    # merged silently (the .npz path compares integer labels as integers).
    x, y = _data(n=60)
    labels = [str(2**53 + int(v)) for v in y]  # three classes, 2**53 + {0, 1, 2}
    path = tmp_path / "ids.csv"
    path.write_text("".join(",".join([*map(repr, r), lab]) + "\n" for r, lab in zip(x.tolist(), labels)))
    d = load_file(str(path))
    assert d.num_classes == 3
    np.testing.assert_array_equal(d.y, y)
    assert any("9007199254740992, 9007199254740993, 9007199254740994" in n for n in d.notes), d.notes


def test_csv_labels_past_uint64_are_refused(tmp_path):
    x, y = _data(n=60)
    path = tmp_path / "big.csv"
    path.write_text("".join(",".join([*map(repr, r), str(2**70 + int(v))]) + "\n" for r, v in zip(x.tolist(), y)))
    with pytest.raises(ValueError, match=r"labels must be integers in .*, got 1180591620717411303426"):
        load_file(str(path))


def test_a_batch_size_past_the_training_set_is_reported_as_the_batch_used(tmp_path):
    # --batch-size 100000 on 40 training rows trains with batches of 40; results.json and the
    # report said "batch 100000" (the Hessian's samples already said "asked for N; the training
    # set has M").
    x, y = _data(n=50)
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=y)
    out = tmp_path / "o"
    assert cli.main(["study", *TINY, "--batch-size", "100000", "--data", str(path), "--out", str(out)]) == 0
    run = json.loads((out / "results.json").read_text())["runs"][0]
    assert run["batch_size"] == 40 and run["steps"] == 1, run
    report = (out / "report.md").read_text()
    assert "batch 40 (asked for 100000; the training set has 40)" in report
    assert "| 40 |" in report and "| 100000 |" not in report


@pytest.mark.parametrize("column", ["", "  "])
def test_an_empty_label_column_names_the_option(column, tmp_path, capsys, monkeypatch):
    # --label-column "$COL" with COL unset said "hdr.csv: label column '' not found", as if a
    # column had been named
    import optkern.study as study

    monkeypatch.setattr(study, "run_study", lambda *a, **k: pytest.fail("the study ran"))
    x, y = _data()
    path = tmp_path / "hdr.csv"
    path.write_text(
        "a,b,c,label\n" + "".join(",".join(map(repr, [*r, float(v)])) + "\n" for r, v in zip(x.tolist(), y))
    )
    rc = cli.main(["study", *TINY, "--data", str(path), "--label-column", column, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and err.strip().startswith("optkern study: error: --label-column: no column given"), err


def test_a_previous_studys_figures_do_not_stay_beside_a_new_report(tmp_path):
    # A study with --no-plots (or without matplotlib) into a folder holding an earlier study's
    # figures left them there, beside a report that says the figures were skipped: stale plots of
    # other runs, looking current (report.md and results.json were already replaced).
    from optkern.study import OUTPUTS

    out = tmp_path / "o"
    out.mkdir()
    figures = [n for n in OUTPUTS if n.endswith(".png")]
    for name in figures:
        (out / name).write_bytes(b"\x89PNG old study")
    (out / "notes.txt").write_text("mine")
    assert cli.main(["study", *TINY, "--out", str(out)]) == 0
    assert not [n for n in figures if (out / n).exists()]
    assert (out / "notes.txt").read_text() == "mine"  # only the study's own files go


@pytest.mark.parametrize(
    "args, words",
    [
        (["--distributed", "--jobs", "2"], ("--jobs:", "MPI")),
        (["--device", "cuda", "--jobs", "2"], ("--jobs:", "GPU")),
    ],
)
def test_jobs_a_study_cannot_use_is_an_error(args, words, tmp_path, capsys, monkeypatch):
    # runs train one at a time on a GPU and under MPI (study_jobs): an explicit --jobs N was ignored
    import optkern.study as study

    monkeypatch.setattr(study, "run_study", lambda *a, **k: pytest.fail("the study ran"))
    rc = cli.main(["study", *TINY, *args, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("optkern study: error: ") and all(w in err for w in words), err


@pytest.mark.parametrize("jobs", ["0", "1"])
def test_jobs_0_or_1_under_mpi_is_accepted(jobs, tmp_path):
    out = tmp_path / "o"
    assert cli.main(["study", *TINY, "--distributed", "--jobs", jobs, "--out", str(out)]) == 0
    assert json.loads((out / "results.json").read_text())["runs"][0]["status"] == "done"
