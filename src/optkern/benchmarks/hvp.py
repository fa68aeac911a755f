"""Loss+gradient and Hessian-vector products of an MLP: optkern vs PyTorch.

Model 784-512-512-10, tanh, and tanh with batch norm; batch 1024, float32,
softmax cross-entropy; the same parameters, data and direction for both. Rows:
loss+gradient (torch: autograd), HVP (optkern: Pearlmutter R-operator; torch:
double backward and ``torch.func`` jvp-of-grad) and one SLQ spectral density
(1 probe x 80 Lanczos steps), against PyHessian's density on the same model and
budget where torch and PyHessian are installed (``pyhessian_row.py``; model without
batch norm), then the estimator-overhead and block-product rows of ``curvature.py``. ``quick``: batch 128, 5 steps.
The HVP row notes its cost relative to loss+gradient and its relative
difference to torch's HVP. Compute-bound: no bandwidth columns.
"""

from __future__ import annotations

import math

import numpy as np

from . import curvature, env
from .timing import Plan, Row, compare, measure, plan_for

SUITE = "hvp"
SIZES = [784, 512, 512, 10]


def torch_loss(torch, model, x, y):
    """``model``'s loss as a function of one flat torch parameter tensor (same layout)."""
    F = torch.nn.functional
    layers = [[(name, off, shape) for name, (off, shape) in layer.items()] for layer in model.layout]

    def loss(flat):
        a = x
        for i, layer in enumerate(layers):
            P = {name: flat[off : off + math.prod(shape)].view(*shape) for name, off, shape in layer}
            a = F.linear(a, P["W"], P["b"])
            if i < len(layers) - 1:
                if model.norm == "batch":
                    a = F.batch_norm(a, None, None, P["gamma"], P["beta"], training=True, eps=model.norm_eps)
                a = torch.tanh(a)
        return F.cross_entropy(a, y)

    return loss


class _Problem:
    """One model with its parameters, batch and direction, on the host and on ``device``."""

    def __init__(self, norm, batch, device):
        from optkern.nn import MLP

        self.device = device
        xp = np
        if device == "cuda":
            import cupy as xp
        # Host parameters; every method then follows its arguments' array module.
        self.model = MLP(SIZES, activation="tanh", norm=norm, dtype=np.float32)
        rng = np.random.default_rng(0)
        self.host = dict(
            params=self.model.init_params(0),
            x=rng.standard_normal((batch, SIZES[0]), np.float32),
            y=rng.integers(0, SIZES[-1], batch),
            v=rng.standard_normal(self.model.num_params, np.float32),
        )
        self.dev = {k: xp.asarray(a) for k, a in self.host.items()}
        self.name = f"MLP {'-'.join(map(str, SIZES))} tanh{' +BN' if norm else ''} b{batch}"

    def ours(self):
        """(loss+grad, HVP) zero-argument calls."""
        m, d = self.model, self.dev
        return (
            lambda: m.loss_and_grad(d["params"], d["x"], d["y"]),
            lambda: m.hvp(d["params"], d["x"], d["y"], d["v"]),
        )

    def theirs(self, torch):
        """(loss+grad, HVP by double backward, HVP by torch.func) zero-argument calls."""
        from torch.func import grad as fgrad
        from torch.func import jvp

        h, dev = self.host, self.device
        x, y, v = (torch.as_tensor(h[k], device=dev) for k in ("x", "y", "v"))
        p = torch.as_tensor(h["params"], device=dev).requires_grad_(True)
        f = torch_loss(torch, self.model, x, y)

        def loss_grad():
            return torch.autograd.grad(f(p), p)[0]

        def double_backward():
            (g,) = torch.autograd.grad(f(p), p, create_graph=True)
            return torch.autograd.grad(g, p, grad_outputs=v)[0]

        def func():
            return jvp(fgrad(f), (p.detach(),), (v,))[1]

        return loss_grad, double_backward, func

    def hvp_rel_diff(self, torch) -> float:
        """|Hv_optkern - Hv_torch| / |Hv_torch| in float64."""
        from optkern import _backend

        ours = _backend.to_numpy(self.ours()[1]()).astype(np.float64)
        theirs = self.theirs(torch)[1]().detach().cpu().numpy().astype(np.float64)
        return float(np.linalg.norm(ours - theirs) / np.linalg.norm(theirs))


def _model_rows(norm, quick, device, torch) -> list:
    """loss+grad, HVP and SLQ rows of one model."""
    plan = plan_for(quick)
    batch, slq_steps = (128, 5) if quick else (1024, 80)
    pb = _Problem(norm, batch, device)
    tw = (lambda k: lambda: pb.theirs(torch)[k]) if torch is not None else None
    grad = compare(
        SUITE, f"{pb.name} loss+grad", lambda: pb.ours()[0], {} if tw is None else {"autograd": tw(0)}, device, plan
    )
    hvp = compare(
        SUITE,
        f"{pb.name} HVP",
        lambda: pb.ours()[1],
        {} if tw is None else {"double-bwd": tw(1), "torch.func": tw(2)},
        device,
        plan,
    )
    hvp.note = f"{hvp.ours.median_ms / grad.ours.median_ms:.2f}x loss+grad"
    if torch is not None:
        hvp.note += f"; rel diff vs torch {pb.hvp_rel_diff(torch):.0e}"
    from optkern import hessian

    op = hessian.from_mlp(pb.model, pb.dev["params"], pb.dev["x"], pb.dev["y"])
    # 80 products per call: few repeats, no warm-up on the CPU (the products above warmed up); on a
    # GPU one, as CuPy compiles the estimator's own kernels on first use (the H200's first quick run
    # timed 98 ms/step for that, against 5 ms/step for the next model).
    once = Plan(warmup=1 if device == "cuda" else 0, min_repeats=1 if quick else 2, max_repeats=2, budget_s=0.0)
    t = measure(lambda: hessian.spectral_density(op, num_probes=1, steps=slq_steps, grid=1000), device, once)
    slq = Row(SUITE, f"{pb.name} SLQ 1 probe x {slq_steps} steps", t, note=f"{t.median_ms / slq_steps:.2f} ms/step")
    d = pb.dev
    out = [grad, hvp, slq]
    if torch is not None and norm is None and device == "cpu":
        out.append(_pyhessian_row(pb, op, slq_steps, once, torch))
    return out + curvature.rows(SUITE, pb.name, pb.model, d["params"], d["x"], d["y"], op, device, quick)


def _pyhessian_row(pb, op, steps, plan, torch) -> Row:
    """optkern's SLQ density against PyHessian's on the same model, batch and step budget."""
    from optkern import hessian

    from . import pyhessian_row

    got: dict = {}
    h = pb.host

    def ours():
        def call():
            got["ours"] = float(hessian.spectral_density(op, num_probes=1, steps=steps, grid=1000).nodes.max())

        return call

    theirs = {"PyHessian": lambda: pyhessian_row.factory(torch, pb.model, h["params"], h["x"], h["y"], steps, got)}
    row = compare(SUITE, f"{pb.name} SLQ 1x{steps} vs PyHessian density", ours, theirs, "cpu", plan)
    if "top" in got:
        row.note = f"largest Ritz value optkern {got['ours']:.6g}, PyHessian {got['top']:.6g}"
    return row


def run(device: str = "cpu", quick: bool = False, threads: int | None = None) -> list:
    """Both models (tanh, tanh + batch norm) on ``device``. Returns a list of ``Row``."""
    env.set_threads(threads)
    torch = env.torch_for(device)
    return [r for norm in (None, "batch") for r in _model_rows(norm, quick, device, torch)]
