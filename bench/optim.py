"""Optimizer steps (Adam, AdamW, SGD-momentum, Adagrad, L1+L2 penalty, step() overhead) vs torch.optim.

    python bench/optim.py [--device cpu|cuda] [--quick] [--json FILE] [--threads N]

Writes the results as JSON too (default bench/results-<suite>-<device>.json).

Same as `optkern bench optim ...`; the cases and byte counts are documented in
optkern/benchmarks/optim.py.
"""

import sys

from _run import bench

if __name__ == "__main__":
    sys.exit(bench("optim", sys.argv[1:]))
