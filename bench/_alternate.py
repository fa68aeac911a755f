"""Shared by the bench/*_alternated.py scripts that time an old optkern package, this one and torch
in separate processes, alternated: the child's timing loop and the parent's launch of one child."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


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


def old_vs_new(script: str, names: list[str], old: str, rounds: int, reps: int, threads: int, picked=None) -> None:
    """The parent's loop: per case and round one child per module (``old``, then this checkout's src),
    each running ``script --child i --reps reps``; prints per case the median and min over rounds (ms)
    and new / old."""
    paths = {"old": os.path.abspath(old), "new": str(Path(script).resolve().parent.parent / "src")}
    width = max(len(n) for n in names) + 2
    for i in range(len(names)) if picked is None else picked:
        t: dict[str, list[float]] = {k: [] for k in paths}
        for _ in range(rounds):
            for k, p in paths.items():
                t[k].append(child(script, ["--child", str(i), "--reps", str(reps)], p, threads))
        med = {k: statistics.median(v) for k, v in t.items()}
        mins = {k: min(v) for k, v in t.items()}
        print(
            f"{names[i]:{width}s} old {med['old']:8.3f} (min {mins['old']:.3f})  new {med['new']:8.3f} "
            f"(min {mins['new']:.3f})  new/old {med['new'] / med['old']:.3f}",
            flush=True,
        )
