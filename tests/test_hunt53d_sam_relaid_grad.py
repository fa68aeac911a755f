"""Hunt 53d: optkern.torch.SAM's ascent with a grad laid out unlike its param (a contiguous grad
set on a channels_last weight), as the reference SAM (torch ops, reading by index) takes it.

``first_step`` refused it by name ("tensor must be contiguous like its param"), where the reference
and every optkern.torch base optimizer (since hunt 53d) step it. Now the ascent reads it through a
copy in its param's layout (``_relaid``; the grad put back), plain and adaptive.
"""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")
from optkern.benchmarks.sam_reference import ReferenceSAM  # noqa: E402

CL = torch.channels_last


@pytest.mark.parametrize("base", [torch.optim.SGD, ot.SGD])
@pytest.mark.parametrize("adaptive", [False, True])
def test_a_grad_laid_out_unlike_its_param_ascends_as_the_reference(adaptive, base):
    conv = torch.nn.Conv2d(2, 3, 3).double().to(memory_format=CL)
    ref = copy.deepcopy(conv)
    x = torch.randn(4, 2, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    opt = ot.SAM(conv.parameters(), base, rho=0.05, adaptive=adaptive, lr=0.1, momentum=0.9)
    oref = ReferenceSAM(ref.parameters(), torch.optim.SGD, 0.05, adaptive, lr=0.1, momentum=0.9)
    for _ in range(3):
        for m, o in ((conv, opt), (ref, oref)):
            m(x).square().mean().backward()
            w = m.weight
            w.grad = w.grad.contiguous()  # (same values, NCHW memory: unlike its param)
            given = w.grad
            o.first_step(zero_grad=False)
            assert w.grad is given and w.grad.is_contiguous()
            o.zero_grad()
            m(x).square().mean().backward()
            w.grad = w.grad.contiguous()
            o.second_step(zero_grad=True)
    assert not conv.weight.is_contiguous()
    for p, q in zip(conv.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-13, atol=1e-15)
