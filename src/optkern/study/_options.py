"""The ``optkern study`` command line's options read into a checked :class:`StudyConfig`: the
options' own rules beyond ``StudyConfig.validate`` (a ``--lr`` or batch size that no run uses, more
checkpoints than epochs), and what ``--device cuda`` needs (``study.main`` calls ``_config``)."""

from __future__ import annotations

from typing import Any

from .._cli_numbers import real, whole
from .config import ConfigError, StudyConfig
from .methods import DEFAULT_OPTIMIZERS, LOW_PRECISION, OPTIMIZERS


def parse_lr(values) -> dict:
    """``--lr adam=1e-3 --lr sgd=0.05`` (or ``adam=1e-3,sgd=0.05``) -> {name: {"lr": value}}."""
    out: dict = {}
    for v in values or ():
        if not v.strip(" ,"):  # --lr "$LR" with LR unset: an error, not the default rates
            raise ConfigError("overrides", f"expected NAME=VALUE like adam=1e-3, got {v!r}")
    for item in (p.strip() for v in values or () for p in v.split(",") if p.strip()):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ConfigError("overrides", f"expected NAME=VALUE like adam=1e-3, got {item!r}")
        try:
            lr = real(value)  # (strictly: float() took 1_0 as 10, and nan, inf)
        except ValueError as e:
            raise ConfigError("overrides", f"{name}={value}: {e}") from None
        if "lr" in out.get(name, {}):  # the last one won silently: which one was meant?
            raise ConfigError("overrides", f"{name} given more than once ({out[name]['lr']:g} and {lr:g})")
        out.setdefault(name, {})["lr"] = lr
    return out


def _config(args) -> StudyConfig:
    kw: dict[str, Any] = {}
    # "is not None", not truthiness: an empty --optimizers "" (a shell variable left unset) is an
    # error from validate(), not a silent fall-back to the default study.
    if args.optimizers is not None:
        names = [s.strip() for s in args.optimizers.split(",") if s.strip()]
        kw["optimizers"] = list(OPTIMIZERS) if names == ["all"] else names
    # The low-precision runs, after the ones asked for (not after an empty --optimizers "": that
    # stays validate()'s error, not a study of the low-precision runs alone).
    if getattr(args, "low_precision", False) and kw.get("optimizers") != []:
        names = kw.get("optimizers", list(DEFAULT_OPTIMIZERS))
        kw["optimizers"] = names + [n for n in LOW_PRECISION if n not in names]
        kw["low_precision"] = True
    if args.norms is not None:
        kw["norms"] = [s.strip() for s in args.norms.split(",") if s.strip()]
    for name in ("epochs", "batch_size", "large_batch", "checkpoints", "curvature_batch", "activation"):
        if getattr(args, name, None) is not None:
            kw[name] = getattr(args, name)
    if args.hidden is not None:
        try:
            kw["hidden"] = tuple(whole(h) for h in args.hidden.split(","))  # (not int(): 1_6 was 16)
        except ValueError:
            raise ConfigError("hidden", f"expected comma-separated widths like 128,128, got {args.hidden!r}") from None
    kw["overrides"] = parse_lr(args.lr)
    kw["seed"] = args.seed
    kw["seeds"] = args.seeds
    kw["device"] = args.device
    kw["threads"] = args.threads
    kw["jobs"] = args.jobs
    cfg = StudyConfig.quick(**kw) if args.quick else StudyConfig(**kw)
    cfg.validate()
    # validate() allows overrides of any known optimizer (a StudyConfig built in code may carry
    # them for later); on the command line a --lr for an optimizer this study does not run would
    # be silently ignored: most likely a typo or a forgotten --optimizers.
    idle = [name for name in cfg.overrides if name not in cfg.optimizers]
    if idle:
        raise ConfigError(
            "overrides",
            f"{', '.join(idle)}: not among the optimizers this study runs ({', '.join(cfg.optimizers)}); "
            "add it with --optimizers",
        )
    # Likewise a batch size no run uses: --large-batch sets newton-cg's batches alone, --batch-size
    # the mini-batch optimizers' (L-BFGS takes the whole training set).
    others = ", ".join(o for o in OPTIMIZERS if OPTIMIZERS[o].batch != "mini")
    for field, kind, users in (
        ("large_batch", "large", ", ".join(o for o in OPTIMIZERS if OPTIMIZERS[o].batch == "large")),
        ("batch_size", "mini", f"the mini-batch optimizers (all but {others})"),
    ):
        if getattr(args, field, None) is not None and all(OPTIMIZERS[o].batch != kind for o in cfg.optimizers):
            raise ConfigError(
                field, f"applies to {users}; this study runs {', '.join(cfg.optimizers)} (add one with --optimizers)"
            )
    # The Hessian is measured at epoch 0 and at most once per epoch after it: more checkpoints were
    # measured epochs + 1 times, silently. Only a count given is refused: the default follows --epochs.
    if getattr(args, "checkpoints", None) is not None and cfg.checkpoints > cfg.epochs + 1:
        raise ConfigError(
            "checkpoints",
            f"at most --epochs + 1 = {cfg.epochs + 1} (epoch 0 and "
            f"{'the one epoch' if cfg.epochs == 1 else f'each of the {cfg.epochs} epochs'}), "
            f"got {cfg.checkpoints}",
        )
    if cfg.device != "cpu" and cfg.jobs > 1:  # (study_jobs: one run at a time on the one GPU)
        raise ConfigError("jobs", f"runs train one at a time on a GPU; got {cfg.jobs} (leave it out)")
    if cfg.device == "cuda":
        _check_cuda()
    return cfg


def _check_cuda() -> None:
    from .. import _backend

    try:
        import cupy  # noqa: F401
    except ImportError:
        raise ValueError('--device cuda needs CuPy: pip install "optkern[cuda]"') from None
    if not _backend.cuda_built():
        raise ValueError("--device cuda: this optkern was built without CUDA support")
    if _backend.cuda_module().device_count() < 1:
        raise ValueError("--device cuda: no CUDA device is visible")
