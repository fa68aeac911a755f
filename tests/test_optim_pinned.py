"""The exact bits of every CPU optimizer variant, pinned.

A few steps of each registered optimizer variant (tests/optim_registry.py) on fixed seeds, float32 and float64: the
SHA-256 of the resulting params and every state entry (arrays and scalars) must
not change when the code around the rules is refactored. A change that means to
change bits (a different rounding of a hyper-parameter, a fix) updates the pins
in the same commit and says why.

Regenerate with ``PYTHONPATH=src python tests/test_optim_pinned.py`` (prints the
table). The pins hold for this build's kernels on x86-64 with AVX-512 or AVX2
(the ISA clones the machines here select); elsewhere the loops' rounding may
differ (fused multiply-adds), and the test says so.
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
    'SGD-lr=0.1-float32': '8fcf23d380015b446f518a9a5604e238',
    'SGD-lr=0.1-float64': '3b00802f004528c747620ac4e8e7c604',
    'SGD-lr=0.1-weight_decay=0.01-maximize=True-float32': '6498c44a1e2692deca2968e708fbe2ae',
    'SGD-lr=0.1-weight_decay=0.01-maximize=True-float64': 'fd85bc5b5ecd6dbd1779d311b6606a08',
    'SGD-lr=0.05-momentum=0.9-float32': 'aeac20ca87eb7b931cd052f6f9544252',
    'SGD-lr=0.05-momentum=0.9-float64': '2104140b8ca02c674057a869cb6d2a3f',
    'SGD-lr=0.05-momentum=0.9-nesterov=True-weight_decay=0.01-float32': 'b8f010c76251fce4ff25d96b12df7897',
    'SGD-lr=0.05-momentum=0.9-nesterov=True-weight_decay=0.01-float64': 'd191ef771285ed6da625212dd555d606',
    'SGD-lr=0.05-momentum=0.8-dampening=0.3-maximize=True-float32': 'e4e1aeee79823c61dc9534dd5b5a8075',
    'SGD-lr=0.05-momentum=0.8-dampening=0.3-maximize=True-float64': '40a5e4495238d3feaef65770e6a6d04b',
    'SGD-lr=0.05-momentum=0.9-momentum_form=textbook-weight_decay=0.01-dampening=0.1-float32': '0c5f4fced74c25c731e2e37dd22ca78b',
    'SGD-lr=0.05-momentum=0.9-momentum_form=textbook-weight_decay=0.01-dampening=0.1-float64': 'b8531af4d826b09a1ea2bb56a5a60b02',
    'SGD-lr=0.05-momentum=0.9-nesterov=True-momentum_form=textbook-float32': '4f272c658c624865ff84189d512dfa6b',
    'SGD-lr=0.05-momentum=0.9-nesterov=True-momentum_form=textbook-float64': '37c0fd17b7831d44638ab46ca4a969b4',
    'Adagrad-lr=0.1-float32': '4971419f0c54019ca0932bf1493cd562',
    'Adagrad-lr=0.1-float64': 'ad84d23411626cd41829530c5a825bc2',
    'Adagrad-lr=0.1-lr_decay=0.01-weight_decay=0.01-initial_accumulator_value=0.1-eps=1e-08-float32': '5ffe11d5bddbf455cfcb05f5415da9bf',
    'Adagrad-lr=0.1-lr_decay=0.01-weight_decay=0.01-initial_accumulator_value=0.1-eps=1e-08-float64': 'f1e70763865477c69e07590e65d3f422',
    'Adagrad-lr=0.05-maximize=True-float32': '5a410e503ac027f987f6d7cdd5879e05',
    'Adagrad-lr=0.05-maximize=True-float64': '3bf856d8e60d5e51dfb06a9bf8b068ed',
    'AdagradNorm-lr=0.1-float32': '7d35a517872f71f2c1f08ae518bad4a9',
    'AdagradNorm-lr=0.1-float64': '64c74e69c17f10dee331c186c1d296d6',
    'AdagradNorm-lr=0.5-b0=1.0-weight_decay=0.01-maximize=True-float32': 'b5e81b560746baca3278c88285d3c70a',
    'AdagradNorm-lr=0.5-b0=1.0-weight_decay=0.01-maximize=True-float64': 'f53b7004577a8709c645104c55320e69',
    'RMSprop-lr=0.01-float32': 'a064bba518de6f625cf186f9e1e4b6cf',
    'RMSprop-lr=0.01-float64': '84d089062f108a336b3cd967f841486d',
    'RMSprop-lr=0.01-centered=True-float32': '67142133ac2c7e62a1103ed0163214d6',
    'RMSprop-lr=0.01-centered=True-float64': '33639363d23b6bddcecaa3d7d3c836b8',
    'RMSprop-lr=0.01-momentum=0.9-weight_decay=0.01-float32': '972d6da5ad4659f52560d0db24e4cffd',
    'RMSprop-lr=0.01-momentum=0.9-weight_decay=0.01-float64': '135be94905b43d0698168dc1b610e0ab',
    'RMSprop-lr=0.01-alpha=0.9-centered=True-momentum=0.5-maximize=True-float32': 'ae6409c59fbd36265fb94f5e81caf599',
    'RMSprop-lr=0.01-alpha=0.9-centered=True-momentum=0.5-maximize=True-float64': '6ef37867035f4939dc452cd6eeab48c7',
    'RMSprop-lr=0.01-momentum=0.9-nesterov=True-float32': '422fc86815f63bdda62d952f4168f26d',
    'RMSprop-lr=0.01-momentum=0.9-nesterov=True-float64': '8a9ecbe160266a6fefb1a5d78a778493',
    'RMSprop-lr=0.01-centered=True-momentum=0.7-nesterov=True-weight_decay=0.1-float32': '5a5304a171a772b653d29637d80c1a47',
    'RMSprop-lr=0.01-centered=True-momentum=0.7-nesterov=True-weight_decay=0.1-float64': '1475c700b2e5fd82cd1829e8a6769982',
    'Adadelta-defaults-float32': '061fa4c7fb52a0b0fc695090265b02e3',
    'Adadelta-defaults-float64': '2fb0dfff8b3ee0a24e3ed45e05e5fb2b',
    'Adadelta-lr=0.5-rho=0.8-eps=1e-05-weight_decay=0.01-maximize=True-float32': 'f43aa41c00ddeeb11b9b31da54c82b99',
    'Adadelta-lr=0.5-rho=0.8-eps=1e-05-weight_decay=0.01-maximize=True-float64': '3623216d9c77b03d28eb98c8c70f2f94',
    'Adam-lr=0.01-float32': '8b941b24efffb81f4e58b7be1babede8',
    'Adam-lr=0.01-float64': '4c3b71cb5eb361712c157af89b4ae57f',
    'Adam-lr=0.01-amsgrad=True-weight_decay=0.01-float32': '12c0a74d3e779e07ab321959755fc233',
    'Adam-lr=0.01-amsgrad=True-weight_decay=0.01-float64': '31dad68a9c50d964e063c9f9d7683642',
    'Adam-lr=0.01-betas=(0.8, 0.99)-maximize=True-float32': '8621ac6e85dd69343a1e38bc85d8bfc8',
    'Adam-lr=0.01-betas=(0.8, 0.99)-maximize=True-float64': '8199d147a5b936c77c52a3302b2c595d',
    'Adam-lr=0.01-weight_decay=0.1-decoupled_weight_decay=True-float32': 'd14337bb8874540ded756412eea3782c',
    'Adam-lr=0.01-weight_decay=0.1-decoupled_weight_decay=True-float64': 'da7a5abd0261b847829312214c7739e2',
    'AdamW-defaults-float32': '56a4b1380014ea33b4540396d7568ba7',
    'AdamW-defaults-float64': '0b72ec2a231beaa5c901ddbfe1948f09',
    'AdamW-lr=0.01-amsgrad=True-weight_decay=0.1-maximize=True-float32': 'bb339a95b0b3b98c10d8caf8667b5e2d',
    'AdamW-lr=0.01-amsgrad=True-weight_decay=0.1-maximize=True-float64': '3edfadc69ed838f33105a2571dbc0036',
    'NAdam-defaults-float32': 'db663f6c239ca1157f268eaae5c4e0f5',
    'NAdam-defaults-float64': 'fa2f9765b13fb9d648fe4d55dc9df29b',
    'NAdam-lr=0.01-weight_decay=0.01-betas=(0.85, 0.995)-float32': 'a0f9d09e115c12e51a80e55eeabac8ea',
    'NAdam-lr=0.01-weight_decay=0.01-betas=(0.85, 0.995)-float64': '255df43715aa2914f2ae806718c51d3e',
    'NAdam-lr=0.01-weight_decay=0.1-momentum_decay=0.01-decoupled_weight_decay=True-float32': 'a3ca621286677b9efb10f1525d1aa455',
    'NAdam-lr=0.01-weight_decay=0.1-momentum_decay=0.01-decoupled_weight_decay=True-float64': '93e10152055edd64d65c3bff4058b33d',
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
