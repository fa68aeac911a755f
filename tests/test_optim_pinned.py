"""The exact bits of every CPU optimizer variant, pinned.

A few steps of each registered optimizer variant (tests/optim_registry.py) on fixed seeds, float32 and float64: the
SHA-256 of the resulting params and every state entry (arrays and scalars) must
not change when the code around the rules is refactored. A change that means to
change bits (a different rounding of a hyper-parameter, a fix) updates the pins
in the same commit and says why.

Regenerate with ``PYTHONPATH=src python tests/test_optim_pinned.py`` (prints the
table). The pins hold for this build's kernels on x86-64 with AVX-512 or AVX2
(the ISA clones the machines here select); elsewhere the loops' rounding may
differ (fused multiply-adds), and the test says so. Expressions with two products (SGD's
momentum * buf + (1 - dampening) * grad) are one explicit fma in the rules: GCC contracted either
product, and its AVX2 and AVX-512 clones chose differently (the SGD pins differed on the Intel
AVX-512 host lent on 2026-11-30; re-pinned after the explicit form, 2026-11-30 evening). L2 weight
decay likewise (g + wd p, torch's grad.add(param, alpha=wd)): GCC left it unfused in every loop and nvcc
fuses it, which running cuda/ on the CPU showed (tools/cuda_emu); one explicit fma since, the 14 L2
cases re-pinned 2026-12-01. Since 2026-12-02 every multiply-add the rules (and the sums of squares
of AdaGrad-Norm, SAM and the gradient norm) fuse is an explicit fma and none is left to the
compiler, so the same pins hold for the sanitizer's -O1 build, where GCC forms no FMA of its own
(.ci/sanitize runs this file).
"""

from __future__ import annotations

import hashlib
import zlib

import numpy as np
import pytest

import optkern.optim as O
from optim_registry import CASES

STEPS = 3
# odd sizes, a 2-D array, an empty one, one above the OpenMP threshold
SHAPES = [(1,), (7,), (1000,), (3, 5), (0,), (70001,)]


def case_id(name, hp, dtype):
    return f"{name}-{'-'.join(f'{k}={v}' for k, v in hp.items()) or 'defaults'}-{np.dtype(dtype).name}"


def digest(name, hp, dtype) -> str:
    rng = np.random.default_rng(zlib.crc32(repr((name, hp)).encode()))
    params = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    opt = getattr(O, name)(params, **hp)
    for _ in range(STEPS):
        opt.step([rng.standard_normal(s).astype(dtype) for s in SHAPES])
    h = hashlib.sha256()
    for p in params:
        h.update(p.tobytes())
    for i, entry in sorted(opt.state_dict()["state"].items()):
        for k, v in sorted(entry.items()):
            h.update(f"{i}:{k}:".encode())
            h.update(np.asarray(v).tobytes() if isinstance(v, np.ndarray) else repr(float(v)).encode())
    return h.hexdigest()[:32]


