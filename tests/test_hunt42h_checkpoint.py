"""optkern.load of a checkpoint whose arrays are stored big-endian (written on a big-endian machine,
or holding a byte-swapped array): the values restore into native targets -- arrays, optimizers,
torch modules and optimizers -- as the same file's little-endian form does."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

import optkern
import optkern.optim as O


def _to_big_endian(path) -> None:
    """Rewrite ``path`` as a big-endian machine writes it: every multi-byte array in '>' order, the
    metadata's dtypes and checksums with it."""
    with np.load(path) as z:
        members = {k: z[k] for k in z.files}
    meta = json.loads(members["meta"].tobytes())
    for k, spec in enumerate(meta["arrays"]):
        a = members[f"a{k}"]
        if a.dtype.itemsize > 1:
            a = a.astype(a.dtype.newbyteorder(">"))
        members[f"a{k}"] = a
        spec["dtype"] = a.dtype.str
        spec["sha256"] = hashlib.sha256(np.ascontiguousarray(a).data).hexdigest()
    raw = json.dumps(meta).encode()
    members["meta"] = np.frombuffer(raw, np.uint8)
    members["meta_sha256"] = np.frombuffer(hashlib.sha256(raw).hexdigest().encode(), np.uint8)
    np.savez(path, **members)


def test_a_big_endian_file_restores_arrays_and_optimizers(tmp_path):
    path = str(tmp_path / "ck.npz")
    ps = [np.ones(3, np.float32), np.full((2, 2), 2.0, np.float32)]
    opt = O.Adam(ps, lr=0.1)
    opt.step([np.ones(3, np.float32), np.ones((2, 2), np.float32)])
    w = np.arange(5.0)
    optkern.save(path, opt=opt, w=w, i=np.arange(4, dtype=np.int32))
    _to_big_endian(path)
    out = optkern.load(path)
    assert out["w"].dtype == np.float64 and out["w"].dtype.isnative
    np.testing.assert_array_equal(out["w"], w)
    np.testing.assert_array_equal(out["i"], np.arange(4))
    target = np.zeros(5)
    opt2 = O.Adam([np.ones(3, np.float32), np.full((2, 2), 2.0, np.float32)], lr=0.1)
    optkern.load(path, opt=opt2, w=target)
    np.testing.assert_array_equal(target, w)
    np.testing.assert_equal(opt2.state_dict(), opt.state_dict())


def test_a_saved_byte_swapped_array_restores_into_a_native_one(tmp_path):
    path = str(tmp_path / "ck.npz")
    optkern.save(path, w=np.arange(3, dtype=">f4"))
    target = np.zeros(3, np.float32)
    optkern.load(path, w=target)
    np.testing.assert_array_equal(target, [0.0, 1.0, 2.0])


def test_a_big_endian_file_restores_torch_targets(tmp_path):
    torch = pytest.importorskip("torch")
    path = str(tmp_path / "ck.npz")
    torch.manual_seed(0)
    m = torch.nn.Linear(2, 1)
    opt = torch.optim.Adam(m.parameters(), lr=0.1)
    m(torch.ones(2)).sum().backward()
    opt.step()
    optkern.save(path, m=m, opt=opt)
    _to_big_endian(path)
    m2 = torch.nn.Linear(2, 1)
    opt2 = torch.optim.Adam(m2.parameters(), lr=0.1)
    optkern.load(path, m=m2, opt=opt2)
    for k, v in m.state_dict().items():
        assert torch.equal(m2.state_dict()[k], v)
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])


# ---- a failed load leaves the groups a scheduler drives as they were -----------------------------


def _scheduled(lr=0.1):
    from optkern import schedules as S

    ps = [np.ones(3, np.float32)]
    opt = O.Adam(ps, lr=lr)
    return opt, S.cosine(0.1, T_max=10).attach(opt), S.momentum_scheduler(opt, S.constant(0.8))


def test_a_failed_load_leaves_a_hand_set_value_of_a_scheduled_group(tmp_path):
    from optkern import swa

    path = str(tmp_path / "ck.npz")
    opt, sched, mom = _scheduled()
    for _ in range(3):
        opt.step([np.ones(3, np.float32)])
        sched.step()
        mom.step()
    optkern.save(path, sched=sched, mom=mom, avg=swa.AveragedParams([np.ones(3, np.float32)]))
    opt2, sched2, mom2 = _scheduled()
    opt2.param_groups[0]["lr"] = 0.5  # set by hand (or by another scheduler) after the schedule's write
    opt2.param_groups[0]["betas"] = (0.7, 0.999)
    groups = [{k: v for k, v in g.items() if k != "params"} for g in opt2.param_groups]
    states = (sched2.state_dict(), mom2.state_dict(), sched2.get_last_lr(), mom2.get_last_lr())
    bad = swa.AveragedParams([np.ones(4, np.float32)])  # the saved average does not fit: its load fails
    with pytest.raises(ValueError, match="avg"):
        optkern.load(path, sched=sched2, mom=mom2, avg=bad)
    assert [{k: v for k, v in g.items() if k != "params"} for g in opt2.param_groups] == groups
    assert (sched2.state_dict(), mom2.state_dict(), sched2.get_last_lr(), mom2.get_last_lr()) == states
    # and a load that succeeds still writes the schedules' values
    optkern.load(path, sched=sched2, mom=mom2)
    assert opt2.param_groups[0]["lr"] == sched.get_last_lr()[0] and opt2.param_groups[0]["betas"][0] == 0.8


def test_a_scheduler_whose_key_was_reassigned_is_named_whatever_its_place(tmp_path):
    path = str(tmp_path / "ck.npz")
    opt, sched, _ = _scheduled()
    optkern.save(path, sched=sched, w=np.zeros(2))
    opt2, sched2, _ = _scheduled()
    sched2.key = "momentum"  # (Adam's groups have none)
    for order in (("sched", "w"), ("w", "sched")):
        targets = {"sched": sched2, "w": np.zeros(2)}
        with pytest.raises(ValueError, match="key: this Scheduler was built to drive 'lr'"):
            optkern.load(path, **{k: targets[k] for k in order})
