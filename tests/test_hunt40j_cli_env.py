"""OPTKERN_POOL_BYTES beyond int64 (40th hunt, j): the optkern command printed the native
binding's TypeError traceback ("pool_set_limit(): incompatible function arguments", exit status 1)
instead of its one-line error naming the variable; ``set_pool_limit(2**64)`` raised that TypeError
too, naming no argument."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import optkern
from optkern import _env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(optkern.__file__)))


@pytest.mark.spawns  # (Python orchestration: deselected under the sanitizer, .ci/sanitize)
def test_command_with_pool_bytes_past_int64_says_one_line():
    env = {k: v for k, v in os.environ.items() if k not in ("OPTKERN_SERIAL_BELOW", "OPTKERN_POOL_BYTES")}
    env.update(PYTHONPATH=ROOT, OMP_NUM_THREADS="1", OPTKERN_POOL_BYTES=str(2**64))
    r = subprocess.run([sys.executable, "-m", "optkern", "info"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("optkern: error: OPTKERN_POOL_BYTES: "), lines
    assert str(2**64) in lines[0]


def test_env_reader_refuses_past_int64(monkeypatch):
    monkeypatch.setenv("OPTKERN_POOL_BYTES", str(2**63))
    with pytest.raises(ValueError, match="OPTKERN_POOL_BYTES"):
        _env.pool_bytes()
    monkeypatch.setenv("OPTKERN_POOL_BYTES", str(2**63 - 1))  # the largest the pool takes
    assert _env.pool_bytes() == 2**63 - 1


def test_set_pool_limit_past_int64_names_the_argument():
    before = optkern.info()["pool"]["limit"]
    with pytest.raises(ValueError, match="nbytes"):
        optkern.set_pool_limit(2**64)
    assert optkern.info()["pool"]["limit"] == before  # nothing changed