PINS = {
    "SGD-lr=0.1-float32": "8fcf23d380015b446f518a9a5604e238",
    "SGD-lr=0.1-float64": "3b00802f004528c747620ac4e8e7c604",
    "SGD-lr=0.1-weight_decay=0.01-maximize=True-float32": "9440150a23d5a8faa24814740da599cf",
    "SGD-lr=0.1-weight_decay=0.01-maximize=True-float64": "822ff244ae9825c87327bf32e9de7f95",
    "SGD-lr=0.05-momentum=0.9-float32": "64576c82f55ca2a0aa9c09a05624d2dc",
    "SGD-lr=0.05-momentum=0.9-float64": "75e962790b5412747fed4087827fd25b",
    "SGD-lr=0.05-momentum=0.9-nesterov=True-weight_decay=0.01-float32": "26a00280184407bc3974cdc13e69ae11",
    "SGD-lr=0.05-momentum=0.9-nesterov=True-weight_decay=0.01-float64": "aada40ece42e39b7ccfb26426e6051d4",
    "SGD-lr=0.05-momentum=0.8-dampening=0.3-maximize=True-float32": "5b228cd08f0c540153d976b9ea8f36ca",
    "SGD-lr=0.05-momentum=0.8-dampening=0.3-maximize=True-float64": "4a2aeae2a943fc30da8ca59be897b7be",
    "SGD-lr=0.05-momentum=0.9-momentum_form=textbook-weight_decay=0.01-dampening=0.1-float32": "df8537637fdf54a925ab20bddf1b87c3",
    "SGD-lr=0.05-momentum=0.9-momentum_form=textbook-weight_decay=0.01-dampening=0.1-float64": "0057fcd0ac043d5bff0ce05edb7635f5",
    "SGD-lr=0.05-momentum=0.9-nesterov=True-momentum_form=textbook-float32": "a997bab1df027826d5edff4abdf58982",
    "SGD-lr=0.05-momentum=0.9-nesterov=True-momentum_form=textbook-float64": "d711bda84d644a89b0b2598ce0201c23",
    "Adagrad-lr=0.1-float32": "de9157815e45e84eb97d547f21e42f1d",
    "Adagrad-lr=0.1-float64": "cd481fb1de479e65e77b7fd7f356e238",
    "Adagrad-lr=0.1-lr_decay=0.01-weight_decay=0.01-initial_accumulator_value=0.1-eps=1e-08-float32": "19222e7f8dde4b6f59717382ddb0bfab",
    "Adagrad-lr=0.1-lr_decay=0.01-weight_decay=0.01-initial_accumulator_value=0.1-eps=1e-08-float64": "ef62b1bb38b8ce46ab4fe815b504acee",
    "Adagrad-lr=0.05-maximize=True-float32": "171d8796380ea4fa31f5de78855b23ac",
    "Adagrad-lr=0.05-maximize=True-float64": "06021d5fc790d73612d38875607668ee",
    "AdagradNorm-lr=0.1-float32": "7d35a517872f71f2c1f08ae518bad4a9",
    "AdagradNorm-lr=0.1-float64": "64c74e69c17f10dee331c186c1d296d6",
    "AdagradNorm-lr=0.5-b0=1.0-weight_decay=0.01-maximize=True-float32": "7e952012fcae744c0a663a404b729363",
    "AdagradNorm-lr=0.5-b0=1.0-weight_decay=0.01-maximize=True-float64": "29b3367f83dca074e5e63f17c96658b5",
    "RMSprop-lr=0.01-float32": "5afdce84e38efd816c3946aa5bb0981a",
    "RMSprop-lr=0.01-float64": "bfcc2b2a9447af0105495d20e8882933",
    "RMSprop-lr=0.01-centered=True-float32": "48af83351d378ba81ccf9d9967172b56",
    "RMSprop-lr=0.01-centered=True-float64": "2e6f1ef4b92a6b32bd771ef37e788b10",
    "RMSprop-lr=0.01-momentum=0.9-weight_decay=0.01-float32": "08f89ae8db83e4eb476319da1cd5f392",
    "RMSprop-lr=0.01-momentum=0.9-weight_decay=0.01-float64": "78c47740dce288d8b962cebce4b503e3",
    "RMSprop-lr=0.01-alpha=0.9-centered=True-momentum=0.5-maximize=True-float32": "ac821eca3198b8c1fcfe58faed38d977",
    "RMSprop-lr=0.01-alpha=0.9-centered=True-momentum=0.5-maximize=True-float64": "158d2826212239f15cf1b10d18532cec",
    "RMSprop-lr=0.01-momentum=0.9-nesterov=True-float32": "b392169cf6f24f02728389fb3336faa0",
    "RMSprop-lr=0.01-momentum=0.9-nesterov=True-float64": "e7be4a9049f98adff29d850b6f6961b9",
    "RMSprop-lr=0.01-centered=True-momentum=0.7-nesterov=True-weight_decay=0.1-float32": "d5dfb697ccaa3b50b122cd5fc2901035",
    "RMSprop-lr=0.01-centered=True-momentum=0.7-nesterov=True-weight_decay=0.1-float64": "8e571eec889610b37af055524adc5e79",
    "Adadelta-defaults-float32": "2f7aade6870f1540ca61bfdb71ab4ab7",
    "Adadelta-defaults-float64": "473927cfef8e6a076ac6da7884009073",
    "Adadelta-lr=0.5-rho=0.8-eps=1e-05-weight_decay=0.01-maximize=True-float32": "cbf60757b63147d36480a475e01aa80f",
    "Adadelta-lr=0.5-rho=0.8-eps=1e-05-weight_decay=0.01-maximize=True-float64": "148fd555663a477d9791c007879a4d98",
    "Adam-lr=0.01-float32": "06e7b2dba52ba20f5cabbfe410b67df8",
    "Adam-lr=0.01-float64": "c831d55533645440bb2b6508d35e5a86",
    "Adam-lr=0.01-amsgrad=True-weight_decay=0.01-float32": "11d1d10cee9f568619528ce5bb276334",
    "Adam-lr=0.01-amsgrad=True-weight_decay=0.01-float64": "ad2e4c7c1dd4c79dab645e46972cc49b",
    "Adam-lr=0.01-betas=(0.8, 0.99)-maximize=True-float32": "931b615c05b0cc6476ab85725b9409fe",
    "Adam-lr=0.01-betas=(0.8, 0.99)-maximize=True-float64": "ad90cfcba50d5face6c59d09b5c587c5",
    "Adam-lr=0.01-weight_decay=0.1-decoupled_weight_decay=True-float32": "5de818fe8bfb1add51d3a39fd1e350d0",
    "Adam-lr=0.01-weight_decay=0.1-decoupled_weight_decay=True-float64": "a9bac391c1be79749e64d942f39bbca6",
    "AdamW-defaults-float32": "f23ab735b55d81d0c123521468d57860",
    "AdamW-defaults-float64": "c8856367d106cf20f9df0ef91a191eda",
    "AdamW-lr=0.01-amsgrad=True-weight_decay=0.1-maximize=True-float32": "2c884fba629a391406262bfff8aac237",
    "AdamW-lr=0.01-amsgrad=True-weight_decay=0.1-maximize=True-float64": "8bb0f003cf87b9509a93cd9e2332c2ec",
    "NAdam-defaults-float32": "9019ac1d43a6016efc35cc23ad8c770f",
    "NAdam-defaults-float64": "ea78fecf3689d1ac73d8a0eddd53e6b3",
    "NAdam-lr=0.01-weight_decay=0.01-betas=(0.85, 0.995)-float32": "7aaccf0d409977550aab0b674050f685",
    "NAdam-lr=0.01-weight_decay=0.01-betas=(0.85, 0.995)-float64": "662c5051bb1b97bb4ad3b836ede9e2f1",
    "NAdam-lr=0.01-weight_decay=0.1-momentum_decay=0.01-decoupled_weight_decay=True-float32": "3940504f27b770262273a4f5e4fe9224",
    "NAdam-lr=0.01-weight_decay=0.1-momentum_decay=0.01-decoupled_weight_decay=True-float64": "5e39c7245aa90fe92c586f50eaa94632",
}

ALL = [(n, hp, dt) for n, hp in CASES for dt in (np.float32, np.float64)]


@pytest.mark.parametrize("name,hp,dtype", ALL, ids=[case_id(*c) for c in ALL])
def test_bits_are_pinned(name, hp, dtype):
    key = case_id(name, hp, dtype)
    assert key in PINS, f"no pin for {key}: regenerate the table (see the module docstring)"
    assert digest(name, hp, dtype) == PINS[key], f"{key}: the bits changed"


if __name__ == "__main__":
    for c in ALL:
        print(f"    {case_id(*c)!r}: {digest(*c)!r},")
