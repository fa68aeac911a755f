"""The passes of ``optkern.nn.MLP`` over its layers (a mixin): the forward pass with the caches a
backward pass needs, the loss head, plain backpropagation and the R-forward pass of the
curvature products (Pearlmutter's R-operator)."""

from __future__ import annotations

from ._gemm import _weight_grad, _weight_grad_t
from .activations import activation
from .losses import mse_forward, xent_forward, xent_rop
from .normalization import norm_backward, norm_forward, norm_rop_forward

_NORM_AXIS = {"batch": 0, "layer": 1}


class _MLPPasses:
    """The layer passes of :class:`optkern.nn.MLP` (its layers, activation, norm and loss kind)."""

    # ---- forward ----------------------------------------------------------

    def _forward(self, P, x, order):
        """Layer caches: input ``a``, norm ``saved``, ``d1``/``d2``; returns (caches, output)."""
        caches = []
        a = x
        last = self.num_layers - 1
        for i, p in enumerate(P):
            h = a @ p["W"].T
            h += p["b"]
            c = {"a": a}
            if i == last:
                caches.append(c)
                return caches, h
            if self.norm:
                h, c["saved"] = norm_forward(h, p["gamma"], p["beta"], self.norm_eps, _NORM_AXIS[self.norm])
            if order == 0:
                a = activation(self.activation, h)
            elif order == 1:
                a, c["d1"] = activation(self.activation, h, order=1)
            else:
                a, c["d1"], c["d2"] = activation(self.activation, h, order=2)
            caches.append(c)

    def _loss_head(self, out, y, need_grad=True):
        """Scalar loss, gradient w.r.t. the output, and what the loss R-operator needs."""
        if self.loss_kind == "mse":
            loss, g, h = mse_forward(out, y)
            return loss, g, h
        n = out.shape[0]
        rows, logp, g = xent_forward(
            out,
            y,
            label_smoothing=self.label_smoothing,
            confidence_penalty=self.confidence_penalty,
            scale=1.0 / n,
            need_logp=need_grad,
            need_grad=need_grad,
        )
        return rows.mean(), g, logp

    def _loss_rop(self, head, rout):
        """``(d^2 loss / d out^2) rout``."""
        if self.loss_kind == "mse":
            return rout * head
        return xent_rop(head, rout, confidence_penalty=self.confidence_penalty, scale=1.0 / rout.shape[0])

    # ---- backward ---------------------------------------------------------

    def _backward(self, P, caches, g, out_flat, sink=None):
        """Plain backpropagation of ``g`` (d loss / d output) into ``out_flat``'s views. With ``sink``
        (``out_flat`` None) nothing is written: each parameter's slice of the result is handed over
        as soon as it is formed, ``sink(offset, values, transposed)`` (``values`` C-contiguous, the
        slice in C order, or with ``transposed`` its transpose: a weight gradient in the GEMM's faster
        shape), last layer first -- hessian.cg's update consumes the slice while it is in cache."""
        G = self.views(out_flat) if sink is None else None
        axis = _NORM_AXIS.get(self.norm)
        for i in range(self.num_layers - 1, -1, -1):
            c, p = caches[i], P[i]
            if G is not None:
                _weight_grad(g, c["a"], G[i]["W"])
                G[i]["b"][...] = g.sum(axis=0)
            else:
                sink(self.layout[i]["W"][0], _weight_grad_t(g, c["a"]), True)
                sink(self.layout[i]["b"][0], g.sum(axis=0), False)
            if i == 0:
                break
            prev = caches[i - 1]
            g = (g @ p["W"]) * prev["d1"]
            if self.norm:
                g, dgamma, dbeta = norm_backward(g, P[i - 1]["gamma"], prev["saved"], axis)
                if G is not None:
                    G[i - 1]["gamma"][...], G[i - 1]["beta"][...] = dgamma, dbeta
                else:
                    sink(self.layout[i - 1]["gamma"][0], dgamma, False)
                    sink(self.layout[i - 1]["beta"][0], dbeta, False)
        return out_flat

    def _rop_forward(self, P, V, caches):
        """R-forward: per hidden layer ``Rz`` (pre-activation) and ``Ra``; returns R{output}."""
        axis = _NORM_AXIS.get(self.norm)
        ra = None
        last = self.num_layers - 1
        for i, (p, v) in enumerate(zip(P, V)):
            c = caches[i]
            rh = c["a"] @ v["W"].T
            rh += v["b"]
            if ra is not None:
                rh += ra @ p["W"].T
            c["Ra"] = ra
            if i == last:
                return rh
            if self.norm:
                rh, c["rsaved"] = norm_rop_forward(rh, p["gamma"], v["gamma"], v["beta"], c["saved"], axis)
            c["Rz"] = rh
            ra = c["d1"] * rh
