"""optkern.swa.AveragedParams against the float64 mean and torch's AveragedModel."""

import numpy as np
import pytest

from optkern.swa import AveragedParams

SIZES = [1, 7, 1023, 70_001]


def test_swa_is_the_mean_of_the_iterates():
    rng = np.random.default_rng(1301)
    iterates = [[rng.standard_normal(n).astype(np.float32) for n in SIZES] for _ in range(12)]
    avg = AveragedParams(iterates[0], mode="swa")
    for it in iterates:
        avg.update(it)
    assert avg.n_averaged == 12
    for i in range(len(SIZES)):
        mean = np.mean([it[i].astype(np.float64) for it in iterates], axis=0)
        np.testing.assert_allclose(avg.averages[i], mean, rtol=0, atol=12 * 2.0**-23 * 4)


@pytest.mark.parametrize("mode", ["ema", "swa"])
def test_matches_torch_averaged_model_bit_for_bit(mode):
    """torch's AveragedModel with its multi-tensor averages (``_foreach_lerp_``): the same bits
    where torch runs its AVX2/AVX-512 kernels (lerp as one fused multiply-add per side, rules::lerp
    too); within an ulp or two elsewhere."""
    torch = pytest.importorskip("torch")
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn, get_swa_multi_avg_fn

    rng = np.random.default_rng(1302)
    model = torch.nn.Linear(370, 11)
    fn = get_ema_multi_avg_fn(0.9) if mode == "ema" else get_swa_multi_avg_fn()
    ema = AveragedModel(model, multi_avg_fn=fn)
    params = [p.detach().numpy().copy() for p in model.parameters()]
    ours = AveragedParams(params, mode=mode, decay=0.9)
    fused = torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")
    for _ in range(15):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.tensor(rng.standard_normal(tuple(p.shape)).astype(np.float32)))
        ema.update_parameters(model)
        ours.update([p.detach().numpy() for p in model.parameters()])
        for a, t in zip(ours.averages, ema.module.parameters()):
            if fused:
                np.testing.assert_array_equal(a, t.detach().numpy())
            else:
                np.testing.assert_allclose(a, t.detach().numpy(), rtol=1e-6, atol=1e-6)


def test_bad_input_named():
    with pytest.raises(ValueError, match="mode"):
        AveragedParams([np.zeros(3, np.float32)], mode="mean")
    with pytest.raises(ValueError, match="decay"):
        AveragedParams([np.zeros(3, np.float32)], mode="ema", decay=2.0)
    with pytest.raises(TypeError, match=r"params\[0\]"):
        AveragedParams([np.zeros(3, np.int32)])  # (float64 is averaged: test_hunt40l_swa)
    a = AveragedParams([np.zeros(3, np.float32)])
    with pytest.raises(ValueError, match=r"params\[0\]: expected shape"):
        a.update([np.zeros(4, np.float32)])
