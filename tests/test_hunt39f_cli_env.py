"""A bad OPTKERN_SERIAL_BELOW / OPTKERN_POOL_BYTES is read while the package imports, before
``cli.main`` runs: the ``optkern`` command must still say so in one line (exit status 2), and
``import optkern`` must still raise a ValueError naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import optkern

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(optkern.__file__)))

BAD = [
    ("OPTKERN_SERIAL_BELOW", "many", "expected a non-negative integer (work units), got 'many'"),
    ("OPTKERN_SERIAL_BELOW", "-1", "expected a non-negative integer (work units), got '-1'"),
    ("OPTKERN_POOL_BYTES", "1e9", "expected a non-negative integer (bytes), got '1e9'"),
    ("OPTKERN_POOL_BYTES", " 1", "expected a non-negative integer (bytes), got ' 1'"),
]

# what pip writes for [project.scripts] optkern = "optkern.cli:main"
_CONSOLE_SCRIPT = "import re, sys\nfrom optkern.cli import main\nsys.exit(main())\n"


def _run(argv, name, value, cwd=None):
    env = {k: v for k, v in os.environ.items() if k not in ("OPTKERN_SERIAL_BELOW", "OPTKERN_POOL_BYTES")}
    env.update(PYTHONPATH=ROOT, OMP_NUM_THREADS="1", **{name: value})
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, cwd=cwd)


def _one_line(r, name, message):
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines() == [f"optkern: error: {name}: {message}"]
    assert r.stdout == ""


@pytest.mark.spawns
@pytest.mark.parametrize("name,value,message", BAD)
@pytest.mark.parametrize("command", [["study", "--quick"], ["bench", "--quick"], ["info"]])
def test_python_m_optkern_says_one_line(name, value, message, command, tmp_path):
    r = _run([sys.executable, "-m", "optkern", *command], name, value, cwd=tmp_path)
    _one_line(r, name, message)
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.spawns
@pytest.mark.parametrize("name,value,message", BAD[::2])
def test_the_console_script_says_one_line(name, value, message, tmp_path):
    script = tmp_path / "optkern"
    script.write_text(_CONSOLE_SCRIPT)
    r = _run([sys.executable, str(script), "study", "--quick", "--out", str(tmp_path / "o")], name, value)
    _one_line(r, name, message)
    assert not (tmp_path / "o").exists()


@pytest.mark.spawns
@pytest.mark.parametrize("name,value,message", BAD[::2])
def test_python_m_optkern_cli_says_one_line(name, value, message):
    _one_line(_run([sys.executable, "-m", "optkern.cli", "info"], name, value), name, message)


@pytest.mark.spawns
@pytest.mark.parametrize("name,value,message", BAD)
def test_import_still_raises_a_value_error_naming_the_variable(name, value, message):
    code = "try:\n    import optkern\nexcept ValueError as e:\n    print(e)\nelse:\n    print('imported')\n"
    r = _run([sys.executable, "-c", code], name, value)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"{name}: {message}"


@pytest.mark.spawns
def test_a_script_that_imports_optkern_gets_the_value_error(tmp_path):
    # a user's program (not the optkern command) keeps Python's traceback and exit status 1
    script = tmp_path / "train.py"
    script.write_text("import optkern\n")
    r = _run([sys.executable, str(script)], "OPTKERN_POOL_BYTES", "x")
    assert r.returncode == 1
    assert "ValueError: OPTKERN_POOL_BYTES: expected a non-negative integer (bytes), got 'x'" in r.stderr


@pytest.mark.spawns
@pytest.mark.parametrize("options", [["-X", "utf8", "-W", "ignore", "-m", "optkern"], ["-u", "-moptkern"]])
def test_interpreter_options_before_m_are_skipped(options, tmp_path):
    r = _run([sys.executable, *options, "info"], "OPTKERN_POOL_BYTES", "1e9", cwd=tmp_path)
    _one_line(r, "OPTKERN_POOL_BYTES", "expected a non-negative integer (bytes), got '1e9'")


@pytest.mark.spawns
@pytest.mark.parametrize("module", ["optkern", "optkern.cli"])
def test_under_mpi4py_says_one_line(module, tmp_path):
    # the launcher the CLI documents (mpiexec -n N python -m mpi4py -m optkern study ...)
    pytest.importorskip("mpi4py")
    r = _run([sys.executable, "-m", "mpi4py", "-m", module, "info"], "OPTKERN_POOL_BYTES", "x", cwd=tmp_path)
    _one_line(r, "OPTKERN_POOL_BYTES", "expected a non-negative integer (bytes), got 'x'")
