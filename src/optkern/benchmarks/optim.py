"""Optimizer steps: optkern.optim vs torch.optim (for-loop, foreach, fused) vs a bandwidth probe.

Cases (float32): Adam, AdamW, SGD with momentum and Adagrad steps on
  CPU   one flat array of 16M and of 64M elements, and 200 arrays totalling 16M;
  CUDA  one flat array of 256M elements, and 1000 arrays totalling 256M;
the L1+L2 penalty gradient (``optkern.regularize.add_penalty_grad_``) on the
many-array layout; on the CPU also the ``step()`` overhead of Adam on 100
arrays of 4 elements. ``quick``: 1M elements (CPU) / 16M (CUDA).

Bytes counted per element: each array read once, and written back once if the
step updates it (no write-allocate: in place). Adam/AdamW 28 (p g m v read,
p m v written), SGD-momentum and Adagrad 20, penalty 12. The probe of a case
is the in-place read-modify-write with as many written arrays (CPU) or a
device copy (GPU), measured at the start and the end of the suite.
"""

from __future__ import annotations

import numpy as np

from . import env, probe
from .probe import M, size_label
from .timing import Plan, compare, plan_for

SUITE = "optim"

# name -> (class name in optkern.optim and torch.optim, hyper-parameters, arrays written incl. the param)
OPTIMIZERS = {
    "Adam": ("Adam", dict(lr=1e-3), 3),
    "AdamW": ("AdamW", dict(lr=1e-3, weight_decay=1e-2), 3),
    "SGD-momentum": ("SGD", dict(lr=1e-2, momentum=0.9), 2),
    "Adagrad": ("Adagrad", dict(lr=1e-2), 2),
}
TORCH_MODES = {"for-loop": dict(foreach=False), "foreach": dict(foreach=True), "fused": dict(fused=True)}
L1, L2 = 1e-5, 1e-4


def split(total: int, count: int, seed: int = 0) -> list:
    """``count`` array sizes summing to ``total``, log-normally spread like a network's layers."""
    w = np.random.default_rng(seed).lognormal(0.0, 1.0, count)
    sizes = np.maximum(1, np.floor(w / w.sum() * total)).astype(np.int64)
    sizes[np.argmax(sizes)] += total - int(sizes.sum())
    return [int(s) for s in sizes]


def layouts(device: str, quick: bool) -> dict:
    """Layout name -> array sizes; the last layout is the many-array one."""
    if device == "cuda":
        flats, count = ([16 * M] if quick else [256 * M]), 1000
    else:
        flats, count = ([1 * M] if quick else [16 * M, 64 * M]), 200
    out = {f"flat {size_label(n)}": [n] for n in flats}
    out[f"{count} arrays {size_label(flats[0])}"] = split(flats[0], count)
    return out


def arrays(sizes, seed: int, device: str) -> list:
    """Fresh standard-normal float32 arrays (NumPy or CuPy)."""
    if device == "cuda":
        import cupy

        rs = cupy.random.RandomState(seed)
        return [rs.standard_normal(s, dtype=cupy.float32) for s in sizes]
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s, dtype=np.float32) for s in sizes]


def tensors(torch, sizes, seed: int, device: str) -> list:
    """Fresh standard-normal float32 torch tensors on ``device``."""
    if device == "cuda":
        g = torch.Generator(device="cuda").manual_seed(seed)
        return [torch.randn(s, device="cuda", generator=g) for s in sizes]
    return [torch.from_numpy(a) for a in arrays(sizes, seed, "cpu")]


def optkern_step(name: str, sizes, device: str):
    """One ``optkern.optim`` step of ``name`` on fresh arrays of ``sizes``, as a zero-argument call."""
    import optkern.optim as O

    cls, hp, _ = OPTIMIZERS[name]
    params, grads = arrays(sizes, 1, device), arrays(sizes, 2, device)
    opt = getattr(O, cls)(params, **hp)
    return lambda: opt.step(grads)


def torch_step(torch, name: str, sizes, device: str, mode: str):
    """One ``torch.optim`` step (``mode`` a key of TORCH_MODES), or None where torch lacks it."""
    cls, hp, _ = OPTIMIZERS[name]
    params = [t.requires_grad_() for t in tensors(torch, sizes, 1, device)]
    for p, g in zip(params, tensors(torch, sizes, 2, device)):
        p.grad = g
    try:
        opt = getattr(torch.optim, cls)(params, **hp, **TORCH_MODES[mode])
        opt.step()
    except (RuntimeError, TypeError, ValueError):  # e.g. no fused kernel for this optimizer/device
        return None
    return opt.step


