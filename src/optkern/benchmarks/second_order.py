"""Second-order optimizers: L-BFGS against torch.optim.LBFGS, its fused two-loop passes against
the bandwidth probe, Newton-CG's CG iteration against one Hessian-vector product, SAM's passes.

L-BFGS rows: one ``step`` (``max_iter=1``: one closure call, one history update, one direction,
one move) on a separable quadratic ``f = sum a x^2 / 2`` of float32 parameters, history full
(warmed up), no line search; the closure (``g = a x``, native in each framework) is part of both
times. History 10 and 100 on 16M parameters (the issue's size): history 100 holds 12.8 GB of
float32 rows, so each implementation runs alone (``compare`` frees one before building the next)
and the row falls back to 2M parameters where less than 16 GB of memory is available. The
"via optkern.torch" row (history 10) runs torch's own benchmark code with the import changed to
``optkern.torch.LBFGS``: torch's closure and tensors, the adapter's views and checks included.

On the CPU the L-BFGS rows' CPU columns (as every row's: ``timing.clocked``) matter most: on a
2-vCPU shared host the wall clock also measures whether a step's two threads got both CPUs
(bench/RESULTS.md, 54th session, h320: one process's history-100 steps took 404-803 ms wall at a
constant ~600 ms of CPU), the CPU time does not.

Kernel rows (optkern only, compared with the probe): ``lbfgs_push_`` reads the ``2k`` history rows
and ``g, prev_g, d`` and writes ``s_new, y_new, prev_g``: ``4n (2k + 6)`` bytes;
``lbfgs_direction_`` reads ``2k`` rows and ``g`` and writes ``d``: ``4n (2k + 2)`` bytes.
Both are read-dominated, and this machine's reads stream slower than an in-place update's
mix (the rmw probe counts its writes, which overlap its reads): each row's note also gives
the bytes read (``2k + 3`` and ``2k + 1`` arrays) against a read-only probe of 23 arrays
(``_cpu.probe_read``, the stream count of the k = 10 passes), and against the same probe run over
the pass's own arrays, the two timed back to back in alternating order (the settled ratio: the
probe alone swung +-30 % within one run on the shared VM).

Newton-CG row: MLP 784-256-10 tanh, batch 512, float32, Gauss-Newton products: the time of one
CG iteration (``hessian.cg`` with ``rtol=0``, 10 iterations, divided by 10) against one product;
the overhead is the median ratio of 10 CG iterations to 10 products timed back to back in
alternating order (``timing.paired``), which the VM's swings move alike.

SAM row: ``sam_perturb_`` + ``sam_restore_`` (16M float32: the norm reads g; the ascent reads
p, g and writes p, backup; the return reads backup and writes p: ``4n x 7`` bytes) against torch
(``_foreach_norm``, ``_foreach_add_``, ``_foreach_copy_`` over the same 200 arrays). The "via
optkern.torch" SAM row: ``first_step`` + ``second_step`` (SGD with momentum as the base) of
optkern.torch.SAM over optkern.torch.SGD against the reference implementation's algorithm
(:mod:`.sam_reference`) over torch.optim.SGD.
"""

from __future__ import annotations

import functools

import numpy as np

from . import env, probe
from .probe import M
from .timing import Plan, Row, compare, measure, paired, plan_for

SUITE = "second"


def _quadratic(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.5, 2.0, n).astype(np.float32), rng.standard_normal(n).astype(np.float32)


def _ours_lbfgs(n, history, xp=np):
    from optkern import optim

    a, x0 = (xp.asarray(v) for v in _quadratic(n))
    x = x0.copy()
    g = xp.empty_like(x)

    def closure():
        xp.multiply(a, x, out=g)
        return 0.0, g  # the loss is not used without a line search

    opt = optim.LBFGS([x], lr=0.01, max_iter=1, history_size=history, tolerance_grad=0, tolerance_change=0)
    for _ in range(history + 2):
        opt.step(closure)
    return lambda: opt.step(closure)


