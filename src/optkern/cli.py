"""The ``optkern`` command: ``study`` (the main job), ``bench`` and ``info``."""

from __future__ import annotations

import argparse
import errno
import os
import sys

from ._cli_numbers import whole_option
from .study import UsageError


def _version() -> str:
    from . import __version__

    return __version__


def _study_help() -> str:
    from .study.runner import DEFAULT_OPTIMIZERS, OPTIMIZERS, StudyConfig

    d, q = StudyConfig(), StudyConfig.quick()
    return f"""\
Train a small neural network (the built-in MLP) with several optimizers, with
and without batch norm, and watch the curvature of its loss while it trains.

What it does
  Each run trains an MLP (hidden {",".join(map(str, d.hidden))}, {d.activation}) for {d.epochs} epochs with
  one optimizer (by default {", ".join(DEFAULT_OPTIMIZERS)};
  also {", ".join(o for o in OPTIMIZERS if o not in DEFAULT_OPTIMIZERS)} with --optimizers: full-batch L-BFGS,
  Hessian-free Newton-CG on batches of {d.large_batch}, sharpness-aware SGD and its adaptive
  variant; the low-precision runs of --low-precision)
  under a warm-up + cosine learning-rate schedule, once without and once with
  batch norm; every run of one seed starts from the same weights. At {d.checkpoints}
  checkpoints (first and last epoch included) it measures the exact Hessian of
  the training loss on a fixed subset of (at most) {d.curvature_batch} training samples:
    - the largest eigenvalues (sharpness), by Lanczos;
    - the trace (sum of all eigenvalues), by Hutch++ with {d.trace_matvecs} products (and its
      standard error);
    - the eigenvalue density, by stochastic Lanczos quadrature;
    - the share of the gradient inside the top-{d.concentration_k} eigenspace.
  Ghorbani, Krishnan & Xiao (ICML 2019) report large outlier eigenvalues without
  batch norm that batch norm removes; the report says what this run measured,
  next to their claim.

Output (in --out)
  report.md         summary computed from the measurements, every optimizer's
                    hyper-parameters, data handling, a table per optimizer x
                    norm (mean +- s.d. with --seeds), figures with captions
  results.json      every number measured (learning curves, eigenvalues, ...)
  *.png             loss, accuracy, top eigenvalue and trace, spectral density
                    (optimizer x norm panels), time per step (needs matplotlib)

Data: the bundled 8x8 handwritten digits (1,797 images, 10 classes), or your
own --data file (.npz: x, y; .csv: label in the last column or --label-column).
A file's features are standardized per column by the training rows' mean and
standard deviation (the validation rows by the same), images flattened, and labels
of any integer values (1..10, -1/+1) or class names (setosa, ...) renumbered 0..K-1; the digits' pixels are
scaled to [0, 1]. The report says what was done.

Under MPI (mpiexec -n N python -m mpi4py -m optkern study ...): data-parallel
training, each rank computing the loss and gradient of its share of every batch,
gradients summed over the ranks in rank order (every rank holds the same
parameters), the Hessian measured with each rank multiplying on its share of the
samples; rank 0 alone prints progress and writes the report. A study is
distributed when the launcher says so (PMI_SIZE, OMPI_COMM_WORLD_SIZE or
MV2_COMM_WORLD_SIZE > 1; mpi4py is not imported otherwise), or with --distributed.
With batch norm each rank normalizes its own share (as DDP without SyncBatchNorm).

Time: the default study takes under a minute on an idle 2-core CPU (its runs train
in parallel, one per logical CPU: --jobs); --quick (hidden
{",".join(map(str, q.hidden))}, {q.epochs} epochs, Hessian on {q.curvature_batch} samples) well under a minute. Ctrl-C
(or SIGTERM) stops early and still writes a report of the runs so far.

Exit status: 0 done; 2 bad options or data (one line on stderr, before any
training); 1 out of memory or a worker process died (then the report holds the
runs that finished and names the others); 130 stopped by Ctrl-C (143 by SIGTERM).
A console whose reader left (| head) is no error: the study runs on without it
and writes every file.

examples:
  optkern study --quick
  optkern study --optimizers sgd,adam --lr adam=1e-3 --epochs 10 --out my-study
  optkern study --seeds 3                       (mean and spread over 3 seeds)
  optkern study --quick --optimizers adam,lbfgs,newton-cg,sam
  mpiexec -n 2 python -m mpi4py -m optkern study --quick
  optkern study --data mydata.csv --label-column species
"""


