"""optkern.random: Philox4x32-10 against the Random123 known answers, an
independent Python Philox, the documented element mapping, and statistics."""

import numpy as np
import pytest

from optkern import _backend
from optkern import random as okr

M32 = (0xD2511F53, 0xCD9E8D57)
W32 = (0x9E3779B9, 0xBB67AE85)
M64 = (0xD2E7470EE14C6C93, 0xCA5A826395121157)
W64 = (0x9E3779B97F4A7C15, 0xBB67AE8584CAA73B)


def philox_ref(ctr, key, bits=32, rounds=10):
    """Textbook Philox4xW-R on Python ints (Salmon et al. 2011, fig. 2)."""
    M, W = (M32, W32) if bits == 32 else (M64, W64)
    mask = (1 << bits) - 1
    c, k = list(ctr), list(key)
    for _ in range(rounds):
        p0, p1 = M[0] * c[0], M[1] * c[2]
        c = [(p1 >> bits) ^ c[1] ^ k[0], p1 & mask, (p0 >> bits) ^ c[3] ^ k[1], p0 & mask]
        k = [(k[0] + W[0]) & mask, (k[1] + W[1]) & mask]
    return c


# Random123 kat_vectors, philox4x32 10 (counter words, key words, output words).
KAT32 = [
    ([0, 0, 0, 0], [0, 0], [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]),
    ([0xFFFFFFFF] * 4, [0xFFFFFFFF] * 2, [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]),
    (
        [0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344],
        [0xA4093822, 0x299F31D0],
        [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1],
    ),
]


@pytest.mark.parametrize("ctr,key,want", KAT32)
def test_known_answers(ctr, key, want):
    assert philox_ref(ctr, key) == want
    assert list(_backend.cpu.philox4x32_10(ctr, key)) == want


def test_reference_structure_matches_numpy_philox4x64():
    # numpy.random.Philox is Philox4x64-10 (64-bit words), not 4x32: no raw
    # output of it equals a 4x32 word. It still checks our round structure:
    # the same textbook code at 64 bits reproduces numpy's random_raw, which
    # increments the 256-bit counter before each block.
    rng = np.random.default_rng(0)
    for _ in range(3):
        key = [int(k) for k in rng.integers(0, 2**63, 2, dtype=np.uint64)]
        ctr = [int(c) for c in rng.integers(0, 2**63, 4, dtype=np.uint64)]
        bg = np.random.Philox(key=np.array(key, dtype=np.uint64))
        st = bg.state
        st["state"]["counter"] = np.array(ctr, dtype=np.uint64)
        bg.state = st
        got = [int(v) for v in bg.random_raw(4)]
        assert got == philox_ref([ctr[0] + 1, *ctr[1:]], key, bits=64)


def words_ref(n, seed, offset):
    """The documented mapping: element i -> lane (offset+i)%4 of block (offset+i)//4."""
    out = []
    for g in range(offset, offset + n):
        b = g // 4
        out.append(philox_ref([b & 0xFFFFFFFF, b >> 32, 0, 0], [seed & 0xFFFFFFFF, seed >> 32])[g % 4])
    return np.array(out, dtype=np.uint64)


@pytest.mark.parametrize(
    "n,seed,offset", [(1, 0, 0), (7, 1, 0), (13, 12345, 3), (9, 2**64 - 1, 2**40 + 1), (6, 2**33 + 5, 2**64 - 6)]
)
def test_mapping_float32_and_signs(n, seed, offset):
    w = words_ref(n, seed, offset)
    u = okr.uniform(n, seed=seed, offset=offset)
    assert u.dtype == np.float32
    np.testing.assert_array_equal(u, ((w >> 8).astype(np.float64) * 2.0**-24).astype(np.float32))
    for dt in (np.float32, np.float64):
        s = okr.rademacher((n,), seed=seed, offset=offset, dtype=dt)
        np.testing.assert_array_equal(s, np.where(w >> 31, -1.0, 1.0).astype(dt))


# Slices of one 70001-element draw: the start, and both sides of the 65536-element chunk boundary.
CHUNK_SLICES = [(0, 1031), (4090, 4100), (65525, 65549), (69990, 70001)]  # word batches of 4096, chunks of 65536


def test_uniform_across_the_chunk_boundary_matches_reference():
    u = okr.uniform(70001, seed=123, offset=3)
    assert u.dtype == np.float32 and u.shape == (70001,)
    for lo, hi in CHUNK_SLICES:
        w = words_ref(hi - lo, 123, 3 + lo)
        want = ((w >> 8).astype(np.float64) * 2.0**-24).astype(np.float32)
        np.testing.assert_array_equal(u[lo:hi], want, err_msg=f"[{lo}:{hi}]")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_rademacher_across_the_chunk_boundary_matches_reference(dtype):
    s = okr.rademacher(70001, seed=123, offset=3, dtype=dtype)
    assert s.dtype == dtype and s.shape == (70001,)
    for lo, hi in CHUNK_SLICES:
        w = words_ref(hi - lo, 123, 3 + lo)
        np.testing.assert_array_equal(s[lo:hi], np.where(w >> 31, -1.0, 1.0).astype(dtype), err_msg=f"[{lo}:{hi}]")


