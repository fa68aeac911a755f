"""optkern.torch on CUDA tensors: in place, on torch's current stream, without host syncs, like the CPU."""

import copy

import pytest

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")
from torch_common import CASES, IDS, data, gpu, mlp, no_host_sync  # noqa: E402 (after the torch skip)

# ---- CUDA tensors (torch with CUDA, CuPy and optkern._cuda) --------------------------------------


GPU_CASES = CASES + [("AdagradNorm", dict(lr=0.5, b0=0.1))]
GPU_IDS = IDS + ["AdagradNorm"]
GPU_TOL = {torch.float32: dict(rtol=2e-5, atol=2e-6), torch.float64: dict(rtol=1e-11, atol=1e-13)}


def _cpu_and_cuda(name, kw, dtype, n=3):
    """The same params under optkern.torch.<name> on the CPU and on CUDA."""
    g = torch.Generator().manual_seed(0)
    init = [torch.randn(5 + 37 * i, generator=g, dtype=dtype) for i in range(n)]
    cpu = [torch.nn.Parameter(t.clone()) for t in init]
    dev = [torch.nn.Parameter(t.cuda()) for t in init]
    return cpu, getattr(ot, name)(cpu, **kw), dev, getattr(ot, name)(dev, **kw)


def _grads_both(cpu, dev, seed):
    g = torch.Generator().manual_seed(seed)
    for a, b in zip(cpu, dev):
        gr = torch.randn(a.shape, generator=g, dtype=a.dtype)
        a.grad, b.grad = gr, gr.cuda()


class _NoHostSync:
    """torch's sync debug mode set to raise: any synchronizing torch call (float() / .item() of a
    CUDA tensor, a blocking copy to the host) inside fails."""

    def __enter__(self):
        torch.cuda.synchronize()
        no_host_sync(True)

    def __exit__(self, *exc):
        no_host_sync(False)


@gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name, kw", GPU_CASES, ids=GPU_IDS)
def test_cuda_steps_in_place_like_the_cpu_without_host_sync(name, kw, dtype):
    cpu, cpu_opt, dev, opt = _cpu_and_cuda(name, kw, dtype)
    ptrs = [p.data_ptr() for p in dev]
    for s in range(4):
        _grads_both(cpu, dev, seed=10 + s)
        cpu_opt.step()
        with _NoHostSync():
            opt.step()
        for a, b in zip(cpu, dev):
            torch.testing.assert_close(b.detach().cpu(), a.detach(), **GPU_TOL[dtype])
    assert [p.data_ptr() for p in dev] == ptrs  # updated in place
    for p in dev:
        for k, v in opt.state[p].items():
            if k in ("step", "mu_product"):
                assert v.is_cpu, k  # as torch's non-fused optimizers keep them
            else:
                assert v.is_cuda, k


@gpu
def test_cuda_step_runs_on_torchs_current_stream():
    # the new grads are written on a side stream that is busy first: a step launched on any other
    # stream would run at once and read the old grads
    g = torch.Generator().manual_seed(3)
    init, old, new = (torch.randn(1 << 20, generator=g) for _ in range(3))
    want = torch.nn.Parameter(init.clone())
    want.grad = new.clone()
    ot.Adam([want], lr=0.1).step()
    p = torch.nn.Parameter(init.cuda())
    p.grad = old.cuda()
    opt = ot.Adam([p], lr=0.1)
    new_dev = new.cuda()
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        torch.cuda._sleep(200_000_000)  # ~0.1 s of GPU time on the side stream
        p.grad.copy_(new_dev)
        opt.step()
        norm = ot.clip_grad_norm_([p], 1e30)  # same for the clip kernels
    torch.cuda.synchronize()
    torch.testing.assert_close(p.detach().cpu(), want.detach(), **GPU_TOL[torch.float32])
    torch.testing.assert_close(norm.cpu(), torch.linalg.vector_norm(new.double()).float(), rtol=1e-6, atol=0)


