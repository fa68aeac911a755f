"""optkern.torch's low-precision checkpoints across storage formats and shapes (defect hunt 28).

Defects fixed:
* a low-precision optimizer compared a saved moment or master copy with its param by size only:
  a checkpoint of another model whose param is transposed or reshaped (same size) loaded
  silently, moments and master scrambled, where a plain optimizer's load names the entry
  (``expected shape (3, 5) (its param's), got (5, 3)``). Now named the same way, nothing loaded.
* loading converted the moments into the optimizer's storage but left what torch's loader kept of
  the saved format: an 8-bit checkpoint loaded into a bfloat16-state (or float32-state) optimizer
  kept ``exp_avg_scale`` / ``block_size`` in its state, a half-param checkpoint loaded into float32
  params kept a ``master_param`` (cast to float32) the step never reads; each was saved again,
  and a plain optimizer kept a stale scale beside a moment that was not 8-bit. Now the state holds
  exactly its own storage's entries.
* a master-weights checkpoint that went through torch.optim (loaded as it is, stepped, saved)
  holds the master copy torch's loader cast to the param's dtype and its steps never moved:
  loaded back, it was taken as the master, and the next step jumped the params back to where
  torch's steps began. A half master (only torch's loader makes one) now starts from the param.
* a 0-d param's saved moments and master (0-d tensors) were also copied as per-param scalars:
  a 0-d float32 param kept a half-param checkpoint's master copy.
* a low-precision optimizer did not pickle (``torch.save(opt)``, ``pickle.dumps``): PicklingError
  on its optkern.optim step instance, of a class made per optimizer class.
Guard (held before): 8-bit state through ``to_torch_state_dict``, torch.optim and back is the same
codes and scales, bit for bit.
"""

import pytest

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")
from torch_common import step_random, through_file  # noqa: E402


def trained(dtype, shape, **lp):
    ps = [torch.randn(*shape).to(dtype), torch.randn(11).to(dtype), torch.randn(()).to(dtype)]
    opt = ot.Adam(ps, lr=1e-2, **lp)
    step_random(opt, ps, 1, 2)
    return opt, ps


CASES = [
    (torch.float32, dict(state_dtype="bfloat16"), "exp_avg"),
    (torch.float32, dict(state_dtype="int8", block_size=64), "exp_avg"),
    (torch.bfloat16, dict(master_weights=True, stochastic_rounding=True), "master_param"),
    (torch.float16, dict(master_weights=True, state_dtype="int8"), "exp_avg_sq"),
]


@pytest.mark.parametrize("dtype,lp,key", CASES)
def test_a_saved_tensor_of_another_shape_is_named_and_nothing_loads(dtype, lp, key):
    """The param is (3, 5); the checkpoint's tensor ``key`` of param 0 holds 15 values as (5, 3)
    (or flat): refused naming it, the optimizer's state and params untouched."""
    a, _ = trained(dtype, (3, 5), **lp)
    for shape in ((5, 3), (15,)):
        sd = through_file(a.state_dict())
        sd["state"][0][key] = sd["state"][0][key].reshape(shape)
        qs = [torch.randn(3, 5).to(dtype), torch.randn(11).to(dtype), torch.randn(()).to(dtype)]
        b = ot.Adam(qs, lr=1e-2, **lp)
        with pytest.raises(ValueError, match=rf"state_dict\['state'\]\[0\]\['{key}'\]: expected shape \(3, 5\)"):
            b.load_state_dict(sd)
        assert not b.state


@pytest.mark.parametrize(
    "src,dst",
    [
        (dict(state_dtype="int8", block_size=64), dict(state_dtype="bfloat16")),
        (dict(state_dtype="int8", block_size=64), dict(master_weights=True)),
        (dict(master_weights=True, state_dtype="int8"), dict(master_weights=True, state_dtype="bfloat16")),
    ],
)
def test_a_converted_checkpoint_leaves_only_this_storages_entries(src, dst):
    """After loading another format's checkpoint the state holds what this optimizer's own steps
    make (``step``, the moments in its storage, its master where its params are halves), and its
    checkpoint through torch.optim the keys torch's Adam keeps."""
    half = src.get("master_weights", False)
    a, ps = trained(torch.bfloat16 if half else torch.float32, (3, 5), **src)
    qs = [p.float() for p in ps]  # (float32 params: their own master)
    b = ot.Adam(qs, lr=1e-2, **dst)
    b.load_state_dict(through_file(a.state_dict()))
    own = ot.Adam([q.clone() for q in qs], lr=1e-2, **dst)
    step_random(own, own.param_groups[0]["params"], 1, 1)
    for q, r in zip(qs, own.param_groups[0]["params"]):
        assert b.state[q].keys() == own.state[r].keys()
        for k, v in b.state[q].items():
            assert isinstance(v, int) or v.dtype == own.state[r][k].dtype, k
    step_random(b, qs, 2, 1)
    t = torch.optim.Adam([q.clone() for q in qs], lr=1e-2)
    t.load_state_dict(through_file(ot.to_torch_state_dict(b.state_dict())))
    for p in t.param_groups[0]["params"]:
        assert set(t.state[p]) - {"seed"} == {"step", "exp_avg", "exp_avg_sq"}


