"""``optkern bench``: run the suites, print one table, optionally write JSON.

optkern bench [optim|rules|norm|hvp|second|kernels|all] [--device cpu|cuda] [--quick] [--json FILE] [--threads N]
"""

from __future__ import annotations

import sys

from . import env, hvp, kernels, norm, optim, rules, second_order
from .timing import format_table, write_json

SUITES = {
    "optim": optim.run,
    "rules": rules.run,
    "norm": norm.run,
    "hvp": hvp.run,
    "second": second_order.run,
    "kernels": kernels.run,
}
# `all`; `rules` (every optimizer variant, a minute), `second` (minutes, GBs of L-BFGS history) and
# `kernels` (clipping, GradScaler, SWA, low precision, dropout, weight norm, Philox) run by name
ALL = ("optim", "norm", "hvp")

LEGEND = """\
optkern ms, best torch ms: medians after warm-up ({clock}); ±: inter-quartile range / median.
torch/ok: best PyTorch time / optkern time (> 1: optkern faster). CPU ms: the process CPU time of
optkern's calls (every thread, user + system; median ±IQR; CPU runs only); CPU t/ok: that of the
same torch calls / optkern's. On a shared host the wall clock also counts waiting for a CPU, the
CPU time does not. GB/s: bytes the case must move (see `python -m pydoc
optkern.benchmarks.<suite>`) / optkern time. %probe: of the bandwidth probe rows of the same
suite, measured in this run."""


def run(suites, device: str = "cpu", quick: bool = False, threads: int | None = None, say=None) -> list:
    """Rows of the named suites, in order. ``say``: progress callback (one string per suite)."""
    rows = []
    for name in suites:
        if say:
            say(f"optkern bench: {name} on {device}{' (quick)' if quick else ''} ...")
        rows += SUITES[name](device, quick, threads)
    return rows


def main(args) -> int:
    """Entry point of ``optkern bench`` (``args``: the parsed command line); returns the exit code.

    Raises ``optkern.study.UsageError`` (reported in one line, exit code 2) for a device
    that is not usable or a bad thread count.
    """
    device = args.device
    env.check_output(args.json)
    if device == "cuda":
        env.require_cuda()
    suites = list(ALL) if args.suite == "all" else [args.suite]
    with env.threads(args.threads) as n:
        return _run_and_report(args, suites, n)


def _run_and_report(args, suites, threads) -> int:
    device = args.device
    meta = env.machine(device)
    meta.update(suites=suites, quick=bool(args.quick), threads=threads)
    print(env.describe(meta))
    missing = env.torch_missing_line(device)
    if missing:
        print(missing)
    sys.stdout.flush()
    rows = run(suites, device, args.quick, args.threads, say=lambda s: print(s, file=sys.stderr, flush=True))
    try:
        print(format_table(rows))
        print(LEGEND.format(clock="CUDA events" if device == "cuda" else "wall clock"))
    finally:  # (also when stdout's reader left, `| head`: the measurements asked for are kept)
        if args.json:
            write_json(rows, args.json, meta)
    if args.json:
        print(f"results: {args.json}")
    return 0