@gpu
@pytest.mark.parametrize(
    "name, torch_kw",
    [("AdamW", dict(fused=True)), ("Adam", dict(capturable=True)), ("NAdam", dict(capturable=True)), ("NAdam", {})],
)
def test_cuda_checkpoint_crosses_both_ways_without_host_sync(name, torch_kw):
    # torch's fused / capturable optimizers keep step (NAdam: mu_product too) on the device; its
    # loader moves mu_product to the param's device always. Loaded here they come back to the CPU.
    kw = dict(lr=1e-2, weight_decay=1e-2)
    g = torch.Generator().manual_seed(4)
    init = [torch.randn(7 + 5 * i, generator=g) for i in range(3)]
    grads = [[torch.randn(t.shape, generator=g).cuda() for t in init] for _ in range(8)]
    ref = [torch.nn.Parameter(t.cuda()) for t in init]
    ref_opt = getattr(torch.optim, name)(ref, **kw, **torch_kw)

    def steps(ps, o, gs, sync_free=False):
        for gr in gs:
            for p, x in zip(ps, gr):
                p.grad = x.clone()
            if sync_free:
                with _NoHostSync():
                    o.step()
            else:
                o.step()

    steps(ref, ref_opt, grads[:3])
    mine = [torch.nn.Parameter(p.detach().clone()) for p in ref]
    opt = getattr(ot, name)(mine, **kw)
    opt.load_state_dict(copy.deepcopy(ref_opt.state_dict()))
    assert all(opt.state[p]["step"].is_cpu for p in mine)
    steps(ref, ref_opt, grads[3:6])
    steps(mine, opt, grads[3:6], sync_free=True)
    for a, b in zip(ref, mine):
        torch.testing.assert_close(b.detach(), a.detach(), rtol=1e-5, atol=1e-6)
    back = [torch.nn.Parameter(p.detach().clone()) for p in mine]
    back_opt = getattr(torch.optim, name)(back, **kw, **torch_kw)
    back_opt.load_state_dict(copy.deepcopy(opt.state_dict()))
    again = [torch.nn.Parameter(p.detach().clone()) for p in mine]
    again_opt = getattr(ot, name)(again, **kw)
    again_opt.load_state_dict(copy.deepcopy(opt.state_dict()))  # our own checkpoint, loaded by us
    steps(back, back_opt, grads[6:])
    steps(mine, opt, grads[6:])
    steps(again, again_opt, grads[6:], sync_free=True)
    for a, b, c in zip(back, mine, again):
        torch.testing.assert_close(b.detach(), a.detach(), rtol=1e-5, atol=1e-6)
        assert torch.equal(c.detach(), b.detach())


@gpu
def test_cuda_params_and_cpu_params_in_one_optimizer():
    g = torch.Generator().manual_seed(5)
    init = [torch.randn(9, generator=g), torch.randn(4, 3, generator=g), torch.randn(6, generator=g)]
    cpu = [torch.nn.Parameter(t.clone()) for t in init]
    mixed = [torch.nn.Parameter(t.clone().cuda() if i != 1 else t.clone()) for i, t in enumerate(init)]
    opts = [ot.Adam(cpu, lr=1e-2), ot.Adam(mixed, lr=1e-2)]
    for _ in range(3):
        gr = [torch.randn(t.shape, generator=g) for t in init]
        for a, b, x in zip(cpu, mixed, gr):
            a.grad, b.grad = x.clone(), x.to(b.device)
        for o in opts:
            o.step()
    for a, b in zip(cpu, mixed):
        torch.testing.assert_close(b.detach().cpu(), a.detach(), **GPU_TOL[torch.float32])
    assert torch.equal(mixed[1].detach(), cpu[1].detach())  # the CPU param: the CPU kernel, bit for bit
    norm = ot.clip_grad_norm_((p for p in mixed), 0.1)  # two devices: torch's implementation
    assert norm.device == mixed[0].device


@gpu
@pytest.mark.parametrize("norm_type", [2.0, float("inf")])
def test_cuda_clip_grad_norm_returns_a_device_tensor_without_host_sync(norm_type):
    a, b = mlp(torch.float32).cuda(), mlp(torch.float32).cuda()
    x, y = (t.cuda() for t in data("mlp", torch.float32))
    for m in (a, b):
        torch.nn.functional.cross_entropy(m(x), y).backward()
    ref = torch.nn.utils.clip_grad_norm_(a.parameters(), 0.05, norm_type)
    with _NoHostSync():
        mine = ot.clip_grad_norm_(b.parameters(), 0.05, norm_type)
    assert mine.device == ref.device and mine.dtype == torch.float32 and mine.shape == ()
    torch.testing.assert_close(mine, ref, rtol=1e-5, atol=0)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pb.grad, pa.grad, rtol=1e-5, atol=1e-8)
    with _NoHostSync():
        ot.clip_grad_value_(b.parameters(), 1e-3)
    assert max(float(p.grad.abs().max()) for p in b.parameters()) <= float(torch.tensor(1e-3))


@gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_half_params_refused_by_name_and_half_grads_clipped_by_torch(dtype):
    with pytest.raises(TypeError, match=r"param_groups\[0\]\['params'\]\[0\]: expected float32 or float64"):
        ot.AdamW([torch.nn.Parameter(torch.zeros(3, device="cuda", dtype=dtype))])
    ps = [torch.nn.Parameter(torch.zeros(5, device="cuda", dtype=dtype)) for _ in range(2)]
    for p in ps:
        p.grad = torch.full_like(p, 3.0)
    assert float(ot.clip_grad_norm_(ps, 1.0)) == pytest.approx(90**0.5, rel=1e-2)  # 10 elements of 3
