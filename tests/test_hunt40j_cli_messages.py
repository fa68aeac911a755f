"""``optkern study``'s one-line errors (40th hunt, j): a bad --data file's error named the file
but not the option (every other one does: "--out X: ...", "--hidden: ..."); an --out that is an
existing file said "cannot create the folder (File exists)", as if the folder were there to use;
and --label-column -4 on a 3-column CSV said "(0..2, or -1 for the last)" where -3..-1 are all
accepted."""

from __future__ import annotations

import pytest

from optkern.cli import main
from optkern.datasets import DataError, load_file

_ARGS = ["study", "--quick", "--optimizers", "sgd", "--norms", "none", "--epochs", "1", "--no-plots", "--quiet"]


def _error(capsys, *argv) -> str:
    assert main([*_ARGS, *argv]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_bad_data_file_error_names_the_option(capsys, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,y\n1,x,0\n" + "".join(f"{i},{i},{i % 2}\n" for i in range(30)))
    line = _error(capsys, "--data", str(bad), "--out", str(tmp_path / "out"))
    assert line.startswith(f"optkern study: error: --data {bad}: not a numeric CSV"), line
    missing = tmp_path / "missing.npz"
    line = _error(capsys, "--data", str(missing), "--out", str(tmp_path / "out"))
    assert line == f"optkern study: error: --data {missing}: no such file", line


def test_out_naming_a_file_says_so(capsys, tmp_path):
    f = tmp_path / "taken"
    f.write_text("mine")
    line = _error(capsys, "--out", str(f))
    assert line == f"optkern study: error: --out {f}: exists and is not a folder", line
    assert f.read_text() == "mine"


def test_label_column_range_message_gives_the_negative_ones(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("".join(f"{i % 2},{i * 2},{i % 3}\n" for i in range(30)))
    load_file(str(p), label_column=-3)  # accepted: counted from the last
    with pytest.raises(DataError, match=r"out of range for 3 columns \(0\.\.2, or -3\.\.-1 counting from the end\)"):
        load_file(str(p), label_column=-4)
