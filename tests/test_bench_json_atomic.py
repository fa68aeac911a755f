"""``optkern bench --json FILE`` replaces FILE whole or not at all.

The results were written with ``open(FILE, "w")`` and ``json.dump``: a crash or a Ctrl-C while
writing (or a full disk) left a truncated file, and the results of an earlier run were gone. They
now go to a temporary file beside FILE, renamed over it once complete (``optkern._atomic``).
"""

from __future__ import annotations

import json
import os
import stat

import pytest

from optkern import _atomic
from optkern.benchmarks import timing
from optkern.benchmarks.timing import Row, Timing, write_json

ROWS = [Row("hvp", "y", Timing(1.0, 1.0, 1.0, 1)), Row("norm", "z", Timing(2.0, 1.0, 3.0, 5))]


def _interrupted_dump(obj, f, **kw):
    f.write('{"meta": {"dev')  # a part written, then the Ctrl-C
    f.flush()
    raise KeyboardInterrupt


def test_an_interrupted_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "b.json"
    write_json(ROWS, str(path), {"device": "cpu"})
    before = path.read_text()
    monkeypatch.setattr(timing.json, "dump", _interrupted_dump)
    with pytest.raises(KeyboardInterrupt):
        write_json(ROWS[:1], str(path), {"device": "cuda"})
    assert path.read_text() == before
    assert json.loads(before)["meta"] == {"device": "cpu"}
    assert os.listdir(tmp_path) == ["b.json"]


def test_a_new_file_is_not_created_by_a_failed_write(tmp_path, monkeypatch):
    monkeypatch.setattr(timing.json, "dump", _interrupted_dump)
    with pytest.raises(KeyboardInterrupt):
        write_json(ROWS, str(tmp_path / "new.json"), {})
    assert os.listdir(tmp_path) == []


def test_a_file_written_over_keeps_its_mode_and_a_new_one_gets_the_umask(tmp_path):
    path = tmp_path / "private.json"
    path.write_text("{}")
    os.chmod(path, 0o600)
    write_json(ROWS, str(path), {})
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(json.loads(path.read_text())["rows"]) == 2
    umask = os.umask(0o022)
    os.umask(umask)
    fresh = tmp_path / "fresh.json"
    write_json(ROWS, str(fresh), {})
    assert stat.S_IMODE(os.stat(fresh).st_mode) == 0o666 & ~umask


def test_replace_atomically_writes_text_or_bytes(tmp_path):
    with _atomic.replace_atomically(str(tmp_path / "t.txt")) as f:
        f.write("text")
    with _atomic.replace_atomically(str(tmp_path / "b.bin"), binary=True) as f:
        f.write(b"\x00\x01")
    assert (tmp_path / "t.txt").read_text() == "text" and (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert sorted(os.listdir(tmp_path)) == ["b.bin", "t.txt"]


def test_an_interrupted_save_state_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    """early_stopping.save_state wrote ``path + '.tmp.npz'`` and renamed it: a Ctrl-C while
    writing left that file behind (the old one stayed, but the folder filled with temporaries)."""
    import numpy as np

    from optkern.regularize import early_stopping

    path = tmp_path / "state.npz"
    early_stopping.save_state(path, {"w": np.arange(3.0)})
    before = path.read_bytes()

    def interrupted_savez(f, **kw):
        f.write(b"PK\x03\x04")  # a part written, then the Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(early_stopping.np, "savez", interrupted_savez)
    with pytest.raises(KeyboardInterrupt):
        early_stopping.save_state(path, {"w": np.arange(5.0)})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["state.npz"]
