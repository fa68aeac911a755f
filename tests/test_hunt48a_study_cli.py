"""``optkern study`` command-line arguments (hunt 48a).

``--out "$OUT"`` with OUT unset named no folder: the study said ``--out : cannot create the folder
(No such file or directory)`` (an empty name after the flag), and ``--out "  "`` trained into a
folder named by two spaces, in the current directory. Refused as ``--data ""`` and
``--label-column ""`` are: no folder given.
"""

from __future__ import annotations

import os

import pytest

from optkern.cli import main


@pytest.mark.parametrize("out", ["", "  ", "\t"])
def test_an_empty_out_is_refused_as_no_folder_given(tmp_path, monkeypatch, capsys, out):
    monkeypatch.chdir(tmp_path)
    assert main(["study", "--quick", "--no-plots", "--quiet", "--out", out]) == 2
    err = capsys.readouterr().err
    assert "--out: no folder given (leave --out out for ./optkern-study)" in err, err
    assert os.listdir(tmp_path) == []  # (nothing created, nothing trained)
