"""The ``optkern`` command: ``study`` (the main job), ``bench`` and ``info``."""
from __future__ import annotations

import argparse
import sys

from .study import UsageError

STUDY_HELP = """\
Train a small neural network (the built-in MLP) on a real dataset with several
optimizers, with and without batch norm, and measure the loss Hessian while it
trains: its largest eigenvalues (sharpness), its trace, its eigenvalue density
and how much of the gradient lies in the top eigenspace (Ghorbani et al. 2019).
Writes report.md, results.json and PNG figures into --out.

By default it uses the bundled 8x8 handwritten digits (1,797 images) and takes
a few minutes on a laptop CPU; --quick takes well under a minute.
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="optkern", description="Fast optimizer, normalization and Hessian kernels.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("study", help="train with several optimizers and measure the Hessian (the main demo)",
                       description=STUDY_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--out", default="optkern-study", help="output folder (default: ./optkern-study)")
    s.add_argument("--data", metavar="FILE", help=".npz with arrays x, y or .csv with the label in the last column "
                                                   "(default: the bundled digits)")
    s.add_argument("--optimizers", metavar="LIST",
                   help="comma-separated subset of: sgd,momentum,nesterov,adagrad,rmsprop,adam,adamw,nadam")
    s.add_argument("--norms", metavar="LIST", help="comma-separated: none,batch,layer (default: none,batch)")
    s.add_argument("--epochs", type=int, help="training epochs per run (default 30; 4 with --quick)")
    s.add_argument("--batch-size", type=int, help="mini-batch size (default 64)")
    s.add_argument("--hidden", metavar="LIST", help="hidden layer widths, e.g. 128,128")
    s.add_argument("--activation", choices=["tanh", "relu", "gelu", "sigmoid", "softplus"], help="default tanh")
    s.add_argument("--checkpoints", type=int, help="how many times to measure the Hessian per run (default 4)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0): same seed, same study")
    s.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="cuda needs CuPy and a GPU")
    s.add_argument("--threads", type=int, default=1,
                   help="CPU threads for optkern and BLAS (default 1: fastest for this small network, and "
                        "steady timings on a busy machine)")
    s.add_argument("--quick", action="store_true", help="a small study that finishes in under a minute")
    s.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    s.add_argument("--quiet", action="store_true", help="no progress output")

    b = sub.add_parser("bench", help="benchmark optkern against PyTorch (optimizers, normalization, HVP)")
    b.add_argument("suite", nargs="?", default="all", choices=["optim", "norm", "hvp", "all"])
    b.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    b.add_argument("--quick", action="store_true", help="small sizes and few repeats (a smoke run)")
    b.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    b.add_argument("--threads", type=int, help="OpenMP threads for optkern and torch (default: all)")

    sub.add_parser("info", help="how optkern was built: version, compiler, threads, SIMD, CUDA")
    return p


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        if args.command == "info":
            from . import info

            for k, v in info().items():
                print(f"{k:>14}: {v}")
            return 0
        if args.command == "study":
            from .study import main as study_main

            return study_main(args)
        from .benchmarks.suite import main as bench_main

        return bench_main(args)
    except UsageError as e:
        # Bad options or data: one line, exit code 2 (argparse's convention).
        print(f"optkern {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("optkern: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
