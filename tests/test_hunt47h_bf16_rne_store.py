"""The step's bf16 param store to nearest even (cpp/lowp_loop.hpp's store_params): with AVX512_BF16
one vcvtne2ps2bf16 per 32 values (lowp_bf16_avx512.hpp's store_bf16_rne_cvt), which reads a
subnormal as zero, so a pair of vectors holding one takes the integer rounding -- bit for bit
rules/lowp.hpp's f32_to_bf16 either way, over a sweep of float32 bit patterns (runs of subnormals,
NaNs and infinities, and the same values shuffled so that most 32-lane pairs mix them).
OPTKERN_NO_AVX512_BF16=1 pins the integer-only AVX-512 form on such a CPU."""

import os
from pathlib import Path

import numpy as np
import pytest

from child_pytest import run_pytest
from optkern import _cpu


def rne_bits(x):
    u = x.view(np.uint32).astype(np.uint64)
    out = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) & 0xFFFF
    return np.where((u & 0x7FFFFFFF) > 0x7F800000, (u >> 16) | 0x40, out).astype(np.uint16)


@pytest.mark.parametrize("shuffled", [False, True])
def test_param_rne_store_over_a_sweep_of_bit_patterns(shuffled):
    m = np.arange(0, 1 << 32, 4099, dtype=np.uint64).astype(np.uint32).view(np.float32)
    m = np.concatenate([m, np.arange(1, 3000, dtype=np.uint32).view(np.float32)])  # a long run of subnormals
    if shuffled:
        np.random.default_rng(47).shuffle(m)
    sizes = [m.size - 13, 13]  # (a partial last vector as well)
    masters = [m[: sizes[0]].copy(), m[sizes[0] :].copy()]
    grads = [np.zeros(n, np.uint16) for n in sizes]
    states = [[np.zeros(n, np.float32) for n in sizes] for _ in range(2)]
    ps = [np.zeros(n, np.uint16) for n in sizes]
    # lr 0, zero grads: the master keeps its value (x + -0), the param is its rounding
    with np.errstate(all="ignore"):
        _cpu.lowp_step(
            "adam",
            [0.0, 0.9, 0.999, 1e-8, 0.0],
            [False, False],
            ps,
            grads,
            masters,
            states,
            None,
            "bfloat16",
            "float32",
            False,
            0,
            1,
            256,
        )
    for p, w in zip(ps, masters):
        bad = np.flatnonzero(p != rne_bits(w))
        assert bad.size == 0, f"{bad.size} params differ, first masters {w[bad[:4]]!r}: {p[bad[:4]]}"


def test_the_sweep_runs_the_avx512_bf16_conversion_here():
    """Which store the sweep above pinned: on a CPU with AVX512_BF16 (and the switch not set), the
    conversion (use_avx512_bf16 in cpp/cpu_avx2.hpp: that flag and the AVX-512 loops, which
    build_info's lowp_loops names); elsewhere the sweep pins the integer rounding alone, said here."""
    if os.environ.get("OPTKERN_NO_AVX512_BF16") == "1":
        pytest.skip("OPTKERN_NO_AVX512_BF16=1: the integer-only AVX-512 form ran, by request")
    cpuinfo = Path("/proc/cpuinfo")
    flags = cpuinfo.read_text().split() if cpuinfo.exists() else []
    if "avx512_bf16" not in flags:
        pytest.skip("no AVX512_BF16 on this CPU: the sweep pinned the integer rounding, not vcvtne2ps2bf16")
    assert _cpu.build_info()["lowp_loops"].startswith("avx512"), _cpu.build_info()


@pytest.mark.spawns
def test_without_avx512_bf16_too():
    here = Path(__file__).parent
    tests = [__file__, str(here / "test_hunt37_lowp_bf16.py")]
    r = run_pytest(tests, {"OPTKERN_NO_AVX512_BF16": "1"}, "not without_avx512_bf16")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert " passed" in r.stdout
