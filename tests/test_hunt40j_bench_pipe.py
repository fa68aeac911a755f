"""``optkern bench --json FILE | head -1`` (40th hunt, j): the reader left after the first line, the
suites went on measuring (minutes on a full run), and the table's print then raised BrokenPipeError:
exit status 141 and no FILE, the results asked for lost. The file is written before the table is
printed. (Hunt 41a: ``bench --json`` now runs on with its console discarded once the reader left,
and exits 0, as ``study`` does: its file is its product; tests/test_hunt41a_cli.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import optkern

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(optkern.__file__)))

# `optkern bench norm --json FILE` with the norm suite replaced by one row that waits until the
# reader of stdout is gone (the marker file): no measuring, and no race with the pipe's buffer
_CHILD = """
import os, sys, time
from optkern.benchmarks import suite
from optkern.benchmarks.timing import Row, Timing

def fake(device, quick, threads):
    while not os.path.exists(sys.argv[1]):
        time.sleep(0.01)
    return [Row("norm", "fake case", Timing(1.0, 0.9, 1.1, 3))]

suite.SUITES["norm"] = fake
from optkern.cli import main
sys.exit(main(["bench", "norm", "--quick", "--json", sys.argv[2]]))
"""


def reader_leaves(child: str, marker, *args: str) -> tuple[str, str, int]:
    """Run ``child`` (Python source; its argv[1] the ``marker`` it waits for) with stdout piped, read
    its first line as ``head -1`` would, close the pipe, then create the marker: the child's first,
    stderr and exit status."""
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    with subprocess.Popen(
        [sys.executable, "-c", child, str(marker), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as p:
        try:
            first = p.stdout.readline()  # the machine line, as `head -1` reads it
            p.stdout.close()
            marker.write_text("")
            err = p.stderr.read()
            rc = p.wait(timeout=120)
        finally:
            p.kill()
    return first, err, rc


@pytest.mark.spawns  # (Python orchestration: deselected under the sanitizer, .ci/sanitize)
def test_json_is_written_when_the_reader_of_stdout_left(tmp_path):
    marker, out = tmp_path / "reader-gone", tmp_path / "bench.json"
    first, err, rc = reader_leaves(_CHILD, marker, str(out))
    assert "CPU" in first
    assert rc == 0, err
    assert "Traceback" not in err, err
    rows = json.loads(out.read_text())["rows"]
    assert [r["case"] for r in rows] == ["fake case"]
