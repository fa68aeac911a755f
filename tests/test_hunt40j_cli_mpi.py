"""``optkern study --distributed`` and ``optkern bench dist`` without mpi4py (40th hunt, j): both
ended with the ImportError's traceback (exit status 1), though the error says what to install: a
missing optional dependency is the user's to fix, told in one line with exit status 2 (as
``--device cuda`` without CuPy is), before anything is written."""

from __future__ import annotations

import sys

import pytest

from optkern.cli import main


@pytest.fixture
def no_mpi4py(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # (None: "import mpi4py" raises ImportError)
    monkeypatch.setitem(sys.modules, "mpi4py.MPI", None)


def _one_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_study_distributed_without_mpi4py(no_mpi4py, capsys, tmp_path):
    out = tmp_path / "out"
    argv = ["study", "--quick", "--optimizers", "sgd", "--norms", "none", "--epochs", "1", "--no-plots"]
    assert main([*argv, "--distributed", "--out", str(out)]) == 2
    line = _one_line(capsys)
    assert line.startswith("optkern study: error: --distributed: ") and "mpi4py" in line, line
    assert not out.exists()


def test_bench_dist_without_mpi4py(no_mpi4py, capsys, tmp_path):
    out = tmp_path / "dist.json"
    assert main(["bench", "dist", "--quick", "--json", str(out)]) == 2
    line = _one_line(capsys)
    assert line.startswith("optkern bench: error: dist: ") and "mpi4py" in line, line
    assert not out.exists()
