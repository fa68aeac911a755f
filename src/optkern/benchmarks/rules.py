"""Every optimizer rule variant on one flat array: achieved bandwidth vs the probe, and vs torch.

The ``optim`` suite times four optimizers on several layouts; this one times each
variant of each rule (the bool flags and optional state lists the native loops
are specialised on: momentum, Nesterov, textbook momentum, L2 decay, centered,
AMSGrad, maximize, ...) on one flat float32 array, where an element loop that
lost its vectorization shows up at once as a low %probe (GCC vectorizes these
loops only after unswitching them on the rules' flags, and stops unswitching
past a loop size: see cpp/CMakeLists.txt).

Cases (float32): CPU 16M elements (``quick``: 1M); CUDA 256M (``quick``: 16M).
torch: its ``fused`` and ``foreach`` steps (a row notes where fused is missing);
variants torch lacks have no torch column. Bytes counted per element: p, g and
each state array read, p and each state array written, (2 (1 + K) + 1) * 4 for
K state arrays; AdaGrad-Norm's norm pass reads g (and p with decay) once more
before its step, counted too. The probe of a case is the in-place
read-modify-write of as many written arrays (CPU) or a device copy (GPU),
measured at the start and the end of the suite.
"""

from __future__ import annotations

from .optim import arrays, prepare, probe_rows, tensors, with_probes
from .probe import M, size_label
from .timing import compare

SUITE = "rules"

# name -> (optkern.optim class, hyper-parameters, state arrays, torch.optim variant or None)
VARIANTS: dict[str, tuple[str, dict, int, bool]] = {
    "SGD": ("SGD", dict(lr=1e-2), 0, True),
    "SGD L2": ("SGD", dict(lr=1e-2, weight_decay=1e-2), 0, True),
    "SGD momentum": ("SGD", dict(lr=1e-2, momentum=0.9), 1, True),
    "SGD momentum L2": ("SGD", dict(lr=1e-2, momentum=0.9, weight_decay=1e-2), 1, True),
    "SGD Nesterov L2 maximize": (
        "SGD",
        dict(lr=1e-2, momentum=0.9, nesterov=True, weight_decay=1e-2, maximize=True),
        1,
        True,
    ),
    "SGD textbook momentum L2": (
        "SGD",
        dict(lr=1e-2, momentum=0.9, momentum_form="textbook", weight_decay=1e-2),
        1,
        False,
    ),
    "Adagrad": ("Adagrad", dict(lr=1e-2), 1, True),
    "Adagrad L2": ("Adagrad", dict(lr=1e-2, weight_decay=1e-2), 1, True),
    "AdagradNorm L2": ("AdagradNorm", dict(lr=1e-2, weight_decay=1e-2), 0, False),
    "RMSprop": ("RMSprop", dict(lr=1e-3), 1, True),
    "RMSprop L2": ("RMSprop", dict(lr=1e-3, weight_decay=1e-2), 1, True),
    "RMSprop centered": ("RMSprop", dict(lr=1e-3, centered=True), 2, True),
    "RMSprop momentum": ("RMSprop", dict(lr=1e-3, momentum=0.9), 2, True),
    "RMSprop centered momentum": ("RMSprop", dict(lr=1e-3, centered=True, momentum=0.9), 3, True),
    "RMSprop Nesterov": ("RMSprop", dict(lr=1e-3, momentum=0.9, nesterov=True), 2, False),
    "Adadelta L2": ("Adadelta", dict(lr=1.0, weight_decay=1e-2), 2, True),
    "Adam": ("Adam", dict(lr=1e-3), 2, True),
    "Adam L2 maximize": ("Adam", dict(lr=1e-3, weight_decay=1e-2, maximize=True), 2, True),
    "AdamW": ("AdamW", dict(lr=1e-3, weight_decay=1e-2), 2, True),
    "AdamW AMSGrad": ("AdamW", dict(lr=1e-3, weight_decay=1e-2, amsgrad=True), 3, True),
    "NAdam L2": ("NAdam", dict(lr=1e-3, weight_decay=1e-2), 2, True),
}


def bytes_per_element(cls: str, hp: dict, states: int) -> int:
    """p, g and the state arrays read, p and the states written; AdaGrad-Norm's norm pass reads g
    (and p, with decay) once more."""
    step = (2 * (1 + states) + 1) * 4
    if cls == "AdagradNorm":
        step += 4 * (2 if hp.get("weight_decay") else 1)
    return step


def _size(device: str, quick: bool) -> int:
    if device == "cuda":
        return 16 * M if quick else 256 * M
    return 1 * M if quick else 16 * M


def _ours(cls: str, hp: dict, n: int, device: str):
    import optkern.optim as O

    params, grads = arrays([n], 1, device), arrays([n], 2, device)
    opt = getattr(O, cls)(params, **hp)
    return lambda: opt.step(grads)


def _theirs(torch, cls: str, hp: dict, n: int, device: str, mode: dict):
    """torch.optim's step of the variant in ``mode`` (fused or foreach), or None where torch lacks it."""
    params = [t.requires_grad_() for t in tensors(torch, [n], 1, device)]
    for p, g in zip(params, tensors(torch, [n], 2, device)):
        p.grad = g
    try:
        opt = getattr(torch.optim, cls)(params, **hp, **mode)
        opt.step()
    except (RuntimeError, TypeError, ValueError):  # e.g. no fused kernel for this optimizer/device
        return None
    return opt.step


def run(device: str = "cpu", quick: bool = False, threads: int | None = None) -> list:
    """One row per variant on ``device``; probe rows first. Returns a list of ``Row``."""
    torch, passive, plan = prepare(device, quick, threads)
    n = _size(device, quick)

    def key(states: int):  # which probe a variant is compared with
        return (0, n) if device == "cuda" else (1 + states, n)

    first = probe_rows(SUITE, device, {key(k) for _, _, k, _ in VARIANTS.values()}, plan)
    cases = []
    for name, (cls, hp, states, in_torch) in VARIANTS.items():
        theirs = {}
        if torch is not None and in_torch:
            for mode in ("fused", "foreach"):
                theirs[mode] = lambda cls=cls, hp=hp, mode=mode: _theirs(torch, cls, hp, n, device, {mode: True})
        notes = [] if theirs or torch is None else ["torch has no such variant"]
        if theirs and device == "cpu":
            notes.append("torch OMP_WAIT_POLICY=PASSIVE" if passive else "torch's wait policy unknown")
        row = compare(
            SUITE,
            f"{name}, flat {size_label(n)}",
            lambda cls=cls, hp=hp: _ours(cls, hp, n, device),
            theirs,
            device,
            plan,
            bytes_moved=bytes_per_element(cls, hp, states) * n,
            note="; ".join(notes),
        )
        cases.append((row, key(states)))
    return with_probes(SUITE, device, plan, first, cases)
