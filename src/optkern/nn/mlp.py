"""A small sequential MLP with exact gradients, Hessian- and Gauss-Newton-vector products.

Layers: ``Linear -> [BatchNorm | LayerNorm] -> activation`` for every hidden
layer, then a final ``Linear`` producing logits (cross-entropy) or outputs
(MSE). All parameters live in ONE flat 1-D buffer; ``views(flat)`` gives the
per-layer ``W`` (out, in), ``b`` (out,) and, with normalization, ``gamma`` /
``beta`` (out,) as views, so an optimizer steps everything in one call and a
direction ``v`` in parameter space has the same layout.

Matrix products go through the array module's BLAS (NumPy / cuBLAS via CuPy);
activations and softmax cross-entropy through the fused native kernels.
The passes over the layers (forward, backward, R-forward) are in ``_mlp_passes``.
The Hessian-vector product is Pearlmutter's R-operator: one forward pass and
one backward pass that carry the ordinary and the R-quantities together.
Batch norm always uses batch statistics (training mode), so the loss, its
gradient and its curvature are those of the training objective, exactly.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from .. import _backend, _pool
from .._array_checks import float_dtype
from .._torch_written import bumps_written
from ..norm._common import F32_STATS
from ..norm._common import _eps as _norm_eps
from . import block as _block
from ._gemm import _weight_grad
from ._mlp_args import _MLPArgs
from ._mlp_passes import _NORM_AXIS, _MLPPasses
from .activations import check_activation
from .losses import _labels
from .normalization import norm_rop_backward


def _ieee(method):
    """Non-finite values propagate as IEEE arithmetic says (NaN / inf results, as in PyTorch),
    without NumPy's floating-point warnings from its matrix products (an error under ``-W error``);
    temporaries come from optkern's pool (``optkern._pool``: no page faults per call). Foreign
    arrays (torch tensors, DLPack or array-interface exporters; ``out`` too) are viewed first
    (``_backend.on_array_device``), as every public call's arguments are."""
    viewed = _backend.on_array_device(method)

    @functools.wraps(method)
    @_pool.pooled
    def call(*args, **kwargs):
        with np.errstate(all="ignore"):
            return viewed(*args, **kwargs)

    return call


def _layout_attribute(name: str, copy=None):
    """A read-only attribute defining the flat parameter layout, kept in the instance's ``__dict__``
    under its own name (pickles and copies as before). Assigned after construction, ``norm = "group"``
    failed at the next loss with a bare KeyError, ``norm = None`` on a normalized model read the
    buffer in another layout silently. ``copy``: what a read returns (``sizes``: a new list, so an
    in-place change cannot reach the model either)."""

    def get(self):
        v = vars(self)[name]
        return v if copy is None else copy(v)

    def refuse(self, value):
        raise AttributeError(
            f"{name}: fixed at construction (sizes and norm define the flat parameter layout): build a new MLP"
        )

    return property(get, refuse, doc=f"``{name}`` (read-only: it defines the flat parameter layout).")


