"""A full disk while a file is written (55th hunt, c): one error line, a nonzero exit, no file left
looking complete.

``optkern study`` ended with a traceback when results.json, report.md or a figure could not be
written ("[Errno 28] No space left on device", naming no file), and its figures were written in
place (``savefig(path)``: a truncated PNG). The fault is injected in ``os.fsync`` for the one file
named (a tmpfs of a chosen size needs root): the write's data is in the temporary, whose fsync
fails as a write past the disk's end does."""

from __future__ import annotations

import errno
import json
import os

import pytest

from optkern import _atomic, cli

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="names a descriptor's file by /proc")


def _full_disk_for(monkeypatch, name: str) -> list:
    """``os.fsync`` raising ENOSPC for the temporaries of ``name`` (``.<name>.<pid>.<hex>.tmp``)."""
    real, hit = os.fsync, []

    def fsync(fd):
        target = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
        if target.startswith(f".{name}.") and target.endswith(".tmp"):
            hit.append(target)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return hit


def _study(out, *extra):
    args = ["study", "--quick", "--hidden", "8", "--norms", "none", "--jobs", "1", "--optimizers", "sgd,adam"]
    return cli.main([*args, "--epochs", "1", "--quiet", "--out", str(out), *extra])


@pytest.mark.parametrize(
    "name, extra", [("results.json", ["--no-plots"]), ("report.md", ["--no-plots"]), ("loss.png", [])]
)
def test_a_study_on_a_full_disk_says_so_in_one_line(tmp_path, monkeypatch, capsys, name, extra):
    if name.endswith(".png"):
        pytest.importorskip("matplotlib")
    out = tmp_path / "o"
    out.mkdir()
    (out / name).write_text("a previous study's\n")  # (kept or replaced whole, never truncated)
    hit = _full_disk_for(monkeypatch, name)
    assert _study(out, *extra) == 1
    assert hit
    err = capsys.readouterr().err
    assert err.splitlines() == [f"optkern study: error: cannot write {out / name}: No space left on device"], err
    assert not [f for f in os.listdir(out) if f.endswith(".tmp")], os.listdir(out)
    # report.md says the study did not finish (it is written last: the "Not finished" mark stays)
    assert "**Not finished**" in (out / "report.md").read_text()
    if name == "results.json":
        assert not (out / "results.json").exists()  # (the previous study's was removed before training)
    else:
        results = json.loads((out / "results.json").read_text())  # (whole: written before the failure)
        assert len(results["runs"]) == 2
    if name == "loss.png":
        assert not (out / "loss.png").exists()


def test_replace_atomically_names_the_file_and_keeps_the_old_content(tmp_path, monkeypatch):
    path = tmp_path / "ck.npz"
    path.write_bytes(b"old")
    _full_disk_for(monkeypatch, "ck.npz")
    with pytest.raises(OSError) as e:
        with _atomic.replace_atomically(str(path), binary=True) as f:
            f.write(b"new and longer")
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(path)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["ck.npz"]


def test_other_os_errors_still_raise(tmp_path, monkeypatch):
    """Only the write failures a user acts on become one line; another OSError is a bug to see whole."""

    def broken(*a, **k):
        raise OSError(errno.EBADF, "Bad file descriptor")

    monkeypatch.setattr("optkern.study.report.write_json", broken)
    with pytest.raises(OSError, match="Bad file descriptor"):
        _study(tmp_path / "o", "--no-plots")
