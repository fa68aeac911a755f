"""``optkern bench norm | head -1`` without ``--json`` (review of the 55th's full-disk change): the new
``except OSError`` clause of cli.main sat before ``except BrokenPipeError`` and re-raised it (EPIPE is
not a write failure it reports), so the reader leaving gave a traceback and exit 1 instead of the
quiet 141 a shell reports for a writer killed by SIGPIPE."""

from __future__ import annotations

import pytest

from test_hunt40j_bench_pipe import reader_leaves

# the norm suite replaced by 3000 rows printed once the reader of stdout is gone (the marker file):
# more than a pipe's buffer, so the table's print meets the closed pipe
_CHILD = """
import os, sys, time
from optkern.benchmarks import suite
from optkern.benchmarks.timing import Row, Timing

def fake(device, quick, threads):
    while not os.path.exists(sys.argv[1]):
        time.sleep(0.01)
    return [Row("norm", f"fake case {i}", Timing(1.0, 0.9, 1.1, 3)) for i in range(3000)]

suite.SUITES["norm"] = fake
from optkern.cli import main
sys.exit(main(["bench", "norm", "--quick"]))
"""


@pytest.mark.spawns  # (Python orchestration: deselected under the sanitizer, .ci/sanitize)
def test_the_table_exits_141_quietly_when_the_reader_left(tmp_path):
    first, err, rc = reader_leaves(_CHILD, tmp_path / "reader-gone")
    assert "CPU" in first
    assert "Traceback" not in err, err
    assert rc == 141, err
