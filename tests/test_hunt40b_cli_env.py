"""``python -m optkern`` with a bad OPTKERN_* value on Python 3.9 (40th hunt, b): the package's
``__init__`` told the optkern command from a program importing optkern by ``sys.orig_argv`` (3.10+);
on 3.9, where it is missing and ``sys.argv[0]`` is just "-m" while ``-m``'s package imports, the
command printed the ValueError's traceback (exit status 1) instead of its one-line error. No 3.9 is
installed here: the runs below start the module as the interpreter's ``-m`` does
(``runpy._run_module_as_main``, ``sys.argv[0] == "-m"``) with ``sys.orig_argv`` removed."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import optkern
from optkern import _env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(optkern.__file__)))

# the interpreter's ``-m MODULE ARGS`` on 3.9: no sys.orig_argv, argv[0] "-m" until runpy sets it
_AS_39 = (
    "import runpy, sys\n"
    "del sys.orig_argv\n"
    "sys.argv = ['-m', *sys.argv[2:]]\n"
    "runpy._run_module_as_main(sys.argv_module)\n"
)


def _run_39(module, *args, path=ROOT, value="1e9"):
    env = {k: v for k, v in os.environ.items() if k not in ("OPTKERN_SERIAL_BELOW", "OPTKERN_POOL_BYTES")}
    env.update(PYTHONPATH=path, OMP_NUM_THREADS="1", OPTKERN_POOL_BYTES=value)
    code = _AS_39.replace("sys.argv_module", repr(module))
    return subprocess.run(
        [sys.executable, "-c", code, "-m", *args], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.spawns  # (Python orchestration: deselected under the sanitizer, .ci/sanitize)
@pytest.mark.parametrize("module", ["optkern", "optkern.cli"])
def test_python_m_optkern_without_orig_argv_says_one_line(module):
    r = _run_39(module, "info")
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines() == [
        "optkern: error: OPTKERN_POOL_BYTES: expected a non-negative integer (bytes), got '1e9'"
    ]


@pytest.mark.spawns  # (Python orchestration: deselected under the sanitizer, .ci/sanitize)
def test_another_module_importing_optkern_without_orig_argv_gets_the_value_error(tmp_path):
    # ``python -m train`` (a user's package importing optkern) is no optkern command
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "__init__.py").write_text("import optkern\n")
    r = _run_39("train", path=os.pathsep.join([ROOT, str(tmp_path)]), value="x")
    assert r.returncode == 1
    assert "ValueError: OPTKERN_POOL_BYTES: expected a non-negative integer (bytes), got 'x'" in r.stderr


def test_is_cli_in_process_without_orig_argv(monkeypatch):
    # (pytest runs as a script or as ``-m pytest``: neither is the optkern command, with or without orig_argv)
    monkeypatch.delattr(sys, "orig_argv", raising=False)
    monkeypatch.setattr(sys, "argv", ["-m"])
    assert not _env.is_cli()