def _parser() -> argparse.ArgumentParser:
    from .study.methods import LOW_PRECISION
    from .study.runner import DEFAULT_OPTIMIZERS, OPTIMIZERS, StudyConfig

    d, q = StudyConfig(), StudyConfig.quick()

    def default(field: str) -> str:
        """``default X`` (``; Y with --quick`` where --quick changes it), from StudyConfig."""
        show = lambda v: ",".join(map(str, v)) if isinstance(v, tuple) else str(v)  # noqa: E731
        a, b = show(getattr(d, field)), show(getattr(q, field))
        return f"default {a}" if a == b else f"default {a}; {b} with --quick"

    p = argparse.ArgumentParser(prog="optkern", description="Fast optimizer, normalization and Hessian kernels.")
    p.add_argument("--version", action="version", version=f"optkern {_version()}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser(
        "study",
        help="train with several optimizers and measure the Hessian (the main demo)",
        description=_study_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("--out", default="optkern-study", help="output folder (default: ./optkern-study)")
    s.add_argument(
        "--data",
        metavar="FILE",
        help=".npz with arrays x, y or .csv with the label in the last column (default: the bundled digits)",
    )
    s.add_argument(
        "--label-column",
        metavar="COL",
        help="the CSV's label column: a 0-based index (-1: the last, the default) or a header name",
    )
    s.add_argument(
        "--optimizers",
        metavar="LIST",
        help="comma-separated subset of: " + ",".join(OPTIMIZERS) + ", or 'all' (default: the first-order "
        "ones, " + ",".join(DEFAULT_OPTIMIZERS) + ")",
    )
    s.add_argument("--norms", metavar="LIST", help="comma-separated: none,batch,layer (default: none,batch)")
    s.add_argument("--epochs", type=whole_option, help=f"training epochs per run ({default('epochs')})")
    s.add_argument("--batch-size", type=whole_option, help=f"mini-batch size ({default('batch_size')})")
    s.add_argument(
        "--large-batch", type=whole_option, metavar="N", help=f"batch size of newton-cg ({default('large_batch')})"
    )
    s.add_argument("--hidden", metavar="LIST", help=f"hidden layer widths ({default('hidden')})")
    s.add_argument("--activation", choices=["tanh", "relu", "gelu", "sigmoid", "softplus"], help=default("activation"))
    s.add_argument(
        "--checkpoints",
        type=whole_option,
        help="how many times to measure the Hessian per run, at evenly spaced epochs from 0 to the last "
        f"(1: the last epoch only; at most --epochs + 1, which also caps the unset count; {default('checkpoints')})",
    )
    s.add_argument(
        "--curvature-samples",
        type=whole_option,
        metavar="N",
        dest="curvature_batch",
        help=f"training samples the Hessian is measured on ({default('curvature_batch')})",
    )
    s.add_argument(
        "--lr",
        action="append",
        metavar="NAME=VALUE",
        help="peak learning rate of one optimizer, e.g. --lr adam=1e-3 --lr sgd=0.05 (repeatable; "
        "defaults in report.md)",
    )
    s.add_argument("--seed", type=whole_option, default=0, help="random seed (default 0): same seed, same study")
    s.add_argument(
        "--seeds",
        type=whole_option,
        default=1,
        metavar="N",
        help="run every configuration N times (seeds SEED..SEED+N-1); tables and plots show mean and "
        "spread (default 1)",
    )
    s.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="cuda needs CuPy and a GPU")
    s.add_argument(
        "--threads",
        type=whole_option,
        default=1,
        help="CPU threads for optkern and BLAS (BLAS at most one per logical CPU this process may use -- its "
        "affinity mask, SMT siblings counted, and a cgroup quota: its threads spin; default 1: "
        "fastest for this small network, and steady timings on a busy machine)",
    )
    s.add_argument(
        "--jobs",
        type=whole_option,
        default=0,
        metavar="N",
        help="runs trained at once, in worker processes (default 0: one per logical CPU this process may "
        "use, each with "
        "--threads threads; 1: all in this process; one at a time on a GPU and under MPI). Results do not "
        "depend on it",
    )
    s.add_argument(
        "--low-precision",
        action="store_true",
        help="add " + ", ".join(LOW_PRECISION) + " (Adam on bfloat16 weights with an fp32 master, on float16 "
        "weights with dynamic loss scaling, Adam with 8-bit states, SWALP: 8-bit SGD + SWA) and compare them "
        "with fp32 Adam and SGD with momentum in the report where --optimizers runs them (the default does; CPU); "
        "--lr adam=... (momentum=...) sets their learning rate too, unless --lr names them",
    )
    s.add_argument("--quick", action="store_true", help="a smaller, shorter study for a first look or a smoke test")
    s.add_argument(
        "--distributed",
        action="store_true",
        help="data-parallel over MPI ranks even where the launcher's environment (PMI_SIZE, "
        "OMPI_COMM_WORLD_SIZE) does not say so; automatic under mpiexec",
    )
    s.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    s.add_argument("--quiet", action="store_true", help="no progress output (the report's path is still printed)")

    from .benchmarks.suite import ALL

    b = sub.add_parser("bench", help="benchmark optkern against PyTorch (optimizers, normalization, HVP)")
    b.add_argument(
        "suite",
        nargs="?",
        default="all",
        choices=["optim", "rules", "norm", "hvp", "second", "kernels", "all", "dist"],
        help=f"default all: {', '.join(ALL)}; rules: every optimizer variant on one array vs the "
        "bandwidth probe; second: L-BFGS / Newton-CG / SAM; kernels: gradient clipping, GradScaler, "
        "SWA/EMA, low-precision conversion and quantization, dropout, weight norm and the Philox "
        "generators vs the bandwidth probe; dist: data-parallel / ZeRO-1 communication, run under "
        "mpiexec -n N (none of the four is in 'all')",
    )
    b.add_argument(
        "--device",
        choices=["cpu", "cuda"],
        default="cpu",
        help="where the arrays live: cpu (default: NumPy arrays, torch on the CPU) or cuda (CuPy arrays and torch "
        "on the current GPU; needs CuPy and a GPU)",
    )
    b.add_argument("--quick", action="store_true", help="small sizes and few repeats (a smoke run)")
    b.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    b.add_argument(
        "--threads",
        type=whole_option,
        help="OpenMP threads for optkern and torch (default: each library's own count; optkern's is "
        "OMP_NUM_THREADS or one per logical CPU this process may use, as optkern.get_num_threads() says)",
    )

    sub.add_parser(
        "info",
        help="how optkern was built: version, compiler, threads, SIMD, CUDA",
        description="Print optkern.info(): version, compiler, OpenMP threads, SIMD level, the serial_below "
        "bound, the memory pool, CUDA availability.",
    )
    return p


