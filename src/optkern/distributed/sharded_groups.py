"""``ShardedOptimizer``'s groups added after construction: the flat buffer re-laid and re-sharded.

A new group's arrays go at the end of the flat buffer, which changes ``chunk`` and so every rank's
slice: the optimizer state of the parameters moves between ranks. So the state is consolidated on
every rank first (each rank transiently holds the whole state, host copies: adding a group is a
set-up step, not a training one), the buffers, slices and local optimizer are made again for
the groups (``_build``, collective and agreed), and the consolidated state is
resharded into them: the steps go on as an unsharded optimizer's would after its own
``add_param_group``. Anything refused, on any rank, raises on every rank and leaves every rank's
optimizer as it was.
"""

from __future__ import annotations

from . import hyper_check, sharded_copy, sharded_setup, sharded_state
from .agreement import agree, reduce_mode
from .data_parallel import check_grads


def user_groups(z) -> list:
    """The user's groups as they stand: each local group's current entries (a schedule's ``lr``
    included) with the user's arrays of that group."""
    out, first = [], 0
    for g, n in zip(z.optimizer.param_groups, z._counts):
        out.append({**{k: v for k, v in g.items() if k != "params"}, "params": z._user[first : first + n]})
        first += n
    return out


def added_directly(z) -> list:
    """Groups added to the local optimizer (``z.optimizer.add_param_group``) since it was made,
    as user groups: whole arrays, which it cannot step with its slices' gradients."""
    return [
        {**{k: v for k, v in g.items() if k != "params"}, "params": list(g["params"])}
        for g in z.optimizer.param_groups[len(z._counts) :]
    ]


def new_group(z, param_group) -> tuple[dict, list]:
    """``param_group`` (ShardedOptimizer.add_param_group's argument) as a user group, checked on
    this rank with every array (one dtype, distinct, ...), and its params as given (``groups_of``)."""
    if not isinstance(param_group, dict):
        raise TypeError(f"param_group: expected a dict, got {type(param_group).__name__}")
    if len(z.optimizer.param_groups) != len(z._counts):
        raise ValueError(
            "param_groups: a group was added to the local optimizer (opt.optimizer) directly and not yet "
            "followed (step or synchronize first)"
        )
    (group,), given = sharded_setup.groups_of([param_group], first=len(z._counts))
    sharded_setup.check_params(z._user + group["params"])
    return group, given


def regroup(z, groups: list) -> None:
    """``z`` made again for ``groups`` (its own, then the added ones), the state resharded into
    the new slices. Collective: every rank calls it at the same point; a refusal anywhere (arrays
    that differ between ranks, a group the local optimizer refuses) raises on every rank and
    puts every rank's ``z`` back as it was."""
    user = [p for g in groups for p in g["params"]]

    def check() -> None:
        sharded_copy.check_layouts(z)  # (the state is consolidated in the order of their elements)
        sharded_setup.check_params(user)

    agree(z.comm, lambda: _run(check), "the shards' params")
    state = z._consolidated(None)  # (every rank: each takes its new slices from it)
    saved = dict(vars(z))
    try:
        z._user = user
        z._build(groups)
        first = sum(len(g["params"]) for g in state["param_groups"])
        for gi in range(len(state["param_groups"]), len(groups)):  # the new groups, without state
            hyper = {k: v for k, v in z.optimizer.param_groups[gi].items() if k != "params"}
            state["param_groups"].append({**hyper, "params": list(range(first, first + z._counts[gi]))})
            first += z._counts[gi]
        agree(z.comm, lambda: _run(sharded_state.load, z, state), "the shards' state")
    except (TypeError, ValueError):
        vars(z).clear()
        vars(z).update(saved)
        raise
    z._synced = False  # (a synchronize before the group was added reduced the old layout)


def step_grown(z, grads) -> None:
    """A step after a group was added to the local optimizer directly: its values and count of
    arrays compared in the step's own allreduce (a rank that added none, or another, raises
    with every rank), then the optimizer re-sharded for it on every rank, and the step."""
    extra = added_directly(z)
    counts = z._counts + [len(g["params"]) for g in extra]
    err: Exception | None = None
    try:
        hyper_check.signature(z.optimizer, counts)  # (the new groups' values checked)
        if not z._skip:
            check_grads(grads, z._user + [p for g in extra for p in g["params"]])
    except (TypeError, ValueError) as e:
        err = e
    z._hyper_check.counts = counts
    z._hyper_check(err, z._skip, reduce_mode(z.op, z.grad_weight))
    regroup(z, user_groups(z) + extra)
    z.step(grads)


def _run(fn, *args) -> tuple:
    """``fn(*args)`` as :func:`.agreement.agree` calls it: nothing to return, only its refusal."""
    fn(*args)
    return None, None
