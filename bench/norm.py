"""Normalization forward and forward+backward vs torch.nn.functional.

    python bench/norm.py [--device cpu|cuda] [--quick] [--json FILE] [--threads N]

Writes the results as JSON too (default bench/results-<suite>-<device>.json).

Same as `optkern bench norm ...`; the cases and byte counts are documented in
optkern/benchmarks/norm.py.
"""

import sys

from _run import bench

if __name__ == "__main__":
    sys.exit(bench("norm", sys.argv[1:]))
