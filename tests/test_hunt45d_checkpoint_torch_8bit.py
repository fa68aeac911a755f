"""``optkern.load`` of an ``optkern.torch`` optimizer's 8-bit checkpoint into the ``torch.optim``
optimizer of the same name.

The saved type name ("Adam") matched ``torch.optim.Adam``'s, the structure checks passed, and torch's
loader cast the uint8 codes to float32 as values: ``exp_avg`` held 183.0, 81.0, ... where the moments
were ~1e-3, silently, and the resumed run's steps were wild. (The module docs say torch.optim needs
``to_torch_state_dict`` for 8-bit states; ``optkern.load``, which checks every target before it writes,
gave it none.) Now such a target gets the state as ``to_torch_state_dict`` makes it; an optkern.torch
target still gets the 8-bit codes exactly."""

from __future__ import annotations

import numpy as np
import pytest

import optkern

torch = pytest.importorskip("torch")
okt = pytest.importorskip("optkern.torch")


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))


def _train(model, opt, steps: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        opt.zero_grad()
        model(torch.randn(5, 4, generator=g)).pow(2).sum().backward()
        opt.step()


@pytest.mark.parametrize("name", ["Adam", "AdamW", "SGD"])
def test_8bit_state_loads_into_torch_optim_as_values(tmp_path, name):
    kw = {"momentum": 0.9} if name == "SGD" else {}
    ma = _model()
    oa = getattr(okt, name)(ma.parameters(), lr=1e-2, state_dtype="int8", **kw)
    _train(ma, oa, 3, seed=1)
    optkern.save(tmp_path / "c.npz", opt=oa)
    mb = _model()
    ob = getattr(torch.optim, name)(mb.parameters(), lr=1e-2, **kw)
    optkern.load(tmp_path / "c.npz", opt=ob)
    want = okt.to_torch_state_dict(oa.state_dict())["state"]
    got = ob.state_dict()["state"]
    assert got.keys() == want.keys()
    for k, entry in want.items():
        moments = [n for n, v in entry.items() if isinstance(v, torch.Tensor) and n != "step"]
        assert moments and set(got[k]) == set(entry), (k, set(got[k]))
        for n in moments:
            assert got[k][n].dtype == torch.float32 and torch.equal(got[k][n], entry[n]), (k, n)
            assert float(got[k][n].abs().max()) < 10.0  # (values, not the codes 0...255)


def test_an_optkern_torch_target_still_gets_the_codes(tmp_path):
    ma = _model()
    oa = okt.Adam(ma.parameters(), lr=1e-2, state_dtype="int8")
    _train(ma, oa, 3, seed=1)
    optkern.save(tmp_path / "c.npz", opt=oa, model=ma)
    mb = _model()
    ob = okt.Adam(mb.parameters(), lr=1e-2, state_dtype="int8")
    optkern.load(tmp_path / "c.npz", opt=ob, model=mb)
    sa, sb = oa.state_dict()["state"], ob.state_dict()["state"]
    for k in sa:
        for n, v in sa[k].items():
            if isinstance(v, torch.Tensor):
                assert v.dtype == sb[k][n].dtype and torch.equal(v, sb[k][n]), (k, n)
    _train(ma, oa, 2, seed=5)
    _train(mb, ob, 2, seed=5)
    for a, b in zip(ma.parameters(), mb.parameters()):
        assert np.array_equal(a.detach().numpy(), b.detach().numpy())
