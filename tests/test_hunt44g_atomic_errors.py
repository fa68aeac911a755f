"""Errors of ``replace_atomically`` (``optkern.save``, ``bench --json``, the study's files) name the
file the caller asked for.

A folder the process cannot write to (read-only, another user's) raised ``PermissionError: ...
'/run/.ck.npz.4242.9f3c01aa.tmp'``: a file the user never named, which reads like a stray
temporary of another job. The error is the one ``open(path, "w")`` raises: same type and errno,
naming ``path``; nothing is left behind and an existing file keeps its content."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest

import optkern
from optkern import _atomic


def _refusing_temporaries(monkeypatch, err: int, strerror: str) -> None:
    """os.open refuses to create the temporary, as in a read-only folder (root passes permission
    bits: simulated)."""
    real = os.open

    def fake(path, flags, *args, **kwargs):
        if os.fspath(path).endswith(".tmp"):
            raise OSError(err, strerror, path)
        return real(path, flags, *args, **kwargs)

    monkeypatch.setattr(_atomic.os, "open", fake)


@pytest.mark.parametrize(
    ("err", "strerror", "kind"),
    [(errno.EACCES, "Permission denied", PermissionError), (errno.EROFS, "Read-only file system", OSError)],
)
def test_an_unwritable_folder_is_reported_on_the_path_asked_for(tmp_path, monkeypatch, err, strerror, kind):
    path = tmp_path / "ck.npz"
    optkern.save(path, x=np.ones(2))
    _refusing_temporaries(monkeypatch, err, strerror)
    with pytest.raises(kind) as info:
        optkern.save(path, x=np.zeros(2))
    assert info.value.errno == err
    assert info.value.filename == str(path)
    assert ".tmp" not in str(info.value)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["ck.npz"]
    assert optkern.load(path)["x"].tolist() == [1.0, 1.0]


def test_a_text_file_in_an_unwritable_folder_too(tmp_path, monkeypatch):
    _refusing_temporaries(monkeypatch, errno.EACCES, "Permission denied")
    target = str(tmp_path / "bench.json")
    with pytest.raises(PermissionError, match="Permission denied: " + repr(target).replace("\\", "\\\\")):
        with _atomic.replace_atomically(target) as f:
            f.write("{}")
    assert os.listdir(tmp_path) == []
