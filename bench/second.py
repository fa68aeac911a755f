"""L-BFGS vs torch.optim.LBFGS, its fused two-loop passes vs the probe, Newton-CG per CG iteration vs one HVP, SAM.

    python bench/second.py [--device cpu|cuda] [--quick] [--json FILE] [--threads N]

Writes the results as JSON too (default bench/results-<suite>-<device>.json).

Same as `optkern bench second ...`; the cases and byte counts are documented in
optkern/benchmarks/second_order.py.
"""

import sys

from _run import bench

if __name__ == "__main__":
    sys.exit(bench("second", sys.argv[1:]))
