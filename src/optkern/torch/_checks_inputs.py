"""The checks of what is handed to an optkern.torch optimizer one piece at a time, before it is
used: ``step``'s arguments (``step_closure``), a param's grad (``check_grad``, at the step) and a new
param group (``check_new_group``, at ``add_param_group``)."""

from __future__ import annotations

from typing import NoReturn

import torch

from ..optim._lowp_config import refuse_group_keywords
from . import _views
from ._impl_keywords import check_group_keywords
from ._sparse import refuse

_STRIDED = torch.strided


def step_closure(opt, args: tuple, kwargs: dict):
    """The ``closure`` of ``opt.step(*args, **kwargs)``, bound as Python binds ``step(self,
    closure=None)`` (keywords first, then the count), with Python's TypeErrors but naming the
    user's class, ``Adam.step()`` as torch's do, not the method that takes the arguments
    (``_Fused._step``, which torch's hook wrapper calls too)."""
    where = f"{type(opt).__name__}.step()"
    for key in kwargs:
        if key != "closure":
            raise TypeError(f"{where} got an unexpected keyword argument '{key}'")
        if args:
            raise TypeError(f"{where} got multiple values for argument 'closure'")
    if len(args) > 1:
        raise TypeError(f"{where} takes from 1 to 2 positional arguments but {len(args) + 1} were given")
    return args[0] if args else kwargs.get("closure")


def check_grad(p, g, gi: int, j: int, dtypes: tuple = _views.TYPES) -> None:
    """TypeError / ValueError naming ``param_groups[gi]['params'][j].grad`` unless ``g``, the grad of
    ``p``, can be read with ``p`` element by element: its dtype, shape and device, dense, not a
    conjugated view, and (when either is not contiguous) of ``p``'s layout (``_views.GradLayout``, which
    the step meets by reading a copy: ``_relaid``); ``dtypes``: the param dtypes the step takes."""
    if g.dtype is not p.dtype or g.layout is not _STRIDED or g.shape != p.shape or g.device != p.device:
        _bad_grad(p, g, f"param_groups[{gi}]['params'][{j}].grad", dtypes)
    if g.is_conj():  # (torch.optim's view_as_real refuses it too)
        conj = _views.CONJ_VIEW.replace("pass t", "set .grad = grad")
        raise ValueError(f"param_groups[{gi}]['params'][{j}].grad: {conj}")
    if not (g.is_contiguous() and p.is_contiguous()):
        name = f"param_groups[{gi}]['params'][{j}].grad"
        # (one look at the layouts: the same one, channels_last training's every grad, is checked
        # as before the re-laid grads came; ``relayable``'s other tests cost ~2 us a grad)
        if not _views.differs(g, p):
            _views.check_tensor(g, name, dtypes)
            return
        if _views.dense_like(g, p):  # (read through a copy in p's layout: _relaid)
            raise _views.GradLayout(
                f"{name}: laid out unlike its param (strides {tuple(g.stride())}, its param's "
                f"{tuple(p.stride())}): the step pairs them element by element in memory order"
            )
        _views.check_tensor(g, name, dtypes)
        _views.check_paired(g, p, name)


def _bad_grad(p, g, name: str, dtypes: tuple = _views.TYPES) -> None:
    """Raise the error that names what is wrong with grad ``g`` of param ``p`` (``dtypes``: the
    param dtypes the step takes: a low-precision one's bfloat16 grad is refused for its shape)."""
    if g.is_sparse:  # (a TypeError the step catches: the classes that take sparse grads step them, _sparse)
        refuse(name)
    _views.check_tensor(g, name, dtypes)
    mismatch(p, g, name)


def mismatch(p, g, name: str) -> NoReturn:
    """The ValueError for grad ``g`` (named ``name``) whose dtype, shape or device is not its param ``p``'s."""
    raise ValueError(
        f"{name}: {tuple(g.shape)} {g.dtype} on {g.device} does not match its param "
        f"{tuple(p.shape)} {p.dtype} on {p.device}"
    )


def check_new_group(groups: list, param_group, impl_names: tuple = ()) -> None:
    """What an optkern.torch optimizer checks of a group before torch's ``add_param_group`` adds it
    to ``groups``: its params read into a list (a generator once, here, as torch would read it)
    without duplicates (``_check_duplicates``: before torch warns of them), no low-precision
    keyword of its own (the optimizer's storage is one for all its groups), and torch's implementation
    keywords ``impl_names`` (the class's) as the constructor takes them (``check_group_keywords``)."""
    if isinstance(param_group, dict):
        refuse_group_keywords(param_group, f"param_groups[{len(groups)}]")
        check_group_keywords(param_group, f"param_groups[{len(groups)}]", impl_names)
    if isinstance(param_group, dict) and not isinstance(param_group.get("params"), (torch.Tensor, set, type(None))):
        try:
            param_group["params"] = list(param_group["params"])
        except TypeError:
            pass  # (torch's message)
        else:
            _check_duplicates(groups, param_group["params"], len(groups))


def _check_duplicates(groups: list, params: list, gi: int) -> None:
    """ValueError naming the first of ``params`` (group ``gi``'s, to be added to ``groups``) that
    is already a param of the optimizer or appears twice in the group: torch refuses the first and
    warns of the second; optkern refuses both (one tensor updated twice per step, its state kept
    once, and aliasing arrays in the step's native call)."""
    seen = {id(p): f"param_groups[{i}]['params'][{j}]" for i, g in enumerate(groups) for j, p in enumerate(g["params"])}
    for j, p in enumerate(params):
        where = f"param_groups[{gi}]['params'][{j}]"
        other = seen.setdefault(id(p), where)
        if other != where:
            raise ValueError(
                f"{where}: the same tensor as {other} (some parameters appear more than once in the "
                "optimizer; torch.optim refuses parameters in more than one parameter group)"
            )
