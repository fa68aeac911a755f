"""NewtonCG's hyper-parameters: their names (the group's keys, in ``__init__``'s order) and their
checks, shared by the constructor, every step, ``param_groups`` edits and ``load_state_dict``."""

from __future__ import annotations

from .. import _backend

#: the hyper-parameters of the group, in ``__init__``'s order
_HYPER = (
    "lr",
    "damping",
    "max_cg_iter",
    "cg_tol",
    "precond_exponent",
    "warm_start",
    "boost",
    "drop",
    "min_damping",
    "max_damping",
)


def check_hyper(g, where: str = "", dtype=None) -> tuple:
    """The group's hyper-parameters, checked; errors name them (inside ``where``, a state dict's group).
    ``dtype``: the params' (``max_damping`` must be finite in it)."""
    b = _backend
    n = (lambda k: f"{where}[{k!r}]") if where else (lambda k: k)
    hp = (
        b.positive(n("lr"), g["lr"]),
        b.positive(n("damping"), g["damping"]),
        b.integer(n("max_cg_iter"), g["max_cg_iter"], lo=1, hi=b.INT64_MAX),  # (an int64 count, as torch holds one)
        b.in_range(n("cg_tol"), g["cg_tol"], 0.0, 1.0),
        b.in_range(n("precond_exponent"), g["precond_exponent"], 0.0, 1.0),
        b.in_range(n("warm_start"), g["warm_start"], 0.0, 1.0),
        b.in_range(n("boost"), g["boost"], 1.0, None),
        b.in_range(n("drop"), g["drop"], 0.0, 1.0, lo_open=True),
        b.positive(n("min_damping"), g["min_damping"]),
        b.positive(n("max_damping"), g["max_damping"]),
    )
    if dtype is not None:
        # the boosts take the damping up to max_damping, and cg rounds it to the params' dtype:
        # past float32's range (1e300) every step after enough rejections raised, stuck there
        b.finite_in(n("max_damping"), hp[9], dtype, "the params' dtype")
    if hp[8] > hp[9]:
        raise ValueError(f"{n('min_damping')}, {n('max_damping')}: min_damping must be <= max_damping")
    if not hp[8] <= hp[1] <= hp[9]:
        # the rule's bounds hold the damping: outside them a "boost" clamped to max_damping lowered a
        # damping above it (1e9 -> 1e8 after a rejected step) and a "drop" raised one below
        # min_damping (1e-12 -> 1e-8 after a good step), the opposite of what the rule decided
        raise ValueError(
            f"{n('damping')}: {hp[1]!r} is outside [min_damping, max_damping] = [{hp[8]!r}, {hp[9]!r}] "
            "(the Levenberg-Marquardt rule's bounds)"
        )
    return hp
