"""GPU optimizer steps (256M flat, 1000 arrays) vs torch.optim foreach/fused, with a device copy probe.

    python bench/optim_cuda.py [--quick] [--json FILE]

Same as `optkern bench optim --device cuda ...`.
"""

import sys

from _run import bench

if __name__ == "__main__":
    sys.exit(bench("optim", sys.argv[1:], extra=("--device", "cuda")))