def float64_ref(n, seed, offset):
    """Element g takes words 2 (g % 2), 2 (g % 2) + 1 of block g // 2: 27 + 26 bits."""
    want = []
    for g in range(offset, offset + n):
        b = g // 2
        r = philox_ref([b & 0xFFFFFFFF, b >> 32, 0, 0], [seed & 0xFFFFFFFF, seed >> 32])
        a, c = r[2 * (g % 2)], r[2 * (g % 2) + 1]
        want.append(((a >> 5) * 2**26 + (c >> 6)) * 2.0**-53)
    return np.array(want)


@pytest.mark.parametrize(
    "n,seed,offset", [(1, 3, 0), (5, 7, 1), (8, 99, 2**50 + 3), (7, 11, 2**63 - 3), (9, 2**64 - 1, 2**64 - 9)]
)
def test_mapping_float64(n, seed, offset):
    """Including blocks past 2**62 (the top of a 64-bit word index, which the float64 stream passes)."""
    np.testing.assert_array_equal(
        okr.uniform(n, seed=seed, offset=offset, dtype=np.float64), float64_ref(n, seed, offset)
    )


def test_float64_across_word_batches_and_chunks_matches_reference():
    """The CPU makes the words 4096 at a time (2048 float64 elements) in chunks of 65536 elements."""
    u = okr.uniform(70001, seed=321, offset=5, dtype=np.float64)
    for lo, hi in [(0, 9), (2040, 2056), (4090, 4100), (65530, 65545), (69990, 70001)]:
        np.testing.assert_array_equal(u[lo:hi], float64_ref(hi - lo, 321, 5 + lo), err_msg=f"[{lo}:{hi}]")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_offset_continues_the_stream(dtype):
    full = okr.uniform(100_003, seed=42, dtype=dtype)
    for k in (1, 2, 3, 4, 65537):
        np.testing.assert_array_equal(okr.uniform(100_003 - k, seed=42, offset=k, dtype=dtype), full[k:])
    assert okr.uniform((3, 0, 2), seed=1).shape == (3, 0, 2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_statistics(dtype):
    n = 1 << 20
    u = okr.uniform((1024, 1024), seed=2026, dtype=dtype).ravel().astype(np.float64)
    assert u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 5 * np.sqrt(1 / 12 / n)
    assert abs(u.var() - 1 / 12) < 5 * np.sqrt(1 / 180 / n)
    hist = np.bincount((u * 16).astype(int), minlength=16)
    chi2 = ((hist - n / 16) ** 2 / (n / 16)).sum()
    assert chi2 < 50  # 15 degrees of freedom: p < 1e-5 above this
    s = okr.rademacher(n, seed=7, dtype=dtype)
    assert set(np.unique(s)) == {-1.0, 1.0}
    assert abs(s.mean()) < 5 / np.sqrt(n)
    # neighbours and other seeds are uncorrelated
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 5 / np.sqrt(n)
    v = okr.uniform(n, seed=2027, dtype=dtype)
    assert abs(np.corrcoef(u, v)[0, 1]) < 5 / np.sqrt(n)


def test_bad_arguments():
    with pytest.raises(ValueError, match="seed"):
        okr.uniform(3, seed=-1)
    with pytest.raises(ValueError, match="seed"):
        okr.uniform(3, seed=2**64)
    with pytest.raises(TypeError, match="seed"):
        okr.uniform(3, seed=1.5)
    with pytest.raises(ValueError, match="offset"):
        okr.uniform(3, seed=1, offset=2**64 - 2)
    with pytest.raises(TypeError, match="dtype"):
        okr.rademacher(3, seed=1, dtype=np.int32)
    with pytest.raises(ValueError, match="shape"):
        okr.uniform((2, -1), seed=1)
    with pytest.raises(TypeError, match="like"):
        okr.uniform(3, seed=1, like=[1.0])
    ro = np.zeros(4, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        _backend.cpu.random_uniform_(ro, 1, 0)
    with pytest.raises(TypeError, match="float32 or float64"):
        _backend.cpu.random_uniform_(np.zeros(4, np.int64), 1, 0)


def _cupy():
    cp = pytest.importorskip("cupy", reason="CuPy is not installed: CUDA random tests skipped")
    if not _backend.cuda_built():
        pytest.skip("optkern was built without the CUDA module")
    if _backend.cuda_module().device_count() == 0:
        pytest.skip("no CUDA device")
    return cp


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,offset", [(1, 0), (1027, 3), (100_001, 2**40 + 1)])
def test_cuda_matches_cpu(dtype, n, offset):
    cp = _cupy()
    like = cp.empty(1)
    for fn in (okr.uniform, okr.rademacher):
        g = fn(n, seed=123456789, offset=offset, dtype=dtype, like=like)
        assert isinstance(g, cp.ndarray)
        np.testing.assert_array_equal(cp.asnumpy(g), fn(n, seed=123456789, offset=offset, dtype=dtype))