def _to_devnull(stream) -> None:
    """Point ``stream``'s descriptor at /dev/null: its reader went away (``| head``), and what is
    still buffered or printed later must not raise at every write again, nor at exit."""
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, stream.fileno())
    finally:
        os.close(null)


class _Console:
    """stdout or stderr of a command whose product is its files (``study``, ``bench --json``): the
    first write or flush that finds the reader gone (``optkern study 2>&1 | head -1``) sends this
    stream to /dev/null (``_to_devnull``), and the command runs on to write every file. A progress
    line raising BrokenPipeError stopped the study before its report (exit 141)."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._gone()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._gone()

    def _gone(self) -> None:
        _to_devnull(self._stream)
        try:
            self._stream.flush()  # (the rest of its buffer, to /dev/null)
        except OSError:
            pass

    def __getattr__(self, name: str):  # (isatty, fileno, encoding, ...: the stream's own)
        return getattr(self._stream, name)


def main(argv=None) -> int:
    """Run the ``optkern`` command; returns its exit status: 0 done, 2 bad options or data, 1 out of
    memory or a worker process died, 130 interrupted (143: SIGTERM during a study), 141 SIGPIPE
    (``info`` or ``bench`` without ``--json`` whose reader left: nothing else to do). ``study`` and
    ``bench --json`` run on with their console discarded (``_Console``) and keep their own status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if not (args.command == "study" or (args.command == "bench" and args.json)):
        return _main(args)
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Console(sys.stdout), _Console(sys.stderr)
    try:
        return _main(args)
    finally:
        sys.stdout, sys.stderr = saved


