"""``optkern study``: an end-to-end optimization study (see runner.py)."""

from typing import Any

from .._words import counted_list, plural
from ._options import _config
from ._options import parse_lr as parse_lr
from .config import check_memory, runs_that_fit
from .methods import DEFAULT_OPTIMIZERS
from .runner import OPTIMIZERS, ConfigError, Method, StudyConfig, run_study

VAL_FRACTION = 0.2  # the share of the samples drawn for validation
_MORE_SAMPLES = "pass more samples of each class or another --seed"

#: What to do about a worker process that died (cli.py says it too, where run_study raised it).
WORKER_DIED = "killed by the system, perhaps out of memory: try fewer --jobs (1: no worker processes)"

__all__ = [
    "DEFAULT_OPTIMIZERS",
    "FLAGS",
    "OPTIMIZERS",
    "ConfigError",
    "Method",
    "StudyConfig",
    "UsageError",
    "main",
    "run_study",
]


class UsageError(ValueError):
    """Bad command-line options or data: reported in one line, exit code 2."""


# StudyConfig field -> the command-line flag that sets it, so errors name what the user typed.
FLAGS = {
    "optimizers": "--optimizers",
    "norms": "--norms",
    "epochs": "--epochs",
    "batch_size": "--batch-size",
    "large_batch": "--large-batch",
    "hidden": "--hidden",
    "activation": "--activation",
    "checkpoints": "--checkpoints",
    "curvature_batch": "--curvature-samples",
    "seed": "--seed",
    "seeds": "--seeds",
    "device": "--device",
    "threads": "--threads",
    "jobs": "--jobs",
    "low_precision": "--low-precision",
    "overrides": "--lr",
}


def _jobs(cfg, comm, train) -> int:
    """How many of the study's runs train at once (``runner.study_jobs``, as ``run_study`` counts them)."""
    from .runner import study_jobs

    fit = runs_that_fit(cfg, train.x.shape[1], train.num_classes)
    return study_jobs(cfg, len(cfg.optimizers) * len(cfg.norms) * cfg.seeds, comm, fit)


def _jobs_note(cfg, comm, train) -> str:
    jobs = _jobs(cfg, comm, train)
    return f", {jobs} runs at a time" if jobs > 1 else ""


