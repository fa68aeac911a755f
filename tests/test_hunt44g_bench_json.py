"""``optkern bench --json FILE``: the check made before the benchmarks run is what the writer needs.

The results replace FILE atomically (a temporary created beside it, renamed over it), but the
check opened FILE itself for appending: a FIFO named as FILE made ``bench`` wait for a reader
before measuring anything (or, with one, was replaced by a regular file), and a writable FILE in
a folder where no file can be created passed the check, then ended minutes of measuring with the
temporary's PermissionError traceback and no results."""

from __future__ import annotations

import os
import stat

import pytest

from optkern import cli
from optkern.benchmarks import suite


@pytest.fixture
def no_benchmarks(monkeypatch):
    monkeypatch.setattr(suite, "run", lambda *a, **k: [])


def _one_line_error(capsys, *words) -> None:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("optkern bench: error: ") and all(w in lines[0] for w in words), err


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_a_fifo_is_refused_and_stays_a_fifo(tmp_path, capsys, no_benchmarks):
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # (without one, the old check waited forever)
    try:
        rc = cli.main(["bench", "hvp", "--quick", "--json", str(fifo)])
    finally:
        os.close(reader)
    assert rc == 2
    _one_line_error(capsys, "--json", str(fifo), "not a regular file")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_a_folder_where_no_file_can_be_created_is_refused_before_measuring(tmp_path, capsys, monkeypatch):
    path = tmp_path / "b.json"
    path.write_text("previous")  # (writable itself: the old check opened it for appending, and passed)
    real = os.open

    def no_new_files(name, flags, *args, **kwargs):  # (a read-only folder; root passes permission bits)
        if flags & os.O_CREAT and os.path.dirname(os.fspath(name)) == str(tmp_path) and not os.path.exists(name):
            raise PermissionError(13, "Permission denied", name)
        return real(name, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", no_new_files)
    ran = []
    monkeypatch.setattr(suite, "run", lambda *a, **k: ran.append(1) or [])
    rc = cli.main(["bench", "hvp", "--quick", "--json", str(path)])
    assert rc == 2
    _one_line_error(capsys, "--json", str(path), "Permission denied")
    assert not ran and path.read_text() == "previous"
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["b.json"]


def test_a_writable_folder_still_gets_its_results(tmp_path, capsys, no_benchmarks):
    path = tmp_path / "b.json"
    path.write_text("previous")
    assert cli.main(["bench", "hvp", "--quick", "--json", str(path)]) == 0
    assert path.read_text() != "previous"
    assert os.listdir(tmp_path) == ["b.json"]
