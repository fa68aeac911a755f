"""The grads of one run of an optkern.torch step as its native call reads them (a mixin of
``_Runs``): the CPU's DLPack capsules or NumPy views of the grads, checked only where the native
call would not check them, and the low-precision step's arrays (bfloat16 as its bits)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from . import _views
from ._handover import _EXCHANGE, _held, _to_dlpack

_is_contiguous = torch.Tensor.is_contiguous


class _RunGrads:
    """A mixin of ``_Runs`` (``_Fused``'s: its grads' checks and the views its precheck made)."""

    if TYPE_CHECKING:  # everything it reads is _Fused's

        def __getattr__(self, name: str) -> Any: ...

    def _grad_views(
        self,
        params: list,
        gi: int,
        capsules: bool = False,
        grads: list | None = None,
        dense: bool | None = None,
        shapes: np.ndarray | None = None,
    ) -> list:
        """What the native call reads as the grads of ``params`` (one run: one device and dtype).

        On the CPU no checks here: torch's ``.grad`` setter and autograd keep a grad's dtype, size
        and device those of its param, the caller has compared the shapes (``_check_grad_shapes``)
        and the native call checks dtype, size and layout again before it writes (an error it
        raises is then named by ``_precheck``). ``capsules``: a list that the step's one native call
        empties once it has read it (``_held``; each ``_update`` that ``_core_step`` runs makes one
        call) of the grads themselves, which it describes through torch's DLPack exchange API
        (``_EXCHANGE``), or of DLPack capsules (``to_dlpack``, half the cost of ``Tensor.numpy()``
        per tensor, which only the native calls take); else NumPy views. Anything either refuses (a sparse
        grad, one that requires grad, one on another device) goes through the checks that name
        it. The views the step's precheck made are reused. ``dense``: whether every param is
        contiguous (known to the caller; else checked here): a grad of a channels_last param goes
        through the checks (its layout must be its param's) and comes as a flat view in memory
        order; a complex one too, as its real view. ``shapes``: the params' (``_flat_shapes``), that
        the native call compares the capsules' with; else the caller compared them. A grad that
        the native call does not take as a capsule is checked here, shape included."""
        pre = self._pre_grads.get(id(params))
        if pre is not None:
            return pre
        if params[0].is_cpu:
            if grads is None:
                grads = [p.grad for p in params]
            try:
                if dense if dense is not None else _views.flat_real(params):
                    # (a grad that is not contiguous: the native call refuses it, then it is named)
                    if capsules:  # (the tensors themselves, or capsules freed by the native call once read: _held)
                        if _EXCHANGE is not None:
                            return _held(grads, grads, shapes, _EXCHANGE)
                        return _held(map(_to_dlpack, grads), grads, shapes)
                    if shapes is None:
                        return [g.numpy() for g in grads]
            except (TypeError, RuntimeError):
                pass
        self._check_grads(params, gi)
        return _views.views([p.grad for p in params])

    def _grad_arrays(self, params: list, gi: int) -> list:
        """The grads of ``params`` as NumPy / CuPy arrays over their memory (bfloat16 as its uint16
        bits). Not checked here (the low-precision step checks their types, dtypes, sizes and
        layout before it writes; ``_run`` then names a bad one), except what a view refuses and a
        grad that is not contiguous like its (contiguous) param."""
        pre = self._pre_grads.get(id(params))
        if pre is not None:
            return pre
        grads = [p.grad for p in params]
        try:
            # (its params are contiguous, ``_lowp.check_contiguous``: a grad that is not -- channels_last
            # -- was viewed flat in its own memory order, each element stepped with another's grad)
            contiguous = all(map(_is_contiguous, grads))
        except (TypeError, AttributeError, RuntimeError):  # (no tensor, a sparse one: named below)
            contiguous = False
        if not contiguous:
            self._check_grads(params, gi)  # (a dense one laid out otherwise: read through a copy, _relaid)
        try:
            return [_views.view(g) for g in grads]
        except (TypeError, ValueError, RuntimeError, BufferError):
            self._check_grads(params, gi)
            raise