def _torch_lbfgs(torch, n, history, cls=None, device="cpu"):
    """torch.optim.LBFGS's step, or that of ``cls`` (optkern.torch.LBFGS: the same torch code)."""
    a, x0 = (torch.from_numpy(v).to(device) for v in _quadratic(n))
    x = x0.clone().requires_grad_(True)
    cls = cls or torch.optim.LBFGS
    opt = cls([x], lr=0.01, max_iter=1, history_size=history, tolerance_grad=0, tolerance_change=0)

    def closure():
        with torch.no_grad():
            if x.grad is None:
                x.grad = torch.empty_like(x)
            torch.mul(a, x, out=x.grad)
        return torch.zeros(())

    for _ in range(history + 2):
        opt.step(closure)
    return lambda: opt.step(closure)


def _kernels(n, k, xp=np):
    """(push, direction) calls on a k-row history of float32 vectors (NumPy: the CPU module's
    kernels; CuPy: the CUDA module's), placed as ``optim.LBFGS`` places its own (``_aligned``)."""
    from optkern import _aligned, _backend

    rng = np.random.default_rng(1)

    def vec():
        return _aligned.copy(xp.asarray(rng.standard_normal(n, dtype=np.float32)))

    S = [vec() for _ in range(k)]
    Y = [vec() for _ in range(k)]
    g, pg, d = vec(), vec(), vec()
    sn, yn = _aligned.empty(n, np.float32, xp), _aligned.empty(n, np.float32, xp)
    out, o2 = xp.empty(5 * k + 4), xp.empty(2)
    cs, cy = list(rng.standard_normal(k)), list(rng.standard_normal(k))
    mod = _backend.cpu if xp is np else _backend.cuda_module()
    return (
        lambda: mod.lbfgs_push_(S, Y, sn, yn, g, pg, d, 0.5, out),
        lambda: mod.lbfgs_direction_(S, Y, cs, cy, g, -1.0, d, o2),
        (S + Y + [g, pg, d], S + Y + [g]),  # the arrays each pass reads (for the paired probe)
    )


