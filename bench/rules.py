"""Every optimizer rule variant on one flat array: %probe (a loop that lost its vectorization shows) and vs torch.

    python bench/rules.py [--device cpu|cuda] [--quick] [--json FILE] [--threads N]

Writes the results as JSON too (default bench/results-<suite>-<device>.json).

Same as `optkern bench rules ...`; the variants and byte counts are documented in
optkern/benchmarks/rules.py.
"""

import sys

from _run import bench

if __name__ == "__main__":
    sys.exit(bench("rules", sys.argv[1:]))
