"""Hunt 55g: a DLPack capsule gradient of its param's size but another shape is refused by name,
before anything is written, in a one-call step as in a step of several calls.

optkern.optim's step takes capsules where it only reads (a grads list). A step of one native call
compares sizes natively and shapes in Python, which cannot read a capsule's: a (4, 3) capsule for a
(3, 4) param -- the transposed gradient that a NumPy grad is refused for -- stepped each element
with another element's gradient, silently (SGD, Adam, AdaGrad-Norm ...); a step of several calls
(two groups) refused it already, in its native precheck. Compared with torch.optim where it passes.
"""

from __future__ import annotations

import numpy as np
import pytest

from optkern import optim

torch = pytest.importorskip("torch")

CASES = [
    (optim.SGD, dict(lr=0.1, momentum=0.9)),
    (optim.Adam, dict(lr=0.1)),
    (optim.AdamW, dict(lr=0.1)),
    (optim.AdagradNorm, dict(lr=0.1)),
]


def _grad(shape, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


@pytest.mark.parametrize("cls,hyper", CASES, ids=[c[0].__name__ for c in CASES])
@pytest.mark.parametrize("shape,given", [((3, 4), (4, 3)), ((7, 1), (1, 7)), ((2, 3, 5), (6, 5))])
def test_capsule_of_another_shape_is_refused_unwritten(cls, hyper, shape, given):
    p = np.linspace(-1, 1, int(np.prod(shape)), dtype=np.float32).reshape(shape)
    before = p.copy()
    opt = cls([p], **hyper)
    with pytest.raises(ValueError, match=r"grads\[0\]: expected shape"):
        opt.step([_grad(given).__dlpack__()])
    np.testing.assert_array_equal(p, before)
    assert not opt.state_dict()["state"]  # (no state made: the step never began)


@pytest.mark.parametrize("cls,hyper", CASES[:2], ids=[c[0].__name__ for c in CASES[:2]])
def test_capsule_of_its_shape_steps_as_torch(cls, hyper):
    """The capsule path itself still works: two steps equal torch.optim's, for 0-d, 1-element, 0-size
    and odd shapes."""
    shapes = [(), (1,), (0,), (7,), (3, 5)]
    rng = np.random.default_rng(3)
    ps = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    ts = [torch.nn.Parameter(torch.from_numpy(p.copy())) for p in ps]
    opt = cls(ps, **hyper)
    ref = getattr(torch.optim, cls.__name__)(ts, **hyper)
    for k in range(2):
        gs = [_grad(s, seed=10 + k + i) for i, s in enumerate(shapes)]
        opt.step([g.__dlpack__() for g in gs])
        for t, g in zip(ts, gs):
            t.grad = g.clone()
        ref.step()
    for p, t in zip(ps, ts):
        np.testing.assert_allclose(p, t.detach().numpy(), rtol=1e-6, atol=1e-7)
