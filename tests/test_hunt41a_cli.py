"""The ``optkern`` command's console and options (defect hunt 41a).

Defect fixed: ``optkern study ... 2>&1 | head -1``: the reader left after the first line and the
next progress line raised BrokenPipeError: the study stopped (exit 141) before it wrote
``report.md``; ``optkern study ... | head`` wrote its files, then exited 141 at the last line
(``report: ...``). The study's product is its files: once the reader of its console is gone, the
rest of the console output is discarded (its descriptor pointed at /dev/null, as ``optkern info |
head`` did already) and the study runs on, writes every file and exits with its own code. The same
for ``optkern bench --json FILE`` (its progress on stderr stopped the suites before FILE was
written); without ``--json`` there is nothing to keep, and ``bench`` still stops with 141.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import optkern

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(optkern.__file__)))

# `optkern study` (the smallest: one optimizer, one norm, one epoch) whose runs wait until the reader
# of its console is gone (the marker file): what comes after the first line meets a closed pipe
_STUDY = """
import os, sys, time
import optkern.study as study

real = study.run_study

def run_study(*a, **kw):
    while not os.path.exists(sys.argv[1]):
        time.sleep(0.01)
    return real(*a, **kw)

study.run_study = run_study
from optkern.cli import main
sys.exit(main(["study", "--quick", "--optimizers", "sgd", "--norms", "none", "--epochs", "1",
               "--no-plots", "--jobs", "1", "--out", sys.argv[2]]))
"""


def _first_line_then_gone(args: list, marker, stderr_too: bool):
    """Run ``args`` (a ``python -c`` child), read one line of its stdout (with its stderr in the
    same pipe: ``2>&1 | head -1``), close the pipe, let it go on (the marker); its exit status and
    stderr (when apart)."""
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    with subprocess.Popen(
        [sys.executable, "-c", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if stderr_too else subprocess.PIPE,
        text=True,
    ) as p:
        try:
            first = p.stdout.readline() if stderr_too else ""
            p.stdout.close()
            marker.write_text("")
            err = "" if stderr_too else p.stderr.read()
            rc = p.wait(timeout=240)
        finally:
            p.kill()
    return first, rc, err


@pytest.mark.spawns  # (Python orchestration: deselected under the sanitizer, .ci/sanitize)
@pytest.mark.parametrize("stderr_too", [True, False], ids=["2>&1 | head -1", "| head"])
def test_study_writes_its_files_and_exits_0_when_the_console_s_reader_left(tmp_path, stderr_too):
    marker, out = tmp_path / "reader-gone", tmp_path / "study"
    first, rc, err = _first_line_then_gone([_STUDY, str(marker), str(out)], marker, stderr_too)
    if stderr_too:
        assert first.startswith("optkern study: 1 optimizer x "), first
    assert rc == 0, err
    assert "Traceback" not in err, err
    assert sorted(os.listdir(out)) == ["report.md", "results.json"]
    results = json.loads((out / "results.json").read_text())
    assert not results["interrupted"]
    assert "sgd" in (out / "report.md").read_text()


# `optkern bench --json FILE` over two fake suites (no measuring): the first waits until the reader
# is gone, so the progress line of the second (stderr) meets the closed pipe
_BENCH = """
import os, sys, time
from optkern.benchmarks import suite
from optkern.benchmarks.timing import Row, Timing

def first(device, quick, threads):
    while not os.path.exists(sys.argv[1]):
        time.sleep(0.01)
    return [Row("norm", "first case", Timing(1.0, 0.9, 1.1, 3))]

