"""One pytest run in a child process, for the tests that rerun others under an environment switch
(OPTKERN_PORTABLE=1, OPTKERN_NO_AVX512_BF16=1, ...)."""

from __future__ import annotations

import os
import subprocess
import sys


def run_pytest(tests: list[str], switches: dict[str, str], deselect: str) -> subprocess.CompletedProcess[str]:
    """The child is a plain pytest, not an xdist worker: the PYTEST_XDIST_* variables a worker of the
    sanitizer stage (.ci/sanitize, -n 2) would hand down are dropped. pytest-benchmark, where installed,
    read PYTEST_XDIST_WORKER as "xdist is active" and warned, and the suite's warnings-as-errors made
    that the child's INTERNALERROR (CI's sanitizer stage failed on it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}
    env.update(switches)
    return subprocess.run(
        [sys.executable, "-m", "pytest", *tests, "-q", "-p", "no:cacheprovider", "-k", deselect],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
