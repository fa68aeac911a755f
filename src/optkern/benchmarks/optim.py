"""Optimizer steps: optkern.optim vs torch.optim (for-loop, foreach, fused) vs a bandwidth probe.

Cases (float32): Adam, AdamW, SGD with momentum and Adagrad steps on
  CPU   one flat array of 16M and of 64M elements, and 200 arrays totalling 16M;
  CUDA  one flat array of 256M elements, and 1000 arrays totalling 256M;
the L1+L2 penalty gradient (``optkern.regularize.add_penalty_grad_``) on the
many-array layout; on the CPU also the ``step()`` overhead of Adam on 100
arrays of 4 elements, and the torch adapter: ``optkern.torch.Adam/AdamW/SGD``
stepping a torch "model" (the many-array layout as torch parameters with their
``.grad``) against ``torch.optim``'s fused and foreach steps on the same
tensors' layout, with the adapter's overhead over the raw ``optkern.optim``
step on the same memory (NumPy views of the adapter's params, grads and state;
paired: the two alternate, the overhead is the median of the per-pair ratios,
with its quartiles). torch runs with
``OMP_WAIT_POLICY=PASSIVE``: set before torch is imported, or, where torch links
the OpenMP runtime optkern loaded (started passive), inherited; the row says
which it could confirm. ``quick``: 1M elements (CPU) / 16M (CUDA).

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
from .timing import Plan, compare, measure, paired, plan_for

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


#: the optimizers benchmarked through optkern.torch (keys of OPTIMIZERS)
ADAPTER = ("Adam", "AdamW", "SGD-momentum")


def torch_passive():
    """``torch`` imported with ``OMP_WAIT_POLICY=PASSIVE`` (its OpenMP workers sleep between
    regions, like optkern's, instead of spinning against them), and whether that took effect
    (not when torch was already imported, or the user chose a policy)."""
    import os
    import sys

    from .. import _backend

    fresh = "torch" not in sys.modules and "OMP_WAIT_POLICY" not in os.environ
    if fresh:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        torch = env.torch_or_none()
    finally:
        if fresh:
            del os.environ["OMP_WAIT_POLICY"]
    return torch, _torch_shares_passive_runtime(_backend.omp_passive) or fresh


def _torch_shares_passive_runtime(optkern_passive: bool) -> bool:
    """Whether torch runs on optkern's OpenMP runtime (one libgomp in the process) and that one
    started passive. Linux only (reads /proc/self/maps); False where it cannot tell."""
    try:
        with open("/proc/self/maps") as f:
            gomps = {line.split()[-1] for line in f if "libgomp" in line}
    except OSError:
        return False
    return optkern_passive and len(gomps) == 1


def _model(torch, sizes, device: str) -> list:
    """A torch "model": parameters of ``sizes`` that require grad, with their ``.grad`` set."""
    params = [t.requires_grad_() for t in tensors(torch, sizes, 1, device)]
    for p, g in zip(params, tensors(torch, sizes, 2, device)):
        p.grad = g
    return params


def _adapter_and_raw(torch, cls: str, hp: dict, sizes):
    """An ``optkern.torch`` optimizer's step on a torch model, and the ``optkern.optim`` step it
    wraps over the very same memory (the model's params and grads, the adapter's state tensors):
    the difference is the adapter's own work. (Separately allocated models measured up to 5-9%
    apart here in either direction, from where their memory lies, with identical code.)"""
    import optkern.optim as O
    import optkern.torch as OT

    model = _model(torch, sizes, "cpu")
    adapter = getattr(OT, cls)(model, **hp)
    adapter.step()  # its state made
    opt = getattr(O, cls)([p.detach().numpy() for p in model], **hp)
    grads = [p.grad.numpy() for p in model]
    opt.step(grads)  # its state made, then replaced by views of the adapter's
    for runs in opt._runs:
        for run in runs:
            for name in run.state:
                run.state[name] = [adapter.state[model[i]][name].numpy() for i in run.index]
    return adapter.step, lambda: opt.step(grads)


def adapter_rows(torch, sizes, lay: str, plan: Plan, passive: bool) -> list:
    """(row, probe key) per ADAPTER optimizer: optkern.torch vs torch.optim fused / foreach (CPU)."""
    import optkern.torch as OT

    out = []
    for name in ADAPTER:
        cls, hp, written = OPTIMIZERS[name]
        n = sum(sizes)

        def ours(cls=cls, hp=hp):
            return getattr(OT, cls)(_model(torch, sizes, "cpu"), **hp).step

        theirs = {m: (lambda m=m, name=name: torch_step(torch, name, sizes, "cpu", m)) for m in ("fused", "foreach")}
        row = compare(
            SUITE, f"optkern.torch.{cls}, {lay}", ours, theirs, "cpu", plan, bytes_moved=(2 * written + 1) * 4 * n
        )
        adapter, raw = _adapter_and_raw(torch, cls, hp, sizes)
        med, q1, q3 = paired(adapter, raw, plan)
        raw_t = measure(raw, "cpu", plan)
        del adapter, raw
        fused = row.torch.get("fused")
        notes = [
            f"torch fused/ours {fused.median_ms / row.ours.median_ms:.2f}" if fused else "no torch fused",
            f"adapter vs raw optkern.optim step on the same memory {100 * (med - 1):+.1f}% "
            f"(quartiles {100 * (q1 - 1):+.1f}.."
            f"{100 * (q3 - 1):+.1f}%; raw {raw_t.median_ms:.3f} ms)",
            "torch OMP_WAIT_POLICY=PASSIVE" if passive else "torch's OpenMP wait policy: not known to be PASSIVE",
        ]
        row.note = "; ".join(filter(None, notes + [row.note]))
        out.append((row, written))
    return out


def probe_rows(suite: str, device: str, keys, plan: Plan) -> dict:
    """Probe rows by key (arrays written, elements); on the GPU every key is (0, n): a copy of n elements."""
    if device == "cuda":
        return {k: probe.cuda_copy(suite, k[1], plan) for k in keys}
    return {(w, n): probe.cpu_rmw(suite, n, w, plan) for w, n in sorted(keys)}


def with_probes(suite: str, device: str, plan: Plan, first: dict, cases: list) -> list:
    """Measures the probes again (each ceiling is the faster of its two measurements, which lessens
    the bias of drifting load), sets each case's (``cases``: (row, probe key)); probe rows first."""
    again = probe_rows(suite, device, first, plan)
    best = {k: probe.faster(p, again[k]) for k, p in first.items()}
    for row, k in cases:
        if row.bytes_moved:
            row.probe_gbs = best[k].gbs
    return list(best.values()) + [row for row, _ in cases]


def prepare(device: str, quick: bool, threads: int | None):
    """(torch for ``device`` or None, whether its OpenMP is known PASSIVE, the timing plan), with
    optkern's and torch's thread counts set."""
    torch, passive = torch_passive()
    env.set_threads(threads)
    return env.torch_for(device), passive, plan_for(quick)


def run(device: str = "cpu", quick: bool = False, threads: int | None = None) -> list:
    """All optimizer cases on ``device``; probe rows first. Returns a list of ``Row``."""
    torch, passive, plan = prepare(device, quick, threads)
    lays = layouts(device, quick)
    many = sum(list(lays.values())[-1])

    def key(written, n):  # which probe a case is compared with
        return (0, n) if device == "cuda" else (written, n)

    keys = {key(w, sum(s)) for _, _, w in OPTIMIZERS.values() for s in lays.values()} | {key(1, many)}
    probes = probe_rows(SUITE, device, keys, plan)
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
        if torch is not None:
            cases += [(row, key(w, many)) for row, w in adapter_rows(torch, sizes, lay, plan, passive)]
    return with_probes(SUITE, device, plan, probes, cases)
