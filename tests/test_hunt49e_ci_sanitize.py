"""CI's sanitizer stage (``.ci/sanitize``) shows a sanitizer report and fails on it.

A report written to stderr from inside a test went to pytest's capture of that test, a temporary file
that the aborted process never printed: CI's log said only "Fatal Python error: Aborted". The stage now
has each process write its report to a file of its own and prints those files. These runs use
``--no-build`` with the plain module standing in for the sanitized one (libasan is preloaded all the
same): the report comes from ASan's interception of ``memmove``, which needs no instrumented code.
"""

import os
import shutil
import subprocess

import pytest

from optkern import _cpu

pytestmark = pytest.mark.spawns  # the stage itself deselects these (it would run itself)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, ".ci", "sanitize")

OVERFLOW = """
import ctypes

import numpy as np


def test_passes():
    pass


def test_reads_past_a_buffer():
    src = np.zeros(8, np.uint8)
    dst = np.zeros(256, np.uint8)
    ctypes.memmove(dst.ctypes.data, src.ctypes.data, dst.nbytes)  # 248 bytes past src's end
"""


def _libasan() -> bool:
    cxx = os.environ.get("CXX", "c++")
    if shutil.which(cxx) is None or shutil.which("bash") is None:
        return False
    name = subprocess.run([cxx, "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    return os.path.isabs(name) and os.path.exists(name)  # else the compiler echoes the bare name


needs_asan = pytest.mark.skipif(not _libasan(), reason="the compiler has no libasan.so (the stage needs it too)")


def _stage(tmp_path, source: str, *args: str) -> subprocess.CompletedProcess:
    """``.ci/sanitize --no-build`` on a test file holding ``source``, in a build directory of its own."""
    build = tmp_path / "build"
    build.mkdir()
    module = _cpu.__file__
    shutil.copy(module, build / os.path.basename(module))
    test = tmp_path / "test_sanitized.py"
    test.write_text(source)
    env = {**os.environ, "OPTKERN_SANITIZE_BUILD": str(build)}
    cmd = ["bash", SCRIPT, "--no-build", str(test), "-q", "-p", "no:cacheprovider", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def _assert_reported(r: subprocess.CompletedProcess) -> None:
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert "ERROR: AddressSanitizer: heap-buffer-overflow" in out, out
    assert "sanitize: FAILED" in out, out
    assert "sanitize: passed" not in out, out


@needs_asan
def test_a_report_in_a_test_is_printed_and_fails_the_stage(tmp_path):
    r = _stage(tmp_path, OVERFLOW)
    _assert_reported(r)
    assert "test_reads_past_a_buffer" in r.stdout + r.stderr  # faulthandler's stack names the test


@needs_asan
def test_a_report_in_an_xdist_worker_is_printed_and_fails_the_stage(tmp_path):
    pytest.importorskip("xdist")  # optional: the stage runs one process without it
    r = _stage(tmp_path, OVERFLOW, "-n", "2", "-p", "no:benchmark")
    _assert_reported(r)
    # (xdist names the worker and the test's node id, relative to a rootdir that depends on where the
    # run starts: the message and the test's name, not one spelling of both)
    crashed = [line for line in r.stdout.splitlines() if "crashed while running" in line]
    assert any("test_reads_past_a_buffer" in line for line in crashed), r.stdout


@needs_asan
def test_a_clean_run_passes(tmp_path):
    r = _stage(tmp_path, OVERFLOW, "-k", "test_passes")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "sanitize: passed" in r.stdout
    assert "sanitize: report in" not in r.stdout