def _torch_impls(torch, make) -> dict:
    """``make(mode)`` for every torch mode, or nothing without torch."""
    return {} if torch is None else {mode: (lambda m=mode: make(m)) for mode in TORCH_MODES}


def penalty_case(torch, sizes, device: str):
    """(optkern factory, torch factories) for ``g += l2 p + l1 sign(p)`` over all arrays."""
    from optkern import regularize

    def ours():
        ps, gs = arrays(sizes, 1, device), arrays(sizes, 2, device)
        return lambda: regularize.add_penalty_grad_(ps, gs, L1, L2)

    def foreach():
        tp, tg = tensors(torch, sizes, 1, device), tensors(torch, sizes, 2, device)

        def step():
            torch._foreach_add_(tg, tp, alpha=L2)
            torch._foreach_add_(tg, torch._foreach_sign(tp), alpha=L1)

        return step

    def forloop():
        tp, tg = tensors(torch, sizes, 1, device), tensors(torch, sizes, 2, device)

        def step():
            for p, g in zip(tp, tg):
                g.add_(p, alpha=L2).add_(p.sign(), alpha=L1)

        return step

    return ours, ({} if torch is None else {"for-loop": forloop, "foreach": foreach})


def overhead_row(torch, quick: bool, n_arrays: int = 100):
    """Adam ``step()`` on ``n_arrays`` arrays of 4 elements: the Python + call overhead (CPU)."""
    tiny = Plan(
        warmup=3, min_repeats=20, max_repeats=50 if quick else 200, budget_s=0.05 if quick else 0.5, collect=not quick
    )
    sizes = [4] * n_arrays
    row = compare(
        SUITE,
        f"Adam step() overhead, {n_arrays} arrays x 4",
        lambda: optkern_step("Adam", sizes, "cpu"),
        _torch_impls(torch, lambda m: torch_step(torch, "Adam", sizes, "cpu", m)),
        "cpu",
        tiny,
    )
    row.note = f"{1e3 * row.ours.median_ms:.1f} us/step" + (f"; {row.note}" if row.note else "")
    return row


def _probes(device: str, keys, plan: Plan) -> dict:
    """Probe rows by key (arrays written, elements); on the GPU every key is (0, n): a copy of n elements."""
    if device == "cuda":
        return {k: probe.cuda_copy(SUITE, k[1], plan) for k in keys}
    return {(w, n): probe.cpu_rmw(SUITE, n, w, plan) for w, n in sorted(keys)}


def run(device: str = "cpu", quick: bool = False, threads: int | None = None) -> list:
    """All optimizer cases on ``device``; probe rows first. Returns a list of ``Row``."""
    env.set_threads(threads)
    plan = plan_for(quick)
    torch = env.torch_for(device)
    lays = layouts(device, quick)
    many = sum(list(lays.values())[-1])

    def key(written, n):  # which probe a case is compared with
        return (0, n) if device == "cuda" else (written, n)

    keys = {key(w, sum(s)) for _, _, w in OPTIMIZERS.values() for s in lays.values()} | {key(1, many)}
    probes = _probes(device, keys, plan)
    cases = []  # (row, key of its probe)

    for name, (_, _, written) in OPTIMIZERS.items():
        for lay, sizes in lays.items():
            n = sum(sizes)
            # Defaults bind this iteration's values (compare() runs the calls before the loop moves on).
            ours = lambda name=name, sizes=sizes: optkern_step(name, sizes, device)  # noqa: E731
            theirs = lambda m, name=name, sizes=sizes: torch_step(torch, name, sizes, device, m)  # noqa: E731
            row = compare(
                SUITE,
                f"{name}, {lay}",
                ours,
                _torch_impls(torch, theirs),
                device,
                plan,
                bytes_moved=(2 * written + 1) * 4 * n,
            )
            cases.append((row, key(written, n)))
    lay, sizes = list(lays.items())[-1]
    ours, theirs = penalty_case(torch, sizes, device)
    cases.append(
        (compare(SUITE, f"L1+L2 penalty grad, {lay}", ours, theirs, device, plan, bytes_moved=12 * many), key(1, many))
    )
    if device == "cpu":
        cases.append((overhead_row(torch, quick), None))  # not bandwidth-bound: no probe
    # The probes again at the end: each ceiling is the faster of its two measurements.
    again = _probes(device, keys, plan)
    probes = {k: probe.faster(p, again[k]) for k, p in probes.items()}
    for row, k in cases:
        if row.bytes_moved:
            row.probe_gbs = probes[k].gbs
    return list(probes.values()) + [row for row, _ in cases]