@pytest.mark.parametrize("dst", [{}, dict(state_dtype="bfloat16"), dict(state_dtype="int8", block_size=64)])
def test_an_older_checkpoint_with_stale_scales_loads_without_them(dst):
    """What a bfloat16-state optimizer saved after loading an 8-bit checkpoint before the fix (its
    bfloat16 moments beside the 8-bit scales and block size): loaded, the moments as saved, and
    no scale left beside a moment that is not 8-bit."""
    a, ps = trained(torch.float32, (3, 5), state_dtype="bfloat16")
    sd = through_file(a.state_dict())
    for e in sd["state"].values():
        e.update(exp_avg_scale=torch.ones(1), exp_avg_sq_scale=torch.ones(1), block_size=256)
    qs = [p.clone() for p in ps]
    b = ot.Adam(qs, lr=1e-2, **dst)
    b.load_state_dict(sd)
    for p, q in zip(ps, qs):
        st = b.state[q]
        assert set(st) == {"step", "exp_avg", "exp_avg_sq"} | (
            {"exp_avg_scale", "exp_avg_sq_scale", "block_size"} if dst.get("state_dtype") == "int8" else set()
        )
        if not dst:
            assert torch.equal(st["exp_avg"], a.state[p]["exp_avg"].float())
    t = torch.optim.Adam([q.clone() for q in qs], lr=1e-2)
    t.load_state_dict(ot.to_torch_state_dict(sd))
    assert all(set(s) - {"seed"} == {"step", "exp_avg", "exp_avg_sq"} for s in t.state.values())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_master_cast_by_torch_optims_loader_is_not_taken(dtype):
    """A master-weights checkpoint loaded by torch.optim.Adam as it is: torch keeps the unknown
    ``master_param`` cast to the param's dtype, and its steps move the param, not that copy. Loaded
    back, the master starts from the param (it was the stale copy: the next step jumped the params
    back to where torch's steps began)."""
    a, ps = trained(dtype, (3, 5), master_weights=True)
    ts = [p.clone() for p in ps]
    t = torch.optim.Adam(ts, lr=1e-2)
    t.load_state_dict(through_file(a.state_dict()))
    step_random(t, ts, 2, 3)
    saved = through_file(t.state_dict())
    assert saved["state"][0]["master_param"].dtype == dtype  # (what torch's loader made of it)
    qs = [p.clone() for p in ts]
    b = ot.Adam(qs, lr=1e-2, master_weights=True)
    b.load_state_dict(saved)
    for q in qs:
        assert torch.equal(b.state[q]["master_param"], q.float())
    step_random(b, qs, 3, 1)
    for q, r in zip(qs, ts):  # (one lr-sized step from torch's params, not from the old master)
        assert (q.float() - r.float()).abs().max() < 0.05


def test_8bit_state_through_torch_optim_and_back_is_bit_for_bit():
    """Guard: 8-bit moments decoded by ``to_torch_state_dict``, kept by torch.optim.Adam (no step)
    and loaded back into an 8-bit optimizer of the same block: the same codes and scales."""
    a, ps = trained(torch.float32, (3, 5), state_dtype="int8", block_size=64)
    t = torch.optim.Adam([p.clone() for p in ps], lr=1e-2)
    t.load_state_dict(through_file(ot.to_torch_state_dict(a.state_dict())))
    qs = [p.clone() for p in ps]
    b = ot.Adam(qs, lr=1e-2, state_dtype="int8", block_size=64)
    b.load_state_dict(through_file(t.state_dict()))
    for p, q in zip(ps, qs):
        assert a.state[p].keys() == b.state[q].keys()
        for k, v in a.state[p].items():
            assert v == b.state[q][k] if isinstance(v, int) else torch.equal(v, b.state[q][k]), k


@pytest.mark.parametrize("lp", [dict(master_weights=True, stochastic_rounding=True), dict(state_dtype="int8")])
def test_a_low_precision_optimizer_pickles(lp):
    """pickle (``torch.save(opt)``) of a low-precision optimizer, as of a plain one: its
    optkern.optim step instance is of a class made per optimizer class, which pickle could not
    find by name (PicklingError). The copy keeps the loaded seed and continues bit for bit."""
    import pickle

    dtype = torch.bfloat16 if lp.get("master_weights") else torch.float32
    a, ps = trained(dtype, (3, 5), **lp)
    b = ot.Adam([p.clone() for p in ps], lr=1e-2, **lp, seed=8)
    b.load_state_dict(through_file(a.state_dict()))
    c = pickle.loads(pickle.dumps(b))
    assert c._lowp_cfg == b._lowp_cfg
    for opt in (b, c):
        step_random(opt, opt.param_groups[0]["params"], 5, 2)
    for p, q in zip(b.param_groups[0]["params"], c.param_groups[0]["params"]):
        assert torch.equal(p, q)
        assert all(torch.equal(v, c.state[q][k]) for k, v in b.state[p].items() if isinstance(v, torch.Tensor))