def main(args) -> int:
    """Run a study from parsed CLI arguments; returns the exit code."""
    import os
    import sys

    import numpy as np

    from ..datasets import DataError, load_digits, load_file
    from .parallel import communicator

    if args.data == "":  # --data "$FILE" with FILE unset: an error, not a study of the digits
        raise UsageError("--data: no file name given (leave --data out for the bundled digits)")
    if not args.out.strip():  # (OUT unset, as --data above: it said "--out : cannot create the folder")
        raise UsageError("--out: no folder given (leave --out out for ./optkern-study)")
    if args.label_column is not None and not args.label_column.strip():  # (COL unset, as --data above)
        raise UsageError("--label-column: no column given (leave --label-column out for the last column)")
    if args.label_column is not None and not (args.data or "").lower().endswith(".csv"):
        raise UsageError("--label-column: applies to a .csv --data file (an .npz holds its labels in array 'y')")
    try:
        cfg = _config(args)
    except ConfigError as e:
        raise UsageError(f"{FLAGS.get(e.field, e.field)}: {e.message}") from None
    except (ValueError, TypeError) as e:
        raise UsageError(str(e)) from None
    try:
        data = load_file(args.data, label_column=args.label_column) if args.data else load_digits()
        train, val = data.split(val_fraction=VAL_FRACTION, seed=args.seed)
        present = len(np.unique(train.y))
        if args.data and present < 2:  # (the file's own rule, on what is trained: a rare class in val)
            raise DataError(
                f"{args.data}: the training split holds {present} of {data.num_classes} classes (the "
                f"{VAL_FRACTION:.0%} validation split drawn with --seed {args.seed} took the others' samples); "
                + _MORE_SAMPLES
            )
        # (a class whose every sample went to validation: noted in the report, said here too; split
        # keeps the data's notes one for one and appends that note, when there is one, last)
        untrained = train.notes[-1] if len(train.notes) > len(data.notes) else ""
    except (DataError, ValueError, TypeError) as e:
        # named by the option, as every other error is ("--data FILE: ..."; the loader's say "FILE: ...")
        said = str(e)
        raise UsageError(f"--data {said}" if args.data and said.startswith(f"{args.data}: ") else said) from None
    if untrained:  # (a file's classes all have samples: load_file numbers those it holds)
        print(f"optkern study: warning: --data {args.data}: {untrained}; {_MORE_SAMPLES}", file=sys.stderr)
    try:  # (widths the machine cannot hold: refused by arithmetic, before anything is allocated)
        check_memory(cfg, train.x.shape[1], train.num_classes)
    except ConfigError as e:
        raise UsageError(f"{FLAGS.get(e.field, e.field)}: {e.message}") from None
    # Under mpiexec (or --distributed): data-parallel over the ranks. Every rank parses the same
    # arguments and data, so a usage error stops every rank alike; only rank 0 writes or prints.
    forced = bool(getattr(args, "distributed", False))
    try:
        comm = communicator(force=forced)
    except ImportError as e:  # no mpi4py: the user's to install (the message says how), not a traceback
        raise UsageError(f"{'--distributed' if forced else 'a study under an MPI launcher'}: {e}") from None
    if comm is not None and args.jobs > 1:  # (study_jobs: one run at a time; every rank stops alike)
        raise UsageError(f"--jobs: under MPI the ranks share every run, one at a time; got {args.jobs} (leave it out)")
    try:  # (the runs that train at once, each in its worker process, hold their memory each)
        check_memory(cfg, train.x.shape[1], train.num_classes, at_once=_jobs(cfg, comm, train))
    except ConfigError as e:
        raise UsageError(f"{FLAGS.get(e.field, e.field)}: {e.message}") from None
    error = None
    if comm is None or comm.rank == 0:
        try:
            os.makedirs(args.out, exist_ok=True)
        except FileExistsError:  # (a file of that name: "cannot create the folder (File exists)" said less)
            error = f"--out {args.out}: exists and is not a folder"
        except OSError as e:
            error = f"--out {args.out}: cannot create the folder ({e.strerror})"
        else:
            error = _unwritable(args.out)
    if comm is not None:
        error = comm.bcast_object(error)  # every rank stops, none waits alone
    if error is not None:
        raise UsageError(error)
    if comm is not None and comm.rank != 0:
        run_study(train, val, cfg, progress=False, comm=comm)
        return 0
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr))
    say(
        f"optkern study: {plural(len(cfg.optimizers), 'optimizer')} x {plural(len(cfg.norms), 'normalization')}"
        + (f" x {cfg.seeds} seeds" if cfg.seeds > 1 else "")
        + f", {plural(cfg.epochs, 'epoch')} on {data.name} "
        f"({plural(len(data.y), 'sample')}), curvature at {counted_list('epoch', cfg.checkpoint_epochs())} on "
        f"{plural(min(cfg.curvature_batch, len(train.y)), 'sample')}"
        + (f", data-parallel over {comm.size} MPI ranks" if comm is not None else "")
        + _jobs_note(cfg, comm, train)
        + f"; output in {os.path.abspath(args.out)}"
    )

    _mark_unfinished(args.out)
    with _SigtermAsCtrlC() as sigterm:
        code = _run_and_report(args, train, val, cfg, comm, say)
    return 128 + int(sigterm.signum) if code == 130 and sigterm.signum else code


def _run_and_report(args, train, val, cfg, comm, say) -> int:
    """The study's runs, then results.json and report.md; 130 if interrupted, else 0."""
    import os
    import sys

    from .._atomic import Uninterrupted
    from . import plots, report

    def checkpoint(results):  # keep a valid results.json after every run
        # marked interrupted until the study ends: killed meanwhile (SIGKILL), it is the result
        report.write_json({**results, "interrupted": True}, args.out)

    results = run_study(train, val, cfg, progress=not args.quiet, on_run_done=checkpoint, comm=comm)
    try:
        report.write_json(results, args.out)
    except KeyboardInterrupt:
        # Ctrl-C or SIGTERM after the last run: the last checkpoint (every run, "interrupted") stays,
        # and the report is still written, marked so -- it escaped with no report and exit 130
        results["interrupted"] = True
    written = results["interrupted"]  # (what results.json says now)
    figures: list = []
    if not args.no_plots:
        try:
            figures = plots.make_plots(results, args.out)
            if not plots.available():
                print(
                    'optkern study: plots skipped: matplotlib is not installed (pip install "optkern[study]")',
                    file=sys.stderr,
                )
        except KeyboardInterrupt:  # a Ctrl-C while drawing: still write the report
            results["interrupted"] = True

    def write_report() -> str:
        return report.write_markdown(
            results,
            args.out,
            figures,
            captions=captions(results),
            skipped="--no-plots was given" if args.no_plots else report.NO_MATPLOTLIB,
        )

    try:
        path = write_report()
    except KeyboardInterrupt:
        # the first Ctrl-C / SIGTERM while the report is written (later SIGTERMs are ignored):
        # written again, marked -- it escaped with report.md left "Not finished" and exit 130
        results["interrupted"] = True
        path = write_report()
    if results["interrupted"] and not written:
        # interrupted while the figures or the report were drawn: results.json, written before
        # them, said "interrupted": false where report.md and the exit status say otherwise. Written
        # again whole (a further Ctrl-C deferred to its end; a further SIGTERM is ignored).
        try:
            with Uninterrupted():
                report.write_json(results, args.out)
        except KeyboardInterrupt:
            pass  # (stopping already)
    print(f"report: {os.path.abspath(path)}")  # also with --quiet: where to look is the one thing to say
    if results.get("failure"):
        missing = ", ".join(map(report.run_label, results.get("missing", ())))
        print(
            f"optkern study: error: {results['failure']}; {WORKER_DIED}; the report holds the "
            f"{plural(len(results['runs']), 'run')} that finished" + (f"; not measured: {missing}" if missing else ""),
            file=sys.stderr,
        )
        return 1
    if results["interrupted"]:
        say("interrupted: the report holds the runs measured so far")
        return 130
    return 0


