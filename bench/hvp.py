"""Benchmark: loss+gradient and Hessian-vector products of an MLP, optkern vs PyTorch.

    python bench/hvp.py [--device cpu|cuda] [--quick] [--json FILE]

Model 784-512-512-10 (tanh; and tanh + batch norm), batch 1024, float32,
softmax cross-entropy. Times, on the same parameters, data and direction in
the same run:
  optkern  loss+grad, HVP (Pearlmutter R-operator);
  torch    loss+grad, HVP by double backward, HVP by torch.func (jvp of grad);
and one SLQ density (1 probe x 80 Lanczos steps) with optkern. Prints
medians and the ratios the targets are stated in (bench/RESULTS.md).
The timing functions (``time_fn``, ``bench_model``, ``run``) are importable
so a CLI can call them.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import optkern  # noqa: E402
from optkern import hessian  # noqa: E402
from optkern.nn import MLP  # noqa: E402

SIZES = [784, 512, 512, 10]
BATCH = 1024


def time_fn(fn, *, repeat=10, warmup=2, sync=None):
    """Median wall time (seconds) of ``fn()`` over ``repeat`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def _torch_loss_fn(torch, model, x, y):
    """The same network as ``model`` as a function of one flat torch parameter tensor."""
    shapes = [[(name, off, shape) for name, (off, shape) in layer.items()] for layer in model.layout]

    def loss(flat):
        a = x
        for i, layer in enumerate(shapes):
            P = {name: flat[off:off + int(np.prod(shape))].view(*shape) for name, off, shape in layer}
            a = torch.nn.functional.linear(a, P["W"], P["b"])
            if i < len(shapes) - 1:
                if model.norm == "batch":
                    a = torch.nn.functional.batch_norm(a, None, None, P["gamma"], P["beta"], training=True,
                                                       eps=model.norm_eps)
                a = torch.tanh(a)
        return torch.nn.functional.cross_entropy(a, y)

    return loss


def bench_model(norm=None, device="cpu", repeat=10, slq_steps=80, with_torch=True):
    """Times (seconds) for one model configuration; returns a dict."""
    xp = np
    sync = None
    if device == "cuda":
        import cupy as xp  # noqa: F811

        sync = xp.cuda.Device().synchronize
    model = MLP(SIZES, activation="tanh", norm=norm, dtype=np.float32, xp=xp)
    rng = np.random.default_rng(0)
    params = model.init_params(0)
    x_h = rng.standard_normal((BATCH, SIZES[0])).astype(np.float32)
    y_h = rng.integers(0, SIZES[-1], BATCH)
    v_h = rng.standard_normal(model.num_params).astype(np.float32)
    x, y, v = xp.asarray(x_h), xp.asarray(y_h), xp.asarray(v_h)
    out = {"model": f"MLP {'-'.join(map(str, SIZES))} tanh" + (" +batchnorm" if norm else ""), "batch": BATCH,
           "params": model.num_params, "device": device}
    out["optkern_loss_grad_s"] = time_fn(lambda: model.loss_and_grad(params, x, y), repeat=repeat, sync=sync)
    out["optkern_hvp_s"] = time_fn(lambda: model.hvp(params, x, y, v), repeat=repeat, sync=sync)
    op = hessian.from_mlp(model, params, x, y)
    out["optkern_slq_s"] = time_fn(lambda: hessian.spectral_density(op, num_probes=1, steps=slq_steps, grid=1000),
                                   repeat=max(1, repeat // 5), warmup=0, sync=sync)
    out["slq_steps"] = slq_steps
    if with_torch:
        try:
            import torch
        except ImportError:
            with_torch = False
    if with_torch:
        dev = "cuda" if device == "cuda" else "cpu"
        tsync = torch.cuda.synchronize if dev == "cuda" else None
        xt = torch.tensor(x_h, device=dev)
        yt = torch.tensor(y_h, device=dev)
        pt = torch.tensor(optkern_to_numpy(params), device=dev, requires_grad=True)
        vt = torch.tensor(v_h, device=dev)
        f = _torch_loss_fn(torch, model, xt, yt)

        def t_grad():
            (g,) = torch.autograd.grad(f(pt), pt)
            return g

        def t_double():
            (g,) = torch.autograd.grad(f(pt), pt, create_graph=True)
            (hv,) = torch.autograd.grad(g, pt, grad_outputs=vt)
            return hv

        from torch.func import grad as fgrad, jvp

        def t_func():
            return jvp(fgrad(f), (pt.detach(),), (vt,))[1]

        out["torch_loss_grad_s"] = time_fn(t_grad, repeat=repeat, sync=tsync)
        out["torch_hvp_double_backward_s"] = time_fn(t_double, repeat=repeat, sync=tsync)
        out["torch_hvp_func_s"] = time_fn(t_func, repeat=repeat, sync=tsync)
        hv_o = optkern_to_numpy(model.hvp(params, x, y, v)).astype(np.float64)
        hv_t = t_double().detach().cpu().numpy().astype(np.float64)
        out["hvp_rel_diff_vs_torch"] = float(np.linalg.norm(hv_o - hv_t) / np.linalg.norm(hv_t))
    return out


def optkern_to_numpy(a):
    return a.get() if optkern._backend.is_cupy(a) else np.asarray(a)


def run(device="cpu", quick=False, with_torch=True):
    """All configurations; a list of result dicts."""
    repeat = 3 if quick else 10
    steps = 20 if quick else 80
    return [bench_model(norm, device, repeat, steps, with_torch) for norm in (None, "batch")]


def report(results):
    for r in results:
        print(f"\n{r['model']}, batch {r['batch']}, {r['params']:,} params, {r['device']}")
        ms = lambda s: f"{1e3 * s:8.2f} ms"  # noqa: E731
        print(f"  optkern loss+grad        {ms(r['optkern_loss_grad_s'])}")
        print(f"  optkern HVP              {ms(r['optkern_hvp_s'])}   "
              f"({r['optkern_hvp_s'] / r['optkern_loss_grad_s']:.2f}x its loss+grad)")
        if "torch_loss_grad_s" in r:
            print(f"  torch   loss+grad        {ms(r['torch_loss_grad_s'])}   "
                  f"(optkern/torch {r['optkern_loss_grad_s'] / r['torch_loss_grad_s']:.2f})")
            print(f"  torch   HVP double bwd   {ms(r['torch_hvp_double_backward_s'])}   "
                  f"(optkern/torch {r['optkern_hvp_s'] / r['torch_hvp_double_backward_s']:.2f})")
            print(f"  torch   HVP torch.func   {ms(r['torch_hvp_func_s'])}   "
                  f"(optkern/torch {r['optkern_hvp_s'] / r['torch_hvp_func_s']:.2f})")
            print(f"  |Hv_optkern - Hv_torch| / |Hv_torch| = {r['hvp_rel_diff_vs_torch']:.1e}")
        print(f"  optkern SLQ 1 probe x {r['slq_steps']} steps {ms(r['optkern_slq_s'])}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--quick", action="store_true", help="fewer repeats, 20 SLQ steps")
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch baselines")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    a = ap.parse_args(argv)
    info = optkern.info()
    print(f"optkern {info['version']} threads={info['threads']} simd={info['simd']}")
    results = run(a.device, a.quick, not a.no_torch)
    report(results)
    if a.json:
        Path(a.json).write_text(json.dumps({"info": info, "results": results}, indent=2))


if __name__ == "__main__":
    main()
