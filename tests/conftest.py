"""Hypothesis profiles for the fuzz suite (tests/test_fuzz_*.py, marked ``fuzz``).

``fast`` (the normal run): 5 derandomized examples per test (every test and parametrization, a few
seconds in all), quick and deterministic; the long profile covers the draws. ``fuzz`` (selected
with ``-m fuzz``, as CI's fuzz stage does): many examples from a seed; ``OPTKERN_FUZZ_EXAMPLES``
sets how many per test (CI sizes it to ~1.5 minutes).

The seed: ``--hypothesis-seed=N``, else ``OPTKERN_FUZZ_SEED`` (an integer, or ``random`` for a fresh
one), else Hypothesis draws one. The seed in use is printed at the end, and the long profile keeps
no example database, so the seed alone replays a run (a database in the working directory would
replay an old failure under every seed).
"""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import HealthCheck, core, settings

# The tests' mid-size arrays (64K-1M elements) run the parallel code paths, as they did before the
# bound was measured: on a VM whose idle vCPUs halt it is ~1M work units and they would run on one
# thread (cpp/parallel_cost.cpp; tests/test_threads.py checks the measured bound itself).
os.environ.setdefault("OPTKERN_SERIAL_BELOW", "32768")

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("fast", max_examples=5, derandomize=True, database=None, print_blob=True, **_common)
settings.register_profile(
    "fuzz",
    max_examples=int(os.environ.get("OPTKERN_FUZZ_EXAMPLES", "600")),
    database=None,
    print_blob=True,
    **_common,
)


def _fuzz_selected(config) -> bool:
    markexpr = config.getoption("markexpr", "") or ""
    return "fuzz" in markexpr and "not fuzz" not in markexpr


def pytest_configure(config):
    fuzz = _fuzz_selected(config)
    settings.load_profile("fuzz" if fuzz else "fast")
    env = os.environ.get("OPTKERN_FUZZ_SEED", "").strip()
    if fuzz and env and config.getoption("--hypothesis-seed", None) is None:
        # what --hypothesis-seed does (the plugin sets the same global)
        core.global_force_seed = random.getrandbits(32) if env == "random" else int(env)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """The seed of a long run, last (also under -q), to replay it with OPTKERN_FUZZ_SEED."""
    if _fuzz_selected(config):
        seed = core.global_force_seed
        terminalreporter.write_line(f"optkern fuzz seed: {seed if seed is not None else 'none (hypothesis drew one)'}")


@pytest.fixture
def float64_default():
    """torch's default dtype float64 for the test: torch keeps step counters and NAdam's mu_product
    in its default dtype, so the torch side of a float64 comparison is as exact as optkern's
    (tests/test_torch_scalar_dtype.py covers the float32 default)."""
    torch = pytest.importorskip("torch")
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)
