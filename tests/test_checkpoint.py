"""optkern.save / optkern.load: round trips, exact resumption, and one clear error for every damaged file."""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile

import numpy as np
import pytest

import optkern
import optkern.optim as O
from optkern import checkpoint as C
from optkern import schedules as S
from optkern._checkpoint_kinds import _KINDS

CASES = [
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01)),
    ("AdagradNorm", dict(lr=0.1)),
    ("RMSprop", dict(lr=0.01, centered=True, momentum=0.5)),
    ("Adadelta", dict()),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("AdamW", dict(lr=0.01)),
    ("NAdam", dict(lr=0.01)),
]
SHAPES = ((33, 3), (7,), (1,))


def _setup(name, hp, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    opt = getattr(O, name)([{"params": params[:1]}, {"params": params[1:], "lr": 0.02}], **hp)
    sched = S.Scheduler(opt, S.warmup_cosine(1.0, warmup_steps=3, total_steps=20), relative=True)
    return params, opt, sched


def _read_bytes(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _write_bytes(path, data) -> None:
    with open(path, "wb") as f:
        f.write(data)


def _grads(step, dtype=np.float32):
    rng = np.random.default_rng(1000 + step)
    return [rng.standard_normal(s).astype(dtype) for s in SHAPES]


def _train(params, opt, sched, start, stop):
    for t in range(start, stop):
        opt.step(_grads(t))
        sched.step()


def _canon(x):
    """A comparable form of a state: arrays as (dtype, shape, bytes), containers recursively, types kept."""
    if isinstance(x, np.ndarray):
        return ("array", x.dtype.str, x.shape, x.tobytes())
    if isinstance(x, dict):
        return ("dict", tuple((type(k).__name__, k, _canon(v)) for k, v in x.items()))
    if isinstance(x, (list, tuple)):
        return (type(x).__name__, tuple(_canon(v) for v in x))
    return (type(x).__name__, repr(x))


def _state_bytes(opt):
    return _canon(
        (opt.state_dict()["state"], [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups])
    )


@pytest.mark.parametrize("name,hp", CASES, ids=[c[0] for c in CASES])
def test_save_load_in_place_resumes_bitwise(name, hp, tmp_path):
    params, opt, sched = _setup(name, hp)
    _train(params, opt, sched, 0, 12)

    params2, opt2, sched2 = _setup(name, hp)
    _train(params2, opt2, sched2, 0, 5)
    path = optkern.save(tmp_path / "ck.npz", opt=opt2, sched=sched2, params=params2, step=5)
    params3, opt3, sched3 = _setup(name, dict(hp, lr=0.5), seed=7)  # other values everywhere
    ckpt = optkern.load(path, opt=opt3, sched=sched3, params=params3)
    assert ckpt["step"] == 5
    _train(params3, opt3, sched3, 5, 12)
    assert all(np.array_equal(a, b) for a, b in zip(params, params3))
    assert _state_bytes(opt) == _state_bytes(opt3)
    assert sched.state_dict() == sched3.state_dict()


def test_load_returns_plain_data(tmp_path):
    params, opt, sched = _setup("Adam", dict(amsgrad=True))
    _train(params, opt, sched, 0, 3)
    data = {
        "epoch": 3,
        "loss": float("nan"),
        "best": float("-inf"),
        "name": "run-1",
        "none": None,
        "flag": True,
        "pair": (1, 2.5),
        "by_index": {0: "a", "1": "b"},
        "nested": [np.arange(3), {"__x": np.ones((2, 2))}],
        "empty": np.zeros((0, 4), np.float32),
        "scalar": np.float64(2.5),
        "b": np.array([True, False]),
        "zero_d": np.array(0.25, np.float32),  # a capturable run's step and mu_product are 0-d
    }
    optkern.save(tmp_path / "ck", opt=opt, w=params[0], path="any name works", **data)
    got = optkern.load(tmp_path / "ck")  # the path as given: no .npz appended
    assert not os.path.exists(tmp_path / "ck.npz")
    assert got["epoch"] == 3 and np.isnan(got["loss"]) and got["best"] == -np.inf and got["name"] == "run-1"
    assert got["path"] == "any name works"
    assert got["none"] is None and got["flag"] is True and got["pair"] == (1, 2.5)
    assert got["by_index"] == {0: "a", "1": "b"} and got["scalar"] == 2.5
    assert np.array_equal(got["nested"][0], np.arange(3)) and np.array_equal(got["nested"][1]["__x"], np.ones((2, 2)))
    assert got["empty"].shape == (0, 4) and got["empty"].dtype == np.float32 and got["b"].dtype == np.bool_
    assert got["zero_d"].shape == () and got["zero_d"] == np.float32(0.25)
    assert np.array_equal(got["w"], params[0]) and got["w"].dtype == np.float32
    sd = opt.state_dict()
    assert _canon(got["opt"]) == _canon(sd)  # int state keys, tuple betas, arrays: as they were
    fresh = O.Adam([{"params": [params[0].copy()]}, {"params": [p.copy() for p in params[1:]]}])
    fresh.load_state_dict(got["opt"])  # the other way to apply it
    assert _state_bytes(fresh) == _state_bytes(opt)


def test_file_is_a_plain_npz_with_json_metadata(tmp_path):
    _, opt, _ = _setup("SGD", dict(momentum=0.9))
    opt.step(_grads(0))
    path = optkern.save(tmp_path / "ck.npz", opt=opt)
    with np.load(path, allow_pickle=False) as z:
        raw = z["meta"].tobytes()
        assert hashlib.sha256(raw).hexdigest() == z["meta_sha256"].tobytes().decode()
        meta = json.loads(raw)
        assert meta["format"] == C.FORMAT and meta["version"] == C.VERSION
        assert meta["objects"]["opt"]["kind"] == "optimizer" and meta["objects"]["opt"]["type"] == "SGD"
        for k, spec in enumerate(meta["arrays"]):
            assert hashlib.sha256(z[f"a{k}"].tobytes()).hexdigest() == spec["sha256"]
    assert [f for f in os.listdir(tmp_path)] == ["ck.npz"]  # no temporary file left


# ---- damaged files: one ValueError naming the file, and the optimizer untouched ----------------


@pytest.fixture
def saved(tmp_path):
    params, opt, sched = _setup("Adam", dict(amsgrad=True))
    _train(params, opt, sched, 0, 3)
    path = optkern.save(tmp_path / "ck.npz", opt=opt, params=params)
    target_params, target, _ = _setup("Adam", dict(amsgrad=True), seed=5)
    _train(target_params, target, S.Scheduler(target, 1.0, relative=True), 0, 2)
    return path, target, target_params


def _rewrite(path, change):
    """Copy the npz member by member, ``change(name, bytes) -> bytes | None`` (None drops it); valid zip CRCs."""
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    with zipfile.ZipFile(path, "w") as z:
        for n, b in members.items():
            b = change(n, b)
            if b is not None:
                z.writestr(n, b)


def _npy(a):
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def _meta_member(meta, name="meta.npy"):
    raw = json.dumps(meta).encode()
    return {
        name: _npy(np.frombuffer(raw, np.uint8)),
        "meta_sha256.npy": _npy(np.frombuffer(hashlib.sha256(raw).hexdigest().encode(), np.uint8)),
    }


def _read_meta(path):
    with np.load(path, allow_pickle=False) as z:
        return json.loads(z["meta"].tobytes())


def _corruptions():
    def truncate(frac):
        def f(path):
            data = _read_bytes(path)
            _write_bytes(path, data[: int(len(data) * frac)])

        return f, "truncated or not an .npz file"

    def flip_array_byte(path):
        data = bytearray(_read_bytes(path))
        with zipfile.ZipFile(path) as z:
            info = z.getinfo("a0.npy")
        data[info.header_offset + 30 + len("a0.npy") + 128 + 5] ^= 0x10  # inside a0's data (past the npy header)
        _write_bytes(path, bytes(data))

    def swap_array(path):  # same shape and dtype, other values, consistent zip: only our checksum sees it
        def change(n, b):
            if n == "a0.npy":
                a = np.load(io.BytesIO(b))
                a.flat[0] += 1
                return _npy(a)
            return b

        _rewrite(path, change)

    def alter_meta(path):  # one character of the metadata changed, its checksum not
        def change(n, b):
            return b.replace(b'"amsgrad":true', b'"amsgrad":fals') if n == "meta.npy" else b

        _rewrite(path, change)

    def version(v):
        def f(path):
            meta = _read_meta(path)
            meta["version"] = v
            new = _meta_member(meta)
            _rewrite(path, lambda n, b: new.get(n, b))

        return f

    def foreign_format(path):
        meta = _read_meta(path)
        meta["format"] = "something-else"
        new = _meta_member(meta)
        _rewrite(path, lambda n, b: new.get(n, b))

    def drop_member(path):
        _rewrite(path, lambda n, b: None if n == "a1.npy" else b)

    def extra_member(path):
        _rewrite(path, lambda n, b: b)
        with zipfile.ZipFile(path, "a") as z:
            z.writestr("evil.npy", _npy(np.zeros(3)))

    def shape_lie(path):  # a member whose shape differs from the metadata (consistent checksums otherwise)
        meta = _read_meta(path)
        meta["arrays"][0]["shape"] = [1] + meta["arrays"][0]["shape"]
        new = _meta_member(meta)
        _rewrite(path, lambda n, b: new.get(n, b))

    def object_array(path):  # a pickled member: never unpickled
        _rewrite(path, lambda n, b: _npy(np.array([{}], dtype=object)) if n == "a0.npy" else b)

    def not_npz(text):
        def f(path):
            _write_bytes(path, text)

        return f

    def npy_file(path):
        np.save(path, np.zeros(3), allow_pickle=False)
        os.replace(path + ".npy", path)

    def foreign_npz(path):
        with open(path, "wb") as f:
            np.savez(f, x=np.zeros(3))

    t50, t90, t99 = truncate(0.5), truncate(0.9), truncate(0.99)
    return [
        ("truncated-50", t50[0], t50[1]),
        ("truncated-90", t90[0], t90[1]),
        ("truncated-99", t99[0], t99[1]),
        ("truncated-to-1-byte", truncate(1e-9)[0], "truncated or not an .npz file"),
        ("empty", not_npz(b""), "truncated or not an .npz file"),
        ("flipped-array-byte", flip_array_byte, "damaged checkpoint.*CRC"),
        ("array-swapped", swap_array, "array a0 checksum mismatch"),
        ("meta-altered", alter_meta, "metadata checksum mismatch"),
        ("version-2", version(2), "format version 2 is not supported.*newer optkern"),
        ("version-0", version(0), "format version 0 is not supported"),
        ("version-str", version("1"), "format version '1' is not supported"),
        ("foreign-format", foreign_format, "not an optkern checkpoint"),
        ("member-missing", drop_member, "member 'a1' is missing"),
        ("member-extra", extra_member, "member 'evil' is unexpected"),
        ("shape-differs-from-meta", shape_lie, "array a0 is .* the metadata says"),
        ("pickled-member", object_array, "damaged checkpoint.*allow_pickle"),
        ("text-file", not_npz(b"hello, not a checkpoint\n"), "truncated or not an .npz file"),
        ("npy-file", npy_file, "a single .npy array"),
        ("foreign-npz", foreign_npz, "no 'meta' member"),
    ]


CORRUPT = _corruptions()


@pytest.mark.parametrize("cid,corrupt,match", CORRUPT, ids=[c[0] for c in CORRUPT])
def test_damaged_file_gives_one_clear_error_and_changes_nothing(saved, cid, corrupt, match):
    path, target, target_params = saved
    corrupt(path)
    before = _state_bytes(target), _canon(target_params)
    with pytest.raises(ValueError, match=match) as err:
        optkern.load(path, opt=target, params=target_params)
    assert str(err.value).startswith(str(path) + ": ")
    with pytest.raises(ValueError, match=match):
        optkern.load(path)
    assert (_state_bytes(target), _canon(target_params)) == before


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        optkern.load(tmp_path / "nothing.npz")


# ---- restoring into targets: checked first, all or nothing ----------------------------------


def test_mismatched_targets_are_refused_before_anything_changes(saved, tmp_path):
    path, target, target_params = saved
    before = _state_bytes(target), _canon(target_params)
    cases = [
        (dict(opt=target, nope=target_params), r"has no entry 'nope' \(it holds 'opt', 'params'\)"),
        (dict(opt=O.SGD([p.copy() for p in target_params]), params=target_params), "saved from an Adam, not an SGD"),
        (dict(opt=target, params=target_params[:2]), r"\['params'\]: expected a saved sequence of 2 items"),
        (dict(opt=target, params=[p.astype(np.float64) for p in target_params]), r"\['params'\]\[0\]: saved array"),
        (dict(params=target_params, opt=target_params[0]), "holds a saved optimizer"),
    ]
    for targets, match in cases:
        with pytest.raises((ValueError, TypeError), match=match):
            optkern.load(path, **targets)
        assert (_state_bytes(target), _canon(target_params)) == before
    _, opt, _ = _setup("Adam", dict(amsgrad=True))
    opt.step(_grads(0))
    optkern.save(tmp_path / "other.npz", opt=opt)
    smaller = O.Adam([np.zeros(3, np.float32)] * 1)
    with pytest.raises(ValueError, match=r"other.npz\['opt'\]: state_dict\['param_groups'\]: has 2 parameter groups"):
        optkern.load(tmp_path / "other.npz", opt=smaller)


def test_a_later_failure_rolls_back_the_earlier_targets(tmp_path):
    """The scheduler's own load fails after the optimizer was restored: the optimizer gets its state back."""
    params, opt, sched = _setup("Adam", dict(amsgrad=True))
    _train(params, opt, sched, 0, 3)
    path = optkern.save(tmp_path / "ck.npz", opt=opt, sched=sched, params=params)
    p2, opt2, _ = _setup("Adam", dict(amsgrad=True), seed=3)
    _train(p2, opt2, S.Scheduler(opt2, 1.0, relative=True), 0, 1)
    one_group = O.Adam([np.zeros(2)])  # its scheduler has 1 base value, the saved one 2
    bad_sched = S.Scheduler(one_group, 1.0, relative=True)
    before = _state_bytes(opt2), _canon(p2)
    with pytest.raises(ValueError, match="base_values"):
        optkern.load(path, opt=opt2, params=p2, sched=bad_sched)
    assert (_state_bytes(opt2), _canon(p2)) == before


def test_register_a_new_kind(tmp_path):
    class Counter:
        def __init__(self):
            self.n = 0

    C.register(
        C.Kind(
            "counter",
            lambda o: isinstance(o, Counter),
            lambda o: {"n": o.n},
            lambda o, d: None,
            lambda o, d: setattr(o, "n", d["n"]),
        )
    )
    try:
        c = Counter()
        c.n = 41
        optkern.save(tmp_path / "ck.npz", c=c)
        d = Counter()
        assert optkern.load(tmp_path / "ck.npz", c=d)["c"] == {"n": 41} and d.n == 41
    finally:
        _KINDS.pop(0)


# ---- writing: encoded first, atomic, durable --------------------------------------------------


def test_unsaveable_object_leaves_the_old_file(tmp_path):
    path = optkern.save(tmp_path / "ck.npz", x=np.arange(4))
    old = _read_bytes(path)
    with pytest.raises(TypeError, match=r"bad\[1\]: cannot save a set"):
        optkern.save(path, x=np.arange(5), bad=[1, {2}])
    with pytest.raises(TypeError, match="dict key of type tuple"):
        optkern.save(path, bad={(1, 2): 3})
    with pytest.raises(ValueError, match="nothing to save"):
        optkern.save(path)
    assert _read_bytes(path) == old and os.listdir(tmp_path) == ["ck.npz"]


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = optkern.save(tmp_path / "ck.npz", x=np.arange(4))
    old = _read_bytes(path)

    def half_then_fail(f, **members):
        f.write(b"PK\x03\x04 partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        optkern.save(path, x=np.arange(1000))
    assert _read_bytes(path) == old and os.listdir(tmp_path) == ["ck.npz"]


def test_write_is_fsynced_then_renamed_then_directory_fsynced(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append("fsync-dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "fsync-file")
        real_fsync(fd)

    def replace(a, b):
        events.append("replace")
        assert os.path.dirname(os.path.abspath(a)) == os.path.dirname(os.path.abspath(b))  # same file system
        real_replace(a, b)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    optkern.save(tmp_path / "ck.npz", x=np.arange(4))
    assert events == ["fsync-file", "replace", "fsync-dir"]


def test_cupy_like_arrays_are_saved_from_a_host_copy(tmp_path):
    """Anything CuPy-like is saved through ``.get()`` (the host copy), and loads as NumPy."""

    class ndarray(np.ndarray):  # looks like cupy.ndarray to optkern
        def get(self):
            return np.array(self)

    ndarray.__module__ = "cupy._stand_in"
    dev = np.arange(6.0).reshape(2, 3).view(ndarray)
    optkern.save(tmp_path / "ck.npz", a=dev, tree={"x": [dev]})
    got = optkern.load(tmp_path / "ck.npz")
    assert type(got["a"]) is np.ndarray and np.array_equal(got["a"], np.arange(6.0).reshape(2, 3))
    assert type(got["tree"]["x"][0]) is np.ndarray


def test_sampled_bit_flips_and_truncations_are_caught_or_harmless(tmp_path):
    """Flip a bit in bytes of a small checkpoint (and cut it there): load either raises the one
    ValueError naming the file or returns exactly the saved data (a flip in a field nobody reads)."""
    rng = np.random.default_rng(0)
    params = [rng.standard_normal(5).astype(np.float32), rng.standard_normal((2, 3)).astype(np.float32)]
    opt = O.NAdam(params, lr=0.01)
    opt.step([rng.standard_normal(p.shape).astype(np.float32) for p in params])
    path = str(optkern.save(tmp_path / "ck.npz", opt=opt, epoch=1))
    good = _read_bytes(path)
    want = _canon(optkern.load(path))
    bad = str(tmp_path / "bad.npz")
    caught = 0
    picks = np.random.default_rng(1).choice(len(good), 250, replace=False)  # of ~4 KB: bounded time
    for k in picks:
        for data in (good[:k], good[:k] + bytes([good[k] ^ (1 << (k % 8))]) + good[k + 1 :]):
            _write_bytes(bad, data)
            try:
                got = optkern.load(bad)
            except ValueError as e:
                assert str(e).startswith(bad + ": ")
                caught += 1
            else:
                assert len(data) == len(good) and _canon(got) == want
    assert caught > 1.5 * len(picks)  # every truncation, and most flips


LOWP_CASES = [
    ("Adam", dict(lr=0.01, state_dtype="int8", block_size=64)),
    ("AdamW", dict(lr=0.01, state_dtype="bfloat16")),
    ("AdamW", dict(lr=0.01, master_weights=True, stochastic_rounding=True, seed=3, state_dtype="int8")),
    ("SGD", dict(lr=0.05, momentum=0.9, state_dtype="int8")),
    ("RMSprop", dict(lr=0.01, momentum=0.5, master_weights=True, state_dtype="bfloat16")),
]


def _lowp_setup(name, hp, seed=0):
    dtype = np.float16 if hp.get("master_weights") else np.float32
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s).astype(dtype) for s in ((33, 70), (7,), (1,))]
    return params, getattr(O, name)(params, **hp)


def _lowp_train(params, opt, start, stop):
    for t in range(start, stop):
        rng = np.random.default_rng(1000 + t)
        opt.step([rng.standard_normal(p.shape).astype(p.dtype) for p in params])


@pytest.mark.parametrize("name,hp", LOWP_CASES, ids=[f"{n}-{'-'.join(map(str, h.values()))}" for n, h in LOWP_CASES])
def test_low_precision_states_resume_bitwise(name, hp, tmp_path):
    params, opt = _lowp_setup(name, hp)
    _lowp_train(params, opt, 0, 8)
    params2, opt2 = _lowp_setup(name, hp)
    _lowp_train(params2, opt2, 0, 3)
    path = optkern.save(tmp_path / "ck.npz", opt=opt2, params=params2)
    params3, opt3 = _lowp_setup(name, hp, seed=9)
    optkern.load(path, opt=opt3, params=params3)
    _lowp_train(params3, opt3, 3, 8)
    assert all(np.array_equal(a.view(np.uint8), b.view(np.uint8)) for a, b in zip(params, params3))
    assert _canon(opt.state_dict()["state"]) == _canon(opt3.state_dict()["state"])


def test_low_precision_checkpoint_loads_into_another_format(tmp_path):
    params, opt = _lowp_setup("Adam", dict(lr=0.01, state_dtype="int8"))
    _lowp_train(params, opt, 0, 3)
    path = optkern.save(tmp_path / "ck.npz", opt=opt)
    fp32 = O.Adam([p.copy() for p in params], lr=0.01)
    optkern.load(path, opt=fp32)
    assert fp32.state_dict()["state"][0]["exp_avg"].dtype == np.float32
    assert fp32.state_dict()["state"][0]["step"] == 3


def test_damaged_low_precision_state_is_refused_and_changes_nothing(tmp_path):
    params, opt = _lowp_setup("Adam", dict(lr=0.01, state_dtype="int8"))
    _lowp_train(params, opt, 0, 2)
    sd = opt.state_dict()
    sd["state"][0]["exp_avg_sq_scale"] = np.full_like(sd["state"][0]["exp_avg_sq_scale"], np.nan)
    path = optkern.save(tmp_path / "bad.npz", sd=sd)
    target_params, target = _lowp_setup("Adam", dict(lr=0.01, state_dtype="int8"), seed=4)
    _lowp_train(target_params, target, 0, 1)
    before = _canon(target.state_dict())
    with pytest.raises(ValueError, match=r"\['exp_avg_sq_scale'\]: 10 non-finite block scales"):
        target.load_state_dict(optkern.load(path)["sd"])
    assert _canon(target.state_dict()) == before


def test_bfloat16_arrays_round_trip_as_bits(tmp_path):
    bf16 = optkern.lowp.bfloat16_dtype()
    if bf16 is None:
        pytest.skip("ml_dtypes (bfloat16 arrays) not installed")
    a = np.linspace(-3, 3, 11).astype(bf16)
    path = optkern.save(tmp_path / "bf.npz", a=a)
    back = optkern.load(path)["a"]
    assert back.dtype == bf16 and np.array_equal(back.view(np.uint16), a.view(np.uint16))
    target = np.zeros(11, bf16)
    optkern.load(path, a=target)
    assert np.array_equal(target.view(np.uint16), a.view(np.uint16))
