"""``optkern bench dist --json`` (40th hunt, j): every other suite writes ``{"meta": ..., "rows":
...}`` with the machine, library versions, thread count, --quick and the date the numbers depend
on; dist wrote ``{"world", "rows"}`` alone (no --threads, no versions, no --quick), so two result
files could not be told apart, and without ``allow_nan=False`` a NaN would have made the file
invalid JSON where the others refuse it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import optkern

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(optkern.__file__)))


# `optkern bench dist --quick --threads 1 --json FILE` with the measured rows replaced by fixed ones
# (the file's content is under test, not MPI's speed: the real suite took 5-10 s here)
_CHILD = """
import sys
from optkern.benchmarks import dist

dist.allreduce_rows = lambda comm, quick: [{"case": "allreduce", "median_ms": 1.0, "spread": 0.1, "repeats": 3,
                                             "GB/s": 8.0, "vs_raw": 1.0, "buckets": 1, "direct": 0}]
dist.zero_rows = lambda comm, quick: [{"case": "zero", "median_ms": 2.0, "spread": 0.1, "repeats": 3}]
from optkern.cli import main
sys.exit(main(["bench", "dist", "--quick", "--threads", "1", "--json", sys.argv[1]]))
"""


@pytest.mark.spawns  # (Python orchestration: deselected under the sanitizer, .ci/sanitize)
def test_dist_json_has_the_meta_of_the_other_suites(tmp_path):
    pytest.importorskip("mpi4py")  # (an optional dependency: the suite's own error says so without it)
    out = tmp_path / "dist.json"
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", _CHILD, str(out)], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    d = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"not strict JSON: {c}"))
    meta = d["meta"]
    assert meta["suites"] == ["dist"] and meta["quick"] is True and meta["threads"] == 1, meta
    assert meta["world"] == 1 and meta["device"] == "cpu" and meta["optkern"]["version"] == optkern.__version__
    assert [row["case"] for row in d["rows"]] == ["allreduce", "zero"]
