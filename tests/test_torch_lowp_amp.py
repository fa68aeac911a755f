"""optkern.torch with low-precision storage in training: torch.amp.GradScaler over float16 models,
and models whose float32 params (norms) sit beside half ones under one master-weights optimizer."""

import pytest

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")

torch.set_num_threads(1)


# ---- torch.amp.GradScaler: the scale and found_inf handed to the step ---------------------------


@pytest.mark.parametrize(
    "name,lp", [("Adam", {}), ("SGD", dict(state_dtype="int8")), ("AdamW", dict(state_dtype="bfloat16"))]
)
def test_torch_grad_scaler_drives_a_float16_model(name, lp):
    """torch.amp.GradScaler on a float16 model: the step unscales the float16 grads as it widens
    them (torch refuses to unscale float16 grads itself), skips a step whose grads overflowed
    (nothing written, step count kept) and the scale follows torch's own rules. Reference: the
    same scaler rules over torch.optim on float32 copies of the params and grads (exactly
    representable: the float16 grads widened)."""
    kw = dict(lr=1e-2) if name != "SGD" else dict(lr=0.1, momentum=0.9)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(9, 33), torch.nn.Tanh(), torch.nn.Linear(33, 3)).to(torch.float16)
    ref = [p.detach().float().clone() for p in model.parameters()]
    opt = getattr(ot, name)(model.parameters(), **kw, master_weights=True, **lp)
    ref_opt = getattr(torch.optim, name)(ref, **kw)
    # init_scale 2^20 overflows float16 grads at first: the first steps are skipped and back off
    sc, ref_sc = (torch.amp.GradScaler("cpu", init_scale=2.0**20, growth_interval=3) for _ in range(2))
    x, y = torch.randn(64, 9).to(torch.float16), torch.randint(0, 3, (64,))
    skipped = 0
    for _ in range(12):
        opt.zero_grad()
        sc.scale(torch.nn.functional.cross_entropy(model(x).float(), y)).backward()
        for r, p in zip(ref, model.parameters()):
            r.grad = p.grad.float()
        ref_sc.scale(torch.ones(()))  # (its scale is made by its first scale())
        before = [p.detach().clone() for p in model.parameters()]
        steps = float(opt.state[ref_keys(opt)].get("step", 0)) if opt.state else 0.0
        sc.step(opt)
        ref_sc.step(ref_opt)
        if any(not torch.isfinite(p.grad).all() for p in model.parameters()):
            skipped += 1
            assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))
            assert (float(opt.state[ref_keys(opt)].get("step", 0)) if opt.state else 0.0) == steps
        sc.update()
        ref_sc.update()
        assert sc.get_scale() == ref_sc.get_scale()
    assert 0 < skipped < 12
    for r, p in zip(ref, model.parameters()):
        # compact moments follow the float32 ones to their own rounding (an unscaling off by any
        # factor of the scale, 2^10 and more here, would be off by orders of magnitude)
        tol = dict(rtol=2e-5, atol=1e-6) if not lp else dict(rtol=0, atol=1e-2)
        torch.testing.assert_close(opt.state[p]["master_param"], r, **tol)
        assert torch.equal(p.detach(), opt.state[p]["master_param"].to(torch.float16))


def ref_keys(opt):
    return opt.param_groups[0]["params"][0]


def test_master_weights_with_float32_params_beside_half_ones():
    """A bfloat16 model whose norm layer stays float32: one master_weights optimizer updates both,
    the float32 params as the plain float32 optimizer does (their own master, no copy), with
    their moments stored as state_dtype says."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(9, 17), torch.nn.LayerNorm(17), torch.nn.Linear(17, 3))
    model[0].to(torch.bfloat16), model[2].to(torch.bfloat16)
    norm = list(model[1].parameters())
    twin = [p.detach().clone() for p in norm]
    for lp in (dict(), dict(state_dtype="int8")):
        opt = ot.AdamW(model.parameters(), lr=1e-2, master_weights=True, **lp)
        ref = ot.AdamW(twin, lr=1e-2, **lp)
        x = torch.randn(32, 9).to(torch.bfloat16)
        for _ in range(3):
            opt.zero_grad()
            h = model[1](model[0](x).float())
            model[2](h.to(torch.bfloat16)).float().square().mean().backward()
            for t, p in zip(twin, norm):
                t.grad = p.grad.clone()
            opt.step()
            ref.step()
        for t, p in zip(twin, norm):
            assert torch.equal(p, t)
            assert "master_param" not in opt.state[p]
            for k, v in ref.state[t].items():
                assert torch.equal(opt.state[p][k], v) if isinstance(v, torch.Tensor) else opt.state[p][k] == v
        assert all("master_param" in opt.state[p] for p in model[0].parameters())
        # and its checkpoint round trip keeps the layout
        again = ot.AdamW(model.parameters(), lr=1e-2, master_weights=True, **lp)
        again.load_state_dict(opt.state_dict())
        assert "master_param" not in again.state[norm[0]] and "master_param" in again.state[model[0].weight]


def test_adagrad_norm_one_b_sq_over_half_and_float32_params():
    """AdaGrad-Norm with master weights: the group's half and float32 params share one b^2, the
    squared norm of all their (widened) grads."""
    ps = [torch.randn(7).to(torch.bfloat16), torch.randn(3), torch.randn(5).to(torch.float16)]
    opt = ot.AdagradNorm(ps, lr=0.5, b0=0.5, master_weights=True)
    g = [torch.randn(p.shape).to(p.dtype) for p in ps]
    for p, x in zip(ps, g):
        p.grad = x
    opt.step()
    b = opt.state[ps[0]]["b_sq"]
    assert all(opt.state[p]["b_sq"] is b for p in ps)
    want = 0.25 + sum(float((x.double() ** 2).sum()) for x in g)
    assert float(b) == pytest.approx(want, rel=1e-12)
    assert "master_param" not in opt.state[ps[1]]