class _SigtermAsCtrlC:
    """While the study runs, SIGTERM does what Ctrl-C does (main thread only: Python runs signal
    handlers there alone).

    ``kill``, ``timeout``, a job scheduler at its time limit, systemd and ``docker stop`` send
    SIGTERM, whose default action ended the study at once: the run in flight lost and no report
    written. The handler calls SIGINT's handler in place (``KeyboardInterrupt``, or the record of
    an ``optkern._atomic.Uninterrupted`` step that defers it; raised directly where SIGINT is
    ignored, as in a job started in the background) and ignores later SIGTERMs while the report is
    written; ``signum`` says one came (the exit status is then 128 + SIGTERM, not Ctrl-C's 130)."""

    def __init__(self) -> None:
        self.signum = 0
        self._old: Any = None

    def __enter__(self) -> "_SigtermAsCtrlC":
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        import signal

        from .pool import _ignore  # (a later SIGTERM's handler while the report is written: nothing)

        self.signum = signum
        signal.signal(signal.SIGTERM, _ignore)  # (not SIG_IGN: see study.pool's docstring)
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler):
            handler(signal.SIGINT, frame)
        else:
            raise KeyboardInterrupt

    def __exit__(self, *exc) -> None:
        import signal

        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)


#: What a study writes into --out (report.write_json / write_markdown, plots.make_plots).
OUTPUTS = (
    "results.json",
    "report.md",
    "loss.png",
    "accuracy.png",
    "top_eigenvalue.png",
    "spectral_density.png",
    "training_time.png",
)


def _unwritable(out: str):
    """Why the study could not write its files into the folder ``out``, or None. Checked before
    training: otherwise the first results.json, after the first run, ended the study with a
    traceback (a folder the user cannot write to, or a directory named results.json)."""
    import os
    import tempfile

    from .._atomic import why_not_replaceable

    for name in OUTPUTS:
        path = os.path.join(out, name)
        if os.path.exists(path) and not os.path.isfile(path):
            return f"--out {out}: {name} exists and is not a file"
        # a symbolic link is written through, into its target's folder (not the one tested below):
        # one there that takes no file ended the study, after its training, with a traceback
        why = why_not_replaceable(path) if os.path.islink(path) else None
        if why is not None:
            return f"--out {out}: {name} (a link to {os.path.realpath(path)}) {why}"
    try:
        with tempfile.NamedTemporaryFile(dir=out, prefix=".optkern-write-test-"):
            pass
    except OSError as e:
        return f"--out {out}: cannot write into the folder ({e.strerror or e})"
    return None


UNFINISHED = (
    "# optkern study\n\n**Not finished**: the study writing into this folder is still running, or was "
    "stopped before it could write its report; results.json (once there) holds the runs finished so far.\n"
)


def _mark_unfinished(out: str) -> None:
    """Replace a previous study's report.md and results.json in ``out`` before training: a study
    killed before writing its own (SIGTERM, SIGKILL) left them there, looking complete, beside its
    partial results (or none). Its figures go too: a study that draws none (--no-plots, no
    matplotlib) left them beside its own report, looking current."""
    import os

    try:
        with open(os.path.join(out, "report.md"), "w") as f:
            f.write(UNFINISHED)
        for name in OUTPUTS:
            if name != "report.md" and os.path.isfile(os.path.join(out, name)):
                os.remove(os.path.join(out, name))
    except OSError as e:  # (a report.md the user cannot write: found now, not after the training)
        raise UsageError(f"--out {out}: cannot write report.md or results.json ({e.strerror or e})") from None


def captions(results: dict) -> dict:
    """Each figure's caption, computed from the numbers it shows."""
    from . import plots, summary

    return {
        "loss.png": summary.loss_caption(results),
        "accuracy.png": summary.accuracy_caption(results, plots.accuracy_floor(results)),
        "top_eigenvalue.png": summary.top_eigenvalue_caption(results),
        "spectral_density.png": summary.density_caption(results),
        "training_time.png": summary.time_caption(results),
    }
