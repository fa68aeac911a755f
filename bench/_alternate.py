"""Shared by the bench/*_alternated.py scripts that time an old optkern package, this one and torch
in separate processes, alternated: the child's timing loop and the parent's launch of one child."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def timed_ms(f, reps: int) -> list[float]:
    """``f()`` twice to warm up (pages, caches, thread pools), then ``reps`` calls timed, in ms."""
    f()
    f()
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        out.append((time.perf_counter() - t) * 1e3)
    return out


def child(script: str, args: list[str], pythonpath: str, threads: int):
    """Run ``python script *args`` with ``pythonpath`` (the old or the new package) on ``threads``
    OpenMP threads, passive waiting (torch's spinning team collapses on this shared host); returns
    the JSON value its last output line holds."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OMP_WAIT_POLICY="PASSIVE", PYTHONPATH=pythonpath)
    cmd = [sys.executable, script, *args]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])
