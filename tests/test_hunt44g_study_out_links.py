"""``optkern study --out DIR`` where a file of DIR is a symbolic link into a folder that takes no
new file: refused before training, naming the file and the link's target.

The study's files are written through links (``optkern._atomic``: as ``open`` writes them), so the
check that DIR takes a file did not cover a link's target folder: the study trained, then its first
results.json raised the temporary's PermissionError with a traceback."""

from __future__ import annotations

import os

import pytest

from optkern import cli
from optkern.study import runner

pytestmark = pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symbolic links")

TINY = ["--quick", "--epochs", "1", "--hidden", "8", "--curvature-samples", "32", "--jobs", "1", "--no-plots"]


def test_a_link_into_a_folder_that_takes_no_file_stops_before_training(tmp_path, capsys, monkeypatch):
    out, elsewhere = tmp_path / "out", tmp_path / "locked"
    out.mkdir()
    elsewhere.mkdir()
    os.symlink(elsewhere / "results.json", out / "results.json")
    real = os.open

    def locked(name, flags, *args, **kwargs):  # (a read-only folder; root passes permission bits)
        if flags & os.O_CREAT and os.path.dirname(os.fspath(name)) == str(elsewhere):
            raise PermissionError(13, "Permission denied", name)
        return real(name, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", locked)

    def trained(*a, **k):
        raise AssertionError("the study ran")

    monkeypatch.setattr(runner, "run_study", trained)
    import optkern.study as study

    monkeypatch.setattr(study, "run_study", trained)
    rc = cli.main(["study", *TINY, "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2, err
    line = err.strip()
    assert "\n" not in line and "Traceback" not in err
    assert line.startswith(f"optkern study: error: --out {out}: results.json (a link to {elsewhere}")
    assert "Permission denied" in line
