"""The study's optimizer table: which ``optkern.optim`` class each name builds, with which
hyper-parameters, on which batches, and how it is stepped."""

from __future__ import annotations

import inspect
from typing import NamedTuple

from .. import optim


class Method(NamedTuple):
    """One row of the study's optimizer table: a class of ``optkern.optim`` and
    the keyword arguments it is built with (``lr`` is the peak of the warm-up +
    cosine schedule); the class's own defaults fill in the rest.

    ``batch``: ``"mini"`` (the study's batch size), ``"large"`` (``StudyConfig.large_batch``
    rows) or ``"full"`` (the whole training set: one step per epoch). ``closure``: the class
    steps with ``step(closure)`` (it evaluates the loss and gradient itself, maybe several
    times) instead of ``step(grads)``. ``schedule``: whether the warm-up + cosine schedule
    drives its ``lr`` (not for methods whose step length comes from a line search or a
    trust region). ``base``: for a wrapper (SAM), the class it wraps; the hyper-parameters
    the wrapper's constructor does not take go to the wrapped optimizer. ``precision``:
    ``"bfloat16"`` keeps the weights in bfloat16 (the model computes with them, the optimizer
    holds a float32 master copy: ``master_weights=True``) and rounds each gradient to bfloat16;
    ``"float16"`` likewise, with dynamic loss scaling (study/lowprec.py's ``HalfWeights``).
    ``optimizer`` names a class of ``optkern.optim``, or ``"SWALP"`` (``optkern.swalp``).
    """

    optimizer: str
    hyperparameters: dict
    about: str = ""
    batch: str = "mini"
    closure: bool = False
    schedule: bool = True
    base: str = ""
    precision: str = ""  # "bfloat16" / "float16": the model sees half weights, the optimizer half grads


# The optimizers a study can run. Adding one is one row here. Learning rates are
# each method's usual good value for a small tanh MLP on standardized inputs;
# `optkern study --lr NAME=VALUE` overrides them.
OPTIMIZERS = {
    "sgd": Method("SGD", dict(lr=0.1), "plain stochastic gradient descent"),
    "momentum": Method("SGD", dict(lr=0.02, momentum=0.9), "heavy-ball momentum"),
    "nesterov": Method("SGD", dict(lr=0.02, momentum=0.9, nesterov=True), "Nesterov momentum"),
    "adagrad": Method("Adagrad", dict(lr=0.05)),
    "rmsprop": Method("RMSprop", dict(lr=1e-3)),
    "adam": Method("Adam", dict(lr=2e-3)),
    "adamw": Method("AdamW", dict(lr=2e-3, weight_decay=1e-2), "Adam with decoupled weight decay"),
    "nadam": Method("NAdam", dict(lr=2e-3), "Adam with Nesterov momentum"),
    "lbfgs": Method(
        "LBFGS",
        dict(lr=1.0, max_iter=20, history_size=20, line_search_fn="strong_wolfe"),
        "full batch: one step of up to max_iter iterations per epoch, strong-Wolfe line search, no lr schedule",
        batch="full",
        closure=True,
        schedule=False,
    ),
    "newton-cg": Method(
        "NewtonCG",
        dict(damping=1.0, max_cg_iter=20, cg_tol=5e-2, reuse_trial_gradient=False),
        "Hessian-free Newton on the Gauss-Newton matrix of each large batch (CG, Levenberg-Marquardt damping), "
        "no lr schedule",
        batch="large",
        closure=True,
        schedule=False,
    ),
    "sam": Method(
        "SAM",
        dict(rho=0.05, lr=0.02, momentum=0.9),
        "sharpness-aware minimization around SGD with momentum (two gradients per step)",
        closure=True,
        base="SGD",
    ),
    "asam": Method(
        "SAM",
        dict(rho=1.0, adaptive=True, lr=0.02, momentum=0.9),
        "adaptive SAM (ASAM, Kwon et al. 2021): the neighbourhood scaled by |w|, around SGD with momentum",
        closure=True,
        base="SGD",
    ),
    # `optkern study --low-precision` adds these four (issue 16): against "adam" and "momentum".
    "adam-bf16": Method(
        "Adam",
        dict(lr=2e-3, master_weights=True),
        "Adam on bfloat16 weights and gradients with a float32 master copy (fp32 m, v)",
        precision="bfloat16",
    ),
    "adam-fp16": Method(
        "Adam",
        dict(lr=2e-3, master_weights=True),
        "Adam on float16 weights and gradients with a float32 master copy and dynamic loss scaling",
        precision="float16",
    ),
    "adam-8bit": Method(
        "Adam",
        dict(lr=2e-3, state_dtype="int8", block_size=256),
        "Adam with blockwise 8-bit m, v (dynamic map, 256-value blocks), float32 weights",
    ),
    "swalp": Method(
        "SWALP",
        dict(lr=0.02, momentum=0.9, bits=8, number="block_fp", block=256),
        "SGD with momentum, weights, gradients and momentum in 8-bit block floating point (stochastic "
        "rounding), constant lr; SWA in float32 over the last quarter of the epochs, once per epoch",
        schedule=False,
    ),
}

# The runs `--low-precision` adds, and the full-precision run each is compared with.
LOW_PRECISION = {"adam-bf16": "adam", "adam-fp16": "adam", "adam-8bit": "adam", "swalp": "momentum"}

# What `optkern study` runs without --optimizers: the first-order methods (the second-order
# and sharpness-aware ones cost several gradients per step; ask for them by name or "all").
DEFAULT_OPTIMIZERS = ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw", "nadam"]

# Constructor options that say how a step runs, not what it computes.
_NOT_HYPERPARAMETERS = ("params", "capturable", "foreach", "fused", "differentiable", "base", "curvature")


def _accepts(cls) -> list:
    return [p.name for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"]


def _defaults(cls) -> dict:
    return {
        p.name: p.default
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.name not in _NOT_HYPERPARAMETERS and p.name != "self" and p.default is not p.empty
    }


def optimizer_class(name: str):
    """The class a Method's ``optimizer`` (or ``base``) names."""
    if name == "SWALP":
        from ..swalp import SWALP

        return SWALP
    return getattr(optim, name)


def all_hyperparameters(name: str, hp: dict) -> dict:
    """Every hyper-parameter of ``name``'s run: ``hp`` (the ones set), then the class's
    defaults for the rest (read from its signature; a wrapper's and its base's), for the report."""
    m = OPTIMIZERS[name]
    out = dict(hp)
    for cls_name in (m.optimizer, m.base):
        if cls_name:
            for k, v in _defaults(optimizer_class(cls_name)).items():
                out.setdefault(k, v)
    return out


def build(name: str, params: list, hp: dict, curvature=None):
    """``name``'s optimizer over ``params`` with hyper-parameters ``hp``; ``curvature`` (a
    callable returning the current batch's operator) for the classes that take one."""
    m = OPTIMIZERS[name]
    cls = optimizer_class(m.optimizer)
    if m.base:
        own = {k: v for k, v in hp.items() if k in _accepts(cls)}
        base = getattr(optim, m.base)(params, **{k: v for k, v in hp.items() if k not in own})
        return cls(base, **own)
    if "curvature" in _accepts(cls):
        if curvature is None:
            raise ValueError(f"{name}: needs a curvature operator")
        return cls(params, curvature, **hp)
    return cls(params, **hp)