suite.SUITES["norm"] = first
suite.SUITES["hvp"] = lambda device, quick, threads: [Row("hvp", "second case", Timing(2.0, 1.9, 2.1, 3))]
suite.ALL = ("norm", "hvp")
from optkern.cli import main
sys.exit(main(["bench", "all", "--quick", "--json", sys.argv[2]]))
"""


@pytest.mark.spawns
def test_bench_json_is_written_and_exits_0_when_the_reader_of_its_console_left(tmp_path):
    marker, out = tmp_path / "reader-gone", tmp_path / "bench.json"
    first, rc, _ = _first_line_then_gone([_BENCH, str(marker), str(out)], marker, stderr_too=True)
    assert "CPU" in first
    assert rc == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["case"] for r in rows] == ["first case", "second case"]


# Defect fixed: the command's numbers were read by Python's int() / float(), which take what no one
# typing an option means: `--lr sgd=1_0` trained at 10 (and diverged), `--epochs 1_0` ran 10
# epochs, `--seed ١` (an Arabic-Indic digit) seeded 1, `--label-column 1_0` took column 10. Every
# numeric option is now read by optkern._cli_numbers: ASCII digits, a sign, for a real a point and
# an exponent; exit 2 with the option named. ("nan" / "inf" learning rates were refused already.)
_SMALL = ["study", "--quick", "--optimizers", "sgd", "--norms", "none", "--no-plots", "--jobs", "1"]


@pytest.mark.parametrize("value", ["sgd=1_0", "sgd=0.0_5", "sgd=١", "sgd=nan", "sgd=-inf", "sgd=infinity", "sgd=1e999"])
def test_study_lr_that_float_takes_but_no_user_means_is_refused_naming_lr(tmp_path, capsys, value):
    from optkern.cli import main

    assert main([*_SMALL, "--out", str(tmp_path / "s"), "--lr", value]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("optkern study: error: --lr: "), err
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    "option",
    [
        "--epochs",
        "--batch-size",
        "--large-batch",
        "--checkpoints",
        "--curvature-samples",
        "--seed",
        "--seeds",
        "--threads",
        "--jobs",
    ],
)
@pytest.mark.parametrize("value", ["1_0", "١", "0x1"])
def test_study_integer_options_refuse_underscores_and_other_digits_naming_the_option(tmp_path, capsys, option, value):
    from optkern.cli import main

    with pytest.raises(SystemExit) as e:  # (argparse's: its usage, then the one error line)
        main([*_SMALL, "--out", str(tmp_path / "s"), option, value])
    assert e.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"optkern study: error: argument {option}: "), last
    assert not (tmp_path / "s").exists()


def test_bench_threads_refuses_underscores(capsys):
    from optkern.cli import main

    with pytest.raises(SystemExit) as e:
        main(["bench", "norm", "--quick", "--threads", "1_0"])
    assert e.value.code == 2
    assert "argument --threads: " in capsys.readouterr().err


@pytest.mark.parametrize("value", ["1_6", "١٦"])
def test_study_hidden_refuses_underscores_and_other_digits(tmp_path, capsys, value):
    from optkern.cli import main

    assert main([*_SMALL, "--out", str(tmp_path / "s"), "--hidden", value]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("optkern study: error: --hidden: "), err


def test_study_strict_numbers_still_take_what_users_write():
    from optkern.cli import _parser
    from optkern.study import parse_lr

    args = _parser().parse_args([*_SMALL, "--epochs", "+3", "--seed", " -0", "--hidden", "16, 8"])
    assert (args.epochs, args.seed) == (3, 0)
    assert parse_lr(["sgd=+5E-2,adam= 1e-3 ", "lbfgs=1.", "sam=.5"]) == {
        "sgd": {"lr": 0.05},
        "adam": {"lr": 0.001},
        "lbfgs": {"lr": 1.0},
        "sam": {"lr": 0.5},
    }


def test_label_column_1_0_is_a_name_not_column_10(tmp_path):
    from optkern.datasets import DataError, load_file

    path = tmp_path / "d.csv"
    rows = ["a,b,c,d,e,f,g,h,i,j,k,l"] + [",".join(str((r * 7 + c) % 5) for c in range(12)) for r in range(20)]
    path.write_text("\n".join(rows) + "\n")
    assert load_file(str(path), label_column="10").y is not None  # (an index: digits)
    with pytest.raises(DataError, match="'1_0' not found"):
        load_file(str(path), label_column="1_0")
