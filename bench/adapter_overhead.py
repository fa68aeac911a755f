"""The optkern.torch adapter's overhead over the raw optkern.optim step (issue 12), paired.

    PYTHONPATH=src python bench/adapter_overhead.py [--rounds 200] [--opt Adam AdamW SGD-momentum]

The setup of ``optkern.benchmarks.optim``'s adapter rows (``_adapter_and_raw``: 200 torch params
totalling 16M float32 with their grads, the adapter's step and the ``optkern.optim`` step over the
very same memory), the two alternated in pairs (the order within a pair alternating) for
``--rounds`` pairs; printed: the median of the per-pair ratios adapter / raw with its quartiles and
range, and an A/A control (raw / raw, paired the same way): a ratio the method cannot tell from 1;
with each, the medians of the two steps' host time outside the native calls (the CPU module's
``adam_`` / ``sgd_`` timed inside: the kernels take the same time for both, so this is where the
adapter's overhead shows, far less blurred by a loaded VM than the ratio) and the raw step's time.
To compare two versions of the code, run this script under each (e.g. ``git archive`` of the old
commit's ``src`` plus the built module) alternately, several times each.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from optkern.benchmarks import optim as B

_NATIVE = [0.0]  # seconds spent in native calls since the last reset (``timed_native``)


def timed_native(names) -> None:
    """Wrap the CPU module's ``names`` functions to add their time to ``_NATIVE``: a step's time
    outside them is its host work (Python, torch objects, argument unpacking in the binding aside)."""
    from optkern import _cpu

    def wrap(f):
        def timed(*a):
            t0 = time.perf_counter()
            try:
                return f(*a)
            finally:
                _NATIVE[0] += time.perf_counter() - t0

        return timed

    for n in names:
        setattr(_cpu, n, wrap(getattr(_cpu, n)))


def paired(a, b, rounds: int) -> tuple:
    """(per-pair ratios time(a) / time(b), the order within a pair alternating; a's and b's time
    outside native calls, us; b's time, ms)."""
    for _ in range(5):
        a(), b()
    out, host_a, host_b, time_b = [], [], [], []
    for i in range(rounds):
        first, second = (a, b) if i % 2 == 0 else (b, a)
        _NATIVE[0] = 0.0
        t0 = time.perf_counter()
        first()
        t1 = time.perf_counter()
        n1 = _NATIVE[0]
        second()
        t2 = time.perf_counter()
        n2 = _NATIVE[0] - n1
        h1, h2 = 1e6 * (t1 - t0 - n1), 1e6 * (t2 - t1 - n2)
        ta, tb = (t1 - t0, t2 - t1) if first is a else (t2 - t1, t1 - t0)
        ha, hb = (h1, h2) if first is a else (h2, h1)
        out.append(ta / tb)
        host_a.append(ha)
        host_b.append(hb)
        time_b.append(1e3 * tb)
    return out, host_a, host_b, time_b


def summary(res: tuple) -> dict:
    r, ha, hb, tb = res
    q = statistics.quantiles(r, n=4, method="inclusive")
    return {
        "median_pct": 100 * (statistics.median(r) - 1),
        "q1_pct": 100 * (q[0] - 1),
        "q3_pct": 100 * (q[2] - 1),
        "host_a_us": statistics.median(ha),
        "host_b_us": statistics.median(hb),
        "b_ms": statistics.median(tb),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--opt", nargs="+", default=list(B.ADAPTER))
    ap.add_argument("--count", type=int, default=200, help="param tensors (16M float32 in all)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch, passive = B.torch_passive()
    sizes = B.split(16 * B.M, args.count)
    timed_native(("adam_", "sgd_"))
    out = {"passive": passive}
    for name in args.opt:
        cls, hp, _ = B.OPTIMIZERS[name]
        adapter, raw = B._adapter_and_raw(torch, cls, hp, sizes)
        out[name] = summary(paired(adapter, raw, args.rounds))
        out[name + " A/A"] = summary(paired(raw, raw, args.rounds))
        del adapter, raw
    if args.json:
        print(json.dumps(out))
        return
    for k, v in out.items():
        if isinstance(v, dict):
            print(
                f"{k:16s} {v['median_pct']:+6.2f}%  (quartiles {v['q1_pct']:+.2f}..{v['q3_pct']:+.2f}%)"
                f"  host outside native: {v['host_a_us']:.0f} / {v['host_b_us']:.0f} us; step {v['b_ms']:.2f} ms"
            )


if __name__ == "__main__":
    main()