#: the errors of a write the user can act on (space, quota, a file too large, a read-only or failing disk)
_WRITE_FAILURES = frozenset(
    getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EFBIG", "EROFS", "EIO") if hasattr(errno, name)
)


def _main(args) -> int:
    from concurrent.futures.process import BrokenProcessPool

    from ._malloc import pin_glibc_thresholds

    pin_glibc_thresholds()  # timings independent of allocation history (see optkern._malloc)
    try:
        if args.command == "info":
            from . import info

            for k, v in info().items():
                print(f"{k:>14}: {v}")
            return 0
        if args.command == "study":
            from .study import main as study_main

            return study_main(args)
        if args.suite == "dist":
            from .benchmarks.dist import main as dist_main

            return dist_main(args)
        from .benchmarks.suite import main as bench_main

        return bench_main(args)
    except UsageError as e:
        # Bad options or data: one line, exit code 2 (argparse's convention).
        print(f"optkern {args.command}: error: {e}", file=sys.stderr)
        return 2
    except MemoryError as e:
        # a network or benchmark too large for this machine (--hidden 65536,65536 wants 16 GiB):
        # one line, as for any failure the user can act on, not NumPy's traceback
        hint = "a smaller --hidden, --curvature-samples or --jobs may fit" if args.command == "study" else "try --quick"
        print(f"optkern {args.command}: error: out of memory ({e}); {hint}", file=sys.stderr)
        return 1
    except BrokenProcessPool as e:  # a worker of --jobs killed (the kernel's OOM killer, kill -9)
        from .study import WORKER_DIED

        print(f"optkern {args.command}: error: a worker process died ({e}); {WORKER_DIED}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("optkern: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # (before OSError: it is one, and that clause re-raises it)
        # the reader went away (`optkern info | head`): no traceback, and none at exit either, when
        # Python flushes the dead stdout again (the idiom of the Python docs' "Note on SIGPIPE")
        _to_devnull(sys.stdout)
        return 141  # 128 + SIGPIPE, as a shell reports a writer killed by it
    except OSError as e:
        if e.errno not in _WRITE_FAILURES:
            raise
        # a file the command writes could not be (a full disk, a quota): one line naming it, not a
        # traceback; the file itself is whole or absent (_atomic.replace_atomically)
        where = f"cannot write {e.filename}" if e.filename else "cannot write its output"
        # (the study's note naming the run whose result was being written: pool.py)
        notes = [n.removeprefix(f"optkern {args.command}: ") for n in getattr(e, "__notes__", [])]
        said = f" ({'; '.join(notes)})" if notes else ""
        print(f"optkern {args.command}: error: {where}: {e.strerror or e}{said}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
