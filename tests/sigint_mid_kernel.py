"""A Ctrl-C sent while a kernel runs, for the tests that a step interrupted mid-kernel is whole.

``POKE`` is the tail of a test script: given ``watched`` (an array the kernel writes), ``before``
(its copy) and ``CALL`` (replaced by the call under test), a thread sends SIGINT once the kernel has
written its first element (the GIL is free meanwhile), and the script prints where the
KeyboardInterrupt came out (``inside`` the call or ``after`` it), how many elements were written,
and ``late``: the signal was sent only after the call had returned -- a loaded machine scheduled the
thread too late, and the run tests nothing. :func:`run` runs the script again while it is late.
"""

import json
import os
import subprocess
import sys

import pytest

POKE = """
import time
sent = []

def poke():
    while watched[0] == before[0]:
        pass
    sent.append(time.perf_counter())
    os.kill(os.getpid(), signal.SIGINT)

t = threading.Thread(target=poke)
t.start()
try:
    try:
        CALL
        where = "after"
    except KeyboardInterrupt:
        where = "inside"
    returned = time.perf_counter()
    t.join()
except KeyboardInterrupt:
    where = "after"
late = where == "after" and sent[0] > returned
written = int((watched != before).sum())
"""


def run(script: str, root: str, timeout: float, tries: int = 5) -> dict:
    """The JSON the script prints, run up to ``tries`` times while its result says ``late``."""
    env = {**os.environ, "PYTHONPATH": root}
    for _ in range(tries):
        r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=timeout)
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        if not out["late"]:
            return out
    pytest.skip(f"the SIGINT came after the call returned in all {tries} runs (a loaded machine)")
