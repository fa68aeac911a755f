"""``optkern study``: an end-to-end optimization study (see runner.py)."""
from __future__ import annotations

from typing import Any

from .runner import OPTIMIZERS, StudyConfig, run_study

__all__ = ["OPTIMIZERS", "StudyConfig", "UsageError", "run_study", "main"]


class UsageError(ValueError):
    """Bad command-line options or data: reported in one line, exit code 2."""


def main(args) -> int:
    """Run a study from parsed CLI arguments; returns the exit code."""
    import os
    import sys

    from ..datasets import DataError, load_digits, load_file
    from . import plots, report

    try:
        data = load_file(args.data) if args.data else load_digits()
        train, val = data.split(val_fraction=0.2, seed=args.seed)
        cfg = _config(args)
    except (DataError, ValueError, TypeError) as e:
        raise UsageError(str(e)) from None
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--out {args.out}: cannot create the folder ({e.strerror})") from None
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr))
    say(f"optkern study: {len(cfg.optimizers)} optimizer(s) x {len(cfg.norms)} normalization(s), "
        f"{cfg.epochs} epochs on {data.name} ({len(data.y)} samples), curvature at epochs "
        f"{cfg.checkpoint_epochs()}; output in {os.path.abspath(args.out)}")

    def checkpoint(results):  # keep a valid results.json after every run
        report.write_json(results, args.out)

    results = run_study(train, val, cfg, progress=not args.quiet, on_run_done=checkpoint)
    report.write_json(results, args.out)
    figures = []
    if not args.no_plots:
        try:
            figures = plots.make_plots(results, args.out)
            if not plots.available():
                print("optkern study: plots skipped: matplotlib is not installed "
                      "(pip install \"optkern[study]\")", file=sys.stderr)
        except KeyboardInterrupt:  # a second Ctrl-C while drawing: still write the report
            results["interrupted"] = True
    path = report.write_markdown(results, args.out, figures,
                                 skipped="--no-plots was given" if args.no_plots else report.NO_MATPLOTLIB)
    print(f"report: {os.path.abspath(path)}")
    if results["interrupted"]:
        say("interrupted: the report holds the runs measured so far")
        return 130
    return 0


def _config(args) -> StudyConfig:
    kw: dict[str, Any] = {}
    if args.optimizers:
        kw["optimizers"] = [s.strip() for s in args.optimizers.split(",") if s.strip()]
    if args.norms:
        kw["norms"] = [s.strip() for s in args.norms.split(",") if s.strip()]
    for name in ("epochs", "batch_size", "checkpoints", "curvature_batch", "activation"):
        if getattr(args, name) is not None:
            kw[name] = getattr(args, name)
    if args.hidden:
        try:
            kw["hidden"] = tuple(int(h) for h in args.hidden.split(","))
        except ValueError:
            raise ValueError(f"--hidden: expected comma-separated widths like 128,128, got {args.hidden!r}") from None
    kw["seed"] = args.seed
    kw["device"] = args.device
    kw["threads"] = args.threads
    cfg = StudyConfig.quick(**kw) if args.quick else StudyConfig(**kw)
    cfg.validate()
    if cfg.device == "cuda":
        _check_cuda()
    return cfg


def _check_cuda() -> None:
    from .. import _backend

    try:
        import cupy  # noqa: F401
    except ImportError:
        raise ValueError("--device cuda needs CuPy: pip install \"optkern[cuda]\"") from None
    if not _backend.cuda_built():
        raise ValueError("--device cuda: this optkern was built without CUDA support")
    if _backend.cuda_module().device_count() < 1:
        raise ValueError("--device cuda: no CUDA device is visible")
