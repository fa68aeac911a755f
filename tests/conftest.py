"""Hypothesis profiles for the fuzz suite (tests/test_fuzz_*.py, marked ``fuzz``).

``fast`` (the normal run): a few derandomized examples per test, so the suite stays quick and
deterministic. ``fuzz`` (selected with ``-m fuzz``, as CI's fuzz stage does): many examples from a
fresh random seed; ``OPTKERN_FUZZ_EXAMPLES`` sets how many per test (CI sizes it to ~3 minutes).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("fast", max_examples=12, derandomize=True, database=None, print_blob=True, **_common)
settings.register_profile(
    "fuzz", max_examples=int(os.environ.get("OPTKERN_FUZZ_EXAMPLES", "600")), print_blob=True, **_common
)


def pytest_configure(config):
    markexpr = config.getoption("markexpr", "") or ""
    settings.load_profile("fuzz" if "fuzz" in markexpr and "not fuzz" not in markexpr else "fast")