class MLP(_MLPArgs, _MLPPasses):
    """Multi-layer perceptron ``sizes[0] -> ... -> sizes[-1]``.

    Args:
      sizes: layer widths, at least two (input and output).
      activation: ``identity``, ``tanh``, ``relu``, ``gelu``, ``sigmoid`` or ``softplus``.
      norm: None, ``"batch"`` (training-mode batch norm) or ``"layer"``, after each hidden Linear.
      loss: ``"cross_entropy"`` (mean over rows, integer labels) or ``"mse"``
        (``mean((out - y)^2)`` over all elements, like ``torch.nn.MSELoss``).
      label_smoothing: cross-entropy label smoothing in ``[0, 1]`` (0 with ``"mse"``).
      confidence_penalty: weight ``beta`` of ``-beta * H(softmax)`` added to the cross-entropy
        (0 with ``"mse"``).
      norm_eps: the normalization's ``eps``, by optkern.norm's rule (> 0; with float32 statistics,
        neither 0 nor past the max there).
      dtype: float32 or float64 (parameters, activations and products).
      xp: array module for ``init_params`` (numpy or cupy); every method follows its arguments.

    ``sizes``, ``norm``, ``layout`` and ``num_params`` define the flat parameter layout: read-only
    (AttributeError naming them); build a new MLP for another one.
    """

    sizes = _layout_attribute("sizes", list)
    norm = _layout_attribute("norm")
    layout = _layout_attribute("layout")
    num_params = _layout_attribute("num_params")

    def __init__(
        self,
        sizes,
        activation="tanh",
        norm=None,
        loss="cross_entropy",
        label_smoothing=0.0,
        confidence_penalty=0.0,
        norm_eps=1e-5,
        dtype=np.float32,
        xp=np,
    ):
        if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__iter__"):
            raise TypeError(f"sizes: expected a sequence of layer widths, got {type(sizes).__name__}")
        try:
            sizes = list(sizes)
        except TypeError:  # a 0-d array has __iter__ but cannot be iterated
            raise TypeError(f"sizes: expected a sequence of layer widths, got {type(sizes).__name__}") from None
        sizes = [_backend.integer(f"sizes[{i}]", s, hi=_backend.INT64_MAX) for i, s in enumerate(sizes)]
        if len(sizes) < 2 or any(s < 1 for s in sizes):
            raise ValueError(f"sizes: expected at least two positive widths, got {sizes}")
        # (str first, as check_activation: a 0-d string array compares equal to its text, so
        # np.array("batch") passed `in` and was kept; the forward pass then failed with an unnamed
        # "unhashable type: 'numpy.ndarray'" at the first loss)
        if not (norm is None or isinstance(norm, str)) or norm not in (None, "batch", "layer"):
            raise ValueError(f"norm: expected None, 'batch' or 'layer', got {norm!r}")
        if not isinstance(loss, str) or loss not in ("cross_entropy", "mse"):
            raise ValueError(f"loss: expected 'cross_entropy' or 'mse', got {loss!r}")
        self.dtype = float_dtype(dtype)
        if not (xp is np or getattr(xp, "__name__", None) == "cupy"):
            raise TypeError(f"xp: expected the numpy or cupy module, got {xp!r}")
        vars(self)["sizes"] = sizes  # (the layout's attributes: read-only, _layout_attribute)
        self.activation = check_activation(activation)
        vars(self)["norm"] = None if norm is None else str(norm)  # (plain str: a NumPy string showed in the repr)
        self.loss_kind = str(loss)
        self.label_smoothing = _backend.in_range("label_smoothing", label_smoothing, 0.0, 1.0)
        # (finite in the model's dtype, as the loss kernels round it: 1e39 on a float32 model was
        # accepted here and refused only at the first loss, far from the constructor)
        self.confidence_penalty = _backend.real("confidence_penalty", confidence_penalty)
        _backend.finite_in("confidence_penalty", self.confidence_penalty, self.dtype)  # (a check: kept unrounded)
        # (optkern.norm's eps rule, whose float32 statistics add it in float32: a value rounding to 0
        # or past float32's max there was accepted here and refused at the first loss, naming the
        # normalization's `eps`, not this argument; the checked float kept, not a NumPy scalar)
        stats = F32_STATS if norm and self.dtype == np.float32 else None
        self.norm_eps = _norm_eps(norm_eps, stats, name="norm_eps")
        # (the MSE loss has neither: a nonzero value was silently ignored)
        for name, value in (("label_smoothing", self.label_smoothing), ("confidence_penalty", self.confidence_penalty)):
            if loss == "mse" and value != 0:
                raise ValueError(f"{name}: applies to the cross-entropy loss only, got {value!r} with loss='mse'")
        self.xp = xp
        vars(self)["layout"] = self._make_layout()
        vars(self)["num_params"] = sum(math.prod(s) for layer in self.layout for _, (_, s) in layer.items())
        # (the flat buffer's bytes within 2**63 - 1, its indices within int64 too: a count past
        # it was taken, and init_params raised NumPy's unnamed "array is too big")
        most = _backend.INT64_MAX // self.dtype.itemsize
        if self.num_params > most:
            total = 0
            for i, layer in enumerate(self.layout):
                total += sum(math.prod(s) for _, s in layer.values())
                if total > most:
                    raise ValueError(
                        f"sizes[{i + 1}]: the layers up to it hold {total} parameters; one flat buffer holds "
                        f"at most {most} {self.dtype.name} parameters (2**63 - 1 bytes)"
                    )

    # ---- parameters -------------------------------------------------------

    @property
    def num_layers(self) -> int:
        return len(self.sizes) - 1

    def _make_layout(self):
        layout, off = [], 0
        for i in range(self.num_layers):
            n_in, n_out = self.sizes[i], self.sizes[i + 1]
            shapes = {"W": (n_out, n_in), "b": (n_out,)}
            if self.norm and i < self.num_layers - 1:
                shapes.update(gamma=(n_out,), beta=(n_out,))
            entry = {}
            for name, shape in shapes.items():
                entry[name] = (off, shape)
                off += math.prod(shape)
            layout.append(entry)
        return layout

    def views(self, flat):
        """Per-layer dicts of views (``W``, ``b``, ``gamma``, ``beta``) into a flat buffer."""
        if not (hasattr(flat, "shape") and hasattr(flat, "reshape")):  # (a torch tensor works too)
            raise TypeError(f"flat: expected a 1-D array, got {type(flat).__name__}")
        if tuple(flat.shape) != (self.num_params,):
            raise ValueError(f"flat: expected shape ({self.num_params},), got {tuple(flat.shape)}")
        return [
            {name: flat[off : off + math.prod(shape)].reshape(shape) for name, (off, shape) in layer.items()}
            for layer in self.layout
        ]

    def init_params(self, seed: int | None = 0):
        """A new flat parameter buffer: He-normal weights for relu/gelu/softplus
        (std ``sqrt(2 / fan_in)``), Xavier-normal otherwise (std
        ``sqrt(2 / (fan_in + fan_out))``); zero biases; ``gamma = 1``, ``beta = 0``.
        Drawn on the host from ``numpy.random.default_rng(seed)``, so NumPy and
        CuPy models start from identical values. ``seed``: an integer >= 0 (None: fresh
        entropy from the OS)."""
        if seed is not None:
            seed = _backend.integer("seed", seed, lo=0)
        rng = np.random.default_rng(seed)
        flat = np.zeros(self.num_params, dtype=self.dtype)
        for layer in self.views(flat):
            n_out, n_in = layer["W"].shape
            he = self.activation in ("relu", "gelu", "softplus")
            std = math.sqrt(2.0 / n_in) if he else math.sqrt(2.0 / (n_in + n_out))
            layer["W"][...] = rng.standard_normal((n_out, n_in)) * std
            if "gamma" in layer:
                layer["gamma"][...] = 1.0
        return self.xp.asarray(flat)

    # ---- public API -------------------------------------------------------

    @_ieee
    def predict(self, params, x):
        """Network output (logits for cross-entropy) for inputs ``x`` (N, sizes[0])."""
        xp, x, _ = self._check(params, x)
        return self._forward(self.views(self._read(params)), x, 0)[1]

    @_ieee
    def accuracy(self, params, x, y):
        """Fraction of rows whose arg-max output equals the integer label ``y`` (N,), in ``[0, sizes[-1])``."""
        xp, x, _ = self._check(params, x)
        if not (isinstance(y, np.ndarray) or _backend.is_cupy(y)):
            raise TypeError(f"y: expected an integer array, got {type(y).__name__}")
        _backend.backend(("params", params), ("y", y))
        y = _labels(y, x.shape[0], self.sizes[-1], xp, name="y")
        out = self._forward(self.views(self._read(params)), x, 0)[1]
        return float((out.argmax(axis=1) == y).mean())

    @_ieee
    def loss(self, params, x, y):
        """The mean loss (a 0-d array of ``dtype``) of the batch ``(x, y)``."""
        xp, x, y = self._check(params, x, y)
        out = self._forward(self.views(self._read(params)), x, 0)[1]
        return self._loss_head(out, y, need_grad=False)[0]

    @_ieee
    def loss_and_grad(self, params, x, y):
        """``(loss, grad)``: the mean loss and its gradient, a flat array shaped like ``params``."""
        xp, x, y = self._check(params, x, y)
        P = self.views(self._read(params))
        caches, out = self._forward(P, x, 1)
        loss, g, _ = self._loss_head(out, y)
        return loss, self._backward(P, caches, g, xp.empty(params.shape, self.dtype))

    @bumps_written("out", returns="out")  # (a torch out: written as by an in-place torch op, returned)
    @_ieee
    def hvp(self, params, x, y, v, out=None):
        """Exact Hessian-vector product ``H v`` of the mean loss (Pearlmutter's R-operator).

        One forward pass (keeping ``f'`` and ``f''``) with the R-forward, and one
        backward pass carrying the gradient and its R-derivative together; about
        twice the cost of ``loss_and_grad``. Exact through batch norm in training
        mode, layer norm, label smoothing and the confidence penalty. ``out``: an
        array like ``params`` to write the product to (returned); repeated products
        then reuse one buffer instead of a fresh, page-faulted array per call.
        """
        _, xc, yc = self._check(params, x, y, v)
        Hv = self._product_out(out, params, v, x, y)  # (the caller's x and y: see _product_out)
        return self._hvp_at(self._point(self._read(params), xc, yc, 2), self._direction(v), Hv)

    def _point(self, params, x, y, order):
        """What a curvature product at ``params`` (C-contiguous) on one checked batch computes before
        it meets the direction: the layers' views, the forward caches (``f'``, and ``f''`` for
        ``order`` 2), the loss gradient ``g`` w.r.t. the output and the loss head. A product at the
        point adds its R-quantities to copies of the per-layer caches, so one point serves any
        number of products (``hessian.from_mlp(..., fixed=True)``)."""
        P = self.views(params)
        caches, out = self._forward(P, x, order)
        _, g, head = self._loss_head(out, y)
        return P, caches, g, head

    @_ieee
    def _hvp_at(self, point, v, Hv):
        """``H v`` into ``Hv`` at a :meth:`_point` of order 2 (``v``: checked, C-contiguous)."""
        P, cached, g, head = point
        caches = [dict(c) for c in cached]
        V = self.views(v)
        rg = self._loss_rop(head, self._rop_forward(P, V, caches))
        Hs = self.views(Hv)
        axis = _NORM_AXIS.get(self.norm)
        for i in range(self.num_layers - 1, -1, -1):
            c, p, w = caches[i], P[i], V[i]
            _weight_grad(rg, c["a"], Hs[i]["W"])
            if c["Ra"] is not None:
                _weight_grad(g, c["Ra"], Hs[i]["W"], acc=True)
            Hs[i]["b"][...] = rg.sum(axis=0)
            if i == 0:
                break
            prev = caches[i - 1]
            ga = g @ p["W"]
            rga = rg @ p["W"]
            rga += g @ w["W"]
            gz = ga * prev["d1"]
            rgz = prev["d2"] * prev["Rz"] * ga + prev["d1"] * rga
            if self.norm:
                pg, vg = P[i - 1]["gamma"], V[i - 1]["gamma"]
                dh, rdh, Hs[i - 1]["gamma"][...], Hs[i - 1]["beta"][...] = norm_rop_backward(
                    gz, rgz, pg, vg, prev["saved"], prev["rsaved"], axis
                )
                g, rg = dh, rdh
            else:
                g, rg = gz, rgz
        return Hv

    @bumps_written("out", returns="out")  # (a torch out: written as by an in-place torch op, returned)
    @_ieee
    def ggn_vp(self, params, x, y, v, out=None):
        """Generalized Gauss-Newton product ``J^T H_L J v``.

        ``J`` is the Jacobian of the network output w.r.t. the parameters and
        ``H_L`` the Hessian of the loss w.r.t. the output (``diag(p) - p p^T``
        per row over N for cross-entropy, ``2 / out.size`` for MSE), so the GGN
        is positive semidefinite (with ``confidence_penalty = 0``). One R-forward
        pass and one ordinary backward pass. ``out``: as for :meth:`hvp`.
        """
        _, xc, yc = self._check(params, x, y, v)
        Gv = self._product_out(out, params, v, x, y)
        return self._ggn_at(self._point(self._read(params), xc, yc, 1), self._direction(v), Gv)

    @_ieee
    def _ggn_vp_quad(self, params, x, y, v, then=None):
        """``(ggn_vp(params, x, y, v), v.G v)``: with the product its quadratic form, ``(J v).H_L (J v)``
        from the output-space intermediate (rows x outputs) in float64, where ``v.(G v)`` costs a
        pass over the parameters (hessian.cg's curvature: hessian.from_mlp's operator). ``then``:
        see :meth:`_ggn_at` (no product array is made)."""
        _, xc, yc = self._check(params, x, y, v)
        Gv = self._product_out(None, params, v, x, y) if then is None else None
        return self._ggn_at(self._point(self._read(params), xc, yc, 1), self._direction(v), Gv, True, then)

    @_ieee
    def _ggn_at(self, point, v, Gv, quad=False, then=None):
        """``G v`` into ``Gv`` at a :meth:`_point` (``v``: checked, C-contiguous); ``quad``: ``(G v, v.G v)``.
        ``then`` (with ``quad``, ``Gv`` None): ``then(v.G v)`` once the form is known, before the backward
        pass, returns None (no backward pass) or the backward's ``sink`` (:meth:`_backward`), which
        receives ``G v`` slice by slice; returns ``(None, v.G v)`` (hessian.cg's fused iteration)."""
        P, cached, _, head = point
        caches = [dict(c) for c in cached]
        rout = self._rop_forward(P, self.views(v), caches)
        rg = self._loss_rop(head, rout)
        # v.G v = v.J^T rg = (J v).rg, J v = rout: the backward below computes J^T rg from the same J
        q = float((rout.astype(np.float64) * rg).sum()) if quad else 0.0
        sink = None if then is None else then(q)
        if then is None or sink is not None:
            Gv = self._backward(P, caches, rg, Gv, sink)
        return (Gv, q) if quad else Gv

    @_ieee
    def hvp_block(self, params, x, y, V):
        """``H v_d`` for each row ``v_d`` of ``V`` (``(k, n)``), returned as ``(k, n)``.

        One forward pass and one backward chain shared by all ``k`` directions;
        their R-quantities travel stacked, so products with the weights are
        GEMMs of width ``k * batch`` (``optkern.nn.block``). Row ``d`` equals
        ``hvp(params, x, y, V[d])`` up to rounding; memory grows by ``k`` times
        the single product's R-activations. ``k = 0`` gives an empty ``(0, n)`` (the other
        arguments checked), as the curvature operators' ``matmat`` of no columns.
        """
        return self._block_product(_block.hvp_block, params, x, y, V)

    @_ieee
    def ggn_block(self, params, x, y, V):
        """``G v_d`` (generalized Gauss-Newton) for each row of ``V`` (``(k, n)``), as ``(k, n)``; see ``hvp_block``."""
        return self._block_product(_block.ggn_block, params, x, y, V)

    def _block_product(self, product, params, x, y, V):
        """``product`` (``_block.hvp_block`` / ``ggn_block``) of the checked arguments; no directions
        (``k = 0``): an empty ``(0, n)`` of V's backend and dtype, the point never computed."""
        xp, x, y, V = self._check_block(params, x, y, V)
        if V.shape[0] == 0:
            return xp.empty((0, self.num_params), dtype=V.dtype)
        return product(self, self._read(params), x, y, V)

    @_ieee
    def jvp(self, params, x, v):
        """``J v``: the directional derivative of the network output along ``v``."""
        xp, x, _ = self._check(params, x, v=v)
        P, V = self.views(self._read(params)), self.views(self._direction(v))
        caches, _ = self._forward(P, x, 1)
        return self._rop_forward(P, V, caches)

    def __repr__(self):
        return (
            f"MLP(sizes={self.sizes}, activation={self.activation!r}, norm={self.norm!r}, "
            f"loss={self.loss_kind!r}, num_params={self.num_params}, dtype={self.dtype.name})"
        )
