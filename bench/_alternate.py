"""Shared by the bench/*_alternated.py scripts that time an old optkern package, this one and torch
in separate processes, alternated: the child's timing loop, the parent's launch of one child, and
the old-vs-new scripts' loop and command line."""

from __future__ import annotations

import argparse
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


def old_vs_new_main(script: str, cases: list[tuple], make) -> None:
    """The command line of an old-vs-new script (``--old DIR [--rounds] [--reps] [--threads]
    [--cases i,j]``): the parent alternates the two modules over ``cases`` (each a tuple: its name,
    then ``make``'s arguments); a child (``--child i``) prints the median of ``--reps`` timed calls
    of ``make(*cases[i][1:])()``, in ms."""
    ap = argparse.ArgumentParser(prog=os.path.basename(script))
    ap.add_argument("--old", help="directory holding the old optkern package")
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", type=int, default=-1)
    ap.add_argument("--cases", default="", help="comma-separated case indices (default: all)")
    a = ap.parse_args()
    if a.child >= 0:
        print(json.dumps(statistics.median(timed_ms(make(*cases[a.child][1:]), a.reps))))
        return
    if a.old is None:  # (the parent compares against it: without it, a TypeError deep in the loop)
        ap.error("--old DIR is required")
    if a.rounds < 1 or a.reps < 1:
        ap.error("--rounds and --reps must be >= 1")
    try:
        picked = [int(c) for c in a.cases.split(",")] if a.cases else None
    except ValueError:
        ap.error(f"--cases: comma-separated integers expected, got {a.cases!r}")
    if picked is not None and not all(0 <= c < len(cases) for c in picked):
        ap.error(f"--cases: indices in [0, {len(cases)}) expected, got {a.cases!r}")
    old_vs_new(script, [c[0] for c in cases], a.old, a.rounds, a.reps, a.threads, picked)