def _available_bytes() -> int:
    """MemAvailable of /proc/meminfo (0 where it cannot be read)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _lbfgs_rows(torch, quick, plan, device="cpu"):
    xp = np
    if device == "cuda":  # (the GPU's memory holds history 100 of 16M: 12.8 GB)
        import cupy as xp
    big = 16 * M if device == "cuda" or _available_bytes() >= 16 << 30 else 2 * M  # history 100 x 2 rows x 4 B x n
    rows = []
    for n, hist in ((M if quick else 16 * M, 10), (M // 4 if quick else big, 100 if not quick else 20)):
        make_ours = functools.partial(_ours_lbfgs, n, hist, xp)
        make_torch = functools.partial(_torch_lbfgs, torch, n, hist, device=device)
        theirs = {} if torch is None else {"LBFGS": make_torch}
        row = compare(
            SUITE,
            f"L-BFGS step, history {hist}, {probe.size_label(n)} fp32",
            make_ours,
            theirs,
            device,
            plan,
            note="incl. closure g = a x",
        )
        rows.append(row)
        if torch is not None and hist == 10:  # what a torch user gets from the changed import
            from ..torch import LBFGS

            rows.append(
                compare(
                    SUITE,
                    f"L-BFGS step via optkern.torch, history {hist}, {probe.size_label(n)} fp32",
                    lambda n=n, h=hist: _torch_lbfgs(torch, n, h, LBFGS, device),
                    theirs,
                    device,
                    plan,
                    note="torch's closure and tensors; incl. closure g = a x",
                )
            )
    return rows


def _kernel_rows(quick, plan, probe_row, read_probe, device="cpu"):
    """push / direction against the rmw probe (bytes read + written), and in the note against the
    read probe (bytes read only: both passes are read-dominated, 2k + 3 and 2k + 1 arrays read).
    On the GPU (``read_probe`` None) against the device-to-device copy probe only."""
    xp = np
    if device == "cuda":
        import cupy as xp
    n = M if quick else 16 * M
    rows = []
    for k in (10,) if quick else (10, 30):
        push, direction, (push_reads, dir_reads) = _kernels(n, k, xp)
        for name, fn, nbytes, nread, arrays in (
            ("push (pair + all dots)", push, 4 * n * (2 * k + 6), 4 * n * (2 * k + 3), push_reads),
            ("direction", direction, 4 * n * (2 * k + 2), 4 * n * (2 * k + 1), dir_reads),
        ):
            t = measure(fn, device, plan)
            reads = nread / t.median_ms / 1e6
            note = f"reads {reads:.1f} GB/s"
            if read_probe is not None:
                note += f" = {100 * reads / read_probe.gbs:.0f}% of the read probe"
                note += _paired_read_note(fn, arrays, plan)
            rows.append(
                Row(
                    SUITE,
                    f"lbfgs {name}, k={k}, {probe.size_label(n)} fp32",
                    t,
                    nbytes,
                    probe_gbs=probe_row.gbs,
                    note=note,
                )
            )
        del push, direction
    return rows


def _paired_read_note(fn, arrays, plan) -> str:
    """The pass against a read-only probe over the very arrays it reads, the two timed back to back
    in alternating order (``timing.paired``): the probe's own swings on this shared VM (+-30 % within
    one run) move both calls of a pair alike, where a ratio of two separate medians takes them in."""
    from .. import _cpu

    med, q1, q3 = paired(lambda: _cpu.probe_read(arrays), fn, plan)  # probe time / pass time
    return f"; paired with a read probe over its own arrays {100 * med:.0f}% [{100 * q1:.0f}, {100 * q3:.0f}]"


def _newton_cg_row(quick, plan):
    from optkern import hessian
    from optkern.nn import MLP

    batch = 128 if quick else 512
    model = MLP([784, 256, 10], activation="tanh", dtype=np.float32)
    rng = np.random.default_rng(0)
    p = model.init_params(0)
    x, y = rng.standard_normal((batch, 784), np.float32), rng.integers(0, 10, batch)
    G = hessian.from_mlp(model, p, x, y, kind="ggn")
    v = rng.standard_normal(model.num_params).astype(np.float32)
    iters = 10

    def products():
        for _ in range(iters):
            G.matvec(v)

    def solve():
        hessian.cg(G, v, rtol=0.0, maxiter=iters, damping=1e-3)

    hvp = measure(lambda: G.matvec(v), "cpu", plan)
    cg_plan = Plan(warmup=1, min_repeats=5 if quick else 15, max_repeats=40, budget_s=plan.budget_s)
    t = measure(solve, "cpu", cg_plan)
    per_iter = t.per(iters)
    med, q1, q3 = paired(solve, products, cg_plan)  # 10 CG iterations / 10 products, back to back
    row = Row(
        SUITE,
        f"Newton-CG: one CG iteration, MLP 784-256-10 GGN b{batch}",
        per_iter,
        note=f"one GGN product {hvp.median_ms:.2f} ms ±{100 * hvp.spread:.0f}%; "
        f"CG overhead {100 * (med - 1):+.1f}% (paired, quartiles {100 * (q1 - 1):+.1f}..{100 * (q3 - 1):+.1f}%)",
    )
    return row


def _sam_row(torch, quick, plan, probe_row):
    from optkern import _backend

    n_arrays, n = 200, (M if quick else 16 * M)
    sizes = [n // n_arrays] * (n_arrays - 1) + [n - (n // n_arrays) * (n_arrays - 1)]

    def ours():
        rng = np.random.default_rng(2)
        ps = [rng.standard_normal(s, dtype=np.float32) for s in sizes]
        gs = [rng.standard_normal(s, dtype=np.float32) for s in sizes]
        bk = [np.empty_like(q) for q in ps]
        out = np.zeros(1)

        def run():
            _backend.cpu.sam_perturb_(ps, gs, bk, 0.05, 1e-12, out)
            _backend.cpu.sam_restore_(ps, bk)

        return run

    def theirs():
        ps = [torch.randn(s) for s in sizes]
        gs = [torch.randn(s) for s in sizes]
        bk = [torch.empty_like(q) for q in ps]

        def run():
            norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(gs)))
            torch._foreach_copy_(bk, ps)
            torch._foreach_add_(ps, gs, alpha=float(0.05 / (norm + 1e-12)))
            torch._foreach_copy_(ps, bk)

        return run

    return compare(
        SUITE,
        f"SAM perturb + restore, {n_arrays} arrays, {probe.size_label(n)} fp32",
        ours,
        {} if torch is None else {"foreach": theirs},
        "cpu",
        plan,
        bytes_moved=4 * n * 7,
        probe_gbs=probe_row.gbs,
    )


def _sam_torch_row(torch, quick, plan):
    """SAM's two steps around SGD with momentum as a torch user runs them: optkern.torch.SAM over
    optkern.torch.SGD against the reference implementation over torch.optim.SGD (foreach)."""
    from ..torch import SAM, SGD
    from .sam_reference import ReferenceSAM

    n_arrays, n = 200, (M if quick else 16 * M)
    sizes = [n // n_arrays] * (n_arrays - 1) + [n - (n // n_arrays) * (n_arrays - 1)]

    def make(sam, base):
        def build():
            g = torch.Generator().manual_seed(3)
            ps = [torch.nn.Parameter(torch.randn(s, generator=g)) for s in sizes]
            for p in ps:
                p.grad = torch.randn(p.shape, generator=g)
            opt = sam(ps, base, rho=0.05, lr=1e-3, momentum=0.9)

            def run():
                opt.first_step()
                opt.second_step()  # (the grads at w stand in for those at the ascent point)

            return run

        return build

    return compare(
        SUITE,
        f"SAM step via optkern.torch (SGD momentum), {n_arrays} tensors, {probe.size_label(n)} fp32",
        make(SAM, SGD),
        {} if torch is None else {"reference": make(ReferenceSAM, torch.optim.SGD)},
        "cpu",
        plan,
        note="first_step + second_step, forward/backward excluded; reference: davda54/sam's algorithm",
    )


def run(device: str = "cpu", quick: bool = False, threads: int | None = None) -> list:
    """The suite; returns a list of ``Row``. On the GPU: the L-BFGS and two-loop kernel rows
    (CuPy against torch on CUDA, and the copy probe); Newton-CG and SAM run on the CPU only."""
    env.set_threads(threads)
    torch = env.torch_for(device)
    plan = plan_for(quick)
    if device == "cuda":
        return _cuda_rows(torch, quick, plan)
    n = M if quick else 16 * M
    first = probe.cpu_rmw(SUITE, n, 1, plan)
    reads = probe.faster(probe.cpu_read(SUITE, n, 23, plan), probe.cpu_read(SUITE, n, 23, plan))
    rows = _lbfgs_rows(torch, quick, plan)
    rows += _kernel_rows(quick, plan, first, reads)
    rows.append(_newton_cg_row(quick, plan))
    rows.append(_sam_row(torch, quick, plan, first))
    if torch is not None:
        rows.append(_sam_torch_row(torch, quick, plan))
    best = probe.faster(first, probe.cpu_rmw(SUITE, n, 1, plan))
    for r in rows:
        if r.bytes_moved:
            r.probe_gbs = best.gbs
    return [best, reads] + rows


def _cuda_rows(torch, quick, plan) -> list:
    env.require_cuda()
    n = M if quick else 16 * M
    copy = probe.cuda_copy(SUITE, n, plan)
    rows = _lbfgs_rows(torch, quick, plan, "cuda")
    rows += _kernel_rows(quick, plan, copy, None, "cuda")
    for r in rows:
        if r.bytes_moved:
            r.probe_gbs = copy.gbs
    return [copy] + rows
