"""MLP loss+grad, Hessian-vector products and SLQ vs PyTorch autograd / torch.func.

    python bench/hvp.py [--device cpu|cuda] [--quick] [--json FILE] [--threads N]

Writes the results as JSON too (default bench/results-<suite>-<device>.json).

Same as `optkern bench hvp ...`; the cases and byte counts are documented in
optkern/benchmarks/hvp.py.
"""

import sys

from _run import bench

if __name__ == "__main__":
    sys.exit(bench("hvp", sys.argv[1:]))
