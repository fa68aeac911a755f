"""Issue 17: the L-BFGS push sums its row products in 64-byte lanes (cpp/lbfgs_row_dots.hpp): one zmm a
sum under AVX-512 (five rows a pass), two ymm halves without it (three rows a pass), the same bits.
On an AVX-512 machine the push-order and placement tests ran the zmm form; here they rerun with
OPTKERN_NO_AVX512=1, which runs the halves (the x86-64-v3 clone on such a CPU), and the result of one
push is compared bit for bit across the two forms and 1 / 3 threads."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from child_pytest import run_pytest
from optkern import _backend

HERE = Path(__file__).parent


def _loops() -> str:
    return str(_backend.cpu.build_info()["lowp_loops"])


def _needs_avx512() -> None:
    if _loops() not in ("avx512", "avx512-vbmi"):
        pytest.skip(f"no AVX-512 here ({_loops()}): the tests above already ran the ymm halves")


def test_order_and_placement_tests_pin_the_ymm_halves_too():
    _needs_avx512()
    env = dict(os.environ, OPTKERN_NO_AVX512="1")
    probe = "from optkern import _backend; print(_backend.cpu.build_info()['lowp_loops'])"
    r = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "avx2", r.stdout + r.stderr  # (the switch took: the halves run)
    tests = [str(HERE / "test_hunt50f_lbfgs_push_order.py"), str(HERE / "test_hunt51b_lbfgs_alignment.py")]
    r = run_pytest(tests, {"OPTKERN_NO_AVX512": "1"}, "")  # (-k "": every test)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert " passed" in r.stdout


_PUSH = """
import sys, numpy as np
from optkern import _backend, set_num_threads
n, k, dt = int(sys.argv[1]), int(sys.argv[2]), np.dtype(sys.argv[3])
set_num_threads(int(sys.argv[4]))
rng = np.random.default_rng(n + 7 * k)
S = [rng.standard_normal(n).astype(dt) for _ in range(k)]
Y = [rng.standard_normal(n).astype(dt) for _ in range(k)]
g, pg, d = (rng.standard_normal(n).astype(dt) for _ in range(3))
sn, yn, out = np.empty(n, dt), np.empty(n, dt), np.full(5 * k + 4, np.nan)
_backend.cpu.lbfgs_push_(S, Y, sn, yn, g, pg, d, 0.37, out)
sys.stdout.write(out.tobytes().hex())
"""


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n,k", [(1, 1), (17, 4), (1023, 6), (70001, 10), (200003, 13)])
def test_zmm_and_ymm_forms_give_the_same_bits(n, k, dtype):
    """k = 10 / 13 / 6 / 4: remainders 0 / 3 / 1 / 4 of five-row passes and 1 / 1 / 0 / 1 of three."""
    _needs_avx512()
    outs = set()
    for switch in ("0", "1"):
        for threads in ("1", "3"):
            env = dict(os.environ, OPTKERN_NO_AVX512=switch)
            args = [sys.executable, "-c", _PUSH, str(n), str(k), dtype, threads]
            r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, r.stderr[-2000:]
            outs.add(r.stdout)
    assert len(outs) == 1
    assert not np.isnan(np.frombuffer(bytes.fromhex(outs.pop()))).any()
