"""optkern.torch's low-precision storage on CUDA tensors: the same bits as on the CPU, in place,
on torch's current stream without a host sync; checkpoints between the devices."""

import pytest

from gpu import require_gpu

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")
from torch_common import no_host_sync  # noqa: E402 (after the torch skip)

if not torch.cuda.is_available():
    pytest.skip("torch sees no CUDA device", allow_module_level=True)
require_gpu()

CASES = [
    ("AdamW", dict(lr=1e-2, amsgrad=True), dict(master_weights=True, stochastic_rounding=True, state_dtype="int8")),
    ("Adam", dict(lr=1e-2), dict(master_weights=True, state_dtype="bfloat16")),
    ("SGD", dict(lr=0.05, momentum=0.9), dict(master_weights=True, stochastic_rounding=True)),
    ("RMSprop", dict(lr=1e-2, centered=True), dict(master_weights=True, state_dtype="int8", block_size=64)),
    ("Adam", dict(lr=1e-2), dict(state_dtype="int8")),  # float32 params
]


def _pair(name, kw, lp, dtype):
    dtype = dtype if lp.get("master_weights") else torch.float32
    g = torch.Generator().manual_seed(0)
    init = [torch.randn(n, generator=g).to(dtype) for n in (1, 7, 1023, 5000)]
    cpu = [t.clone() for t in init]
    dev = [t.cuda() for t in init]
    return cpu, getattr(ot, name)(cpu, **kw, **lp, seed=9), dev, getattr(ot, name)(dev, **kw, **lp, seed=9)


def _bits(t):
    return t.detach().cpu().reshape(-1).view(torch.uint8)


def _same_state(a, b, pa, pb):
    """Optimizer ``a`` (params ``pa``) and ``b`` (``pb``) hold the same state, bit for bit."""
    for p, q in zip(pa, pb):
        assert a.state[p].keys() == b.state[q].keys()
        for k, v in a.state[p].items():
            w = b.state[q][k]
            if isinstance(v, torch.Tensor):
                assert w.dtype == v.dtype and torch.equal(_bits(v), _bits(w)), k
                assert w.device == (torch.device("cpu") if k == "step" else q.device), k
            else:
                assert v == w, k


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name,kw,lp", CASES)
def test_cuda_equals_cpu_bit_for_bit_without_host_sync(name, kw, lp, dtype):
    cpu, a, dev, b = _pair(name, kw, lp, dtype)
    ptrs = [p.data_ptr() for p in dev]
    g = torch.Generator().manual_seed(3)
    for _ in range(3):
        for p, q in zip(cpu, dev):
            x = torch.randn(p.shape, generator=g).to(p.dtype)
            p.grad, q.grad = x, x.cuda()
        a.step()
        torch.cuda.synchronize()
        no_host_sync(True)
        try:
            b.step()
        finally:
            no_host_sync(False)
        for p, q in zip(cpu, dev):
            assert torch.equal(_bits(p), _bits(q))
    assert [p.data_ptr() for p in dev] == ptrs
    _same_state(a, b, cpu, dev)


@pytest.mark.parametrize("name,kw,lp", CASES[:2])
def test_checkpoint_moves_between_cpu_and_cuda(name, kw, lp):
    cpu, a, dev, b = _pair(name, kw, lp, torch.bfloat16)
    for p, q in zip(cpu, dev):
        x = torch.ones(p.shape).to(p.dtype)
        p.grad, q.grad = x, x.cuda()
    a.step()
    b.step()
    cpu2 = [q.detach().cpu().clone() for q in dev]
    a2 = getattr(ot, name)(cpu2, **kw, **lp, seed=9)
    a2.load_state_dict(b.state_dict())
    _same_state(a2, b, cpu2, dev)
    dev2 = [p.detach().cuda() for p in cpu]
    b2 = getattr(ot, name)(dev2, **kw, **lp, seed=9)
    b2.load_state_dict(a.state_dict())
    _same_state(a, b2, cpu, dev2)


def test_torch_grad_scaler_on_cuda_equals_cpu():
    """torch.amp.GradScaler with float16 grads (scaled; one step overflows): the CUDA step unscales
    and skips as the CPU one does, bit for bit."""
    name, kw, lp = CASES[0]
    cpu, a, dev, b = _pair(name, kw, lp, torch.float16)
    scalers = [torch.amp.GradScaler(d, init_scale=1024.0, growth_interval=2) for d in ("cpu", "cuda")]
    g = torch.Generator().manual_seed(3)
    for s in range(5):
        for p, q in zip(cpu, dev):
            x = (torch.randn(p.shape, generator=g) * 1024).to(torch.float16)
            if s == 2:
                x[-1] = float("inf")
            p.grad, q.grad = x, x.cuda()
        for sc, opt, d in zip(scalers, (a, b), ("cpu", "cuda")):
            sc.scale(torch.ones((), device=d))  # (makes its scale)
            sc.step(opt)
            sc.update()
        assert scalers[0].get_scale() == scalers[1].get_scale()
        for p, q in zip(cpu, dev):
            assert torch.equal(_bits(p), _bits(q))
    _same_state(a, b, cpu, dev)
