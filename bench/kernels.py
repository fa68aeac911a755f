"""Streaming kernels that are neither optimizer steps nor norms: %probe and vs torch.

Gradient clipping, GradScaler, SWA/EMA, low-precision conversion and quantization, dropout,
weight norm, the Philox generators.

    python bench/kernels.py [--device cpu|cuda] [--quick] [--json FILE] [--threads N]

Writes the results as JSON too (default bench/results-<suite>-<device>.json).

Same as `optkern bench kernels ...`; the cases and byte counts are documented in
optkern/benchmarks/kernels.py.
"""

import sys

from _run import bench

if __name__ == "__main__":
    sys.exit(bench("kernels", sys.argv[1:]))
