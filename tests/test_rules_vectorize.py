"""Every optimizer rule's element loop vectorizes, without GCC having to unswitch it first.

The CPU steps are memory bound only while their loops are SIMD: a scalar loop runs at a third of
the bandwidth. GCC 12 vectorizes a select on a loop-invariant bool only after unswitching the loop
on it, which it does below a loop size only; SGD's momentum loop and RMSprop's centered momentum
loop had crossed that size and ran scalar (bench/RESULTS.md, 2026-12-01, 14th session). The rules
now test 0/1 values of T instead (rules::flag). This test compiles the real loop
(cpp/element_loops.hpp) for every rule in rules/optim.hpp and every combination of its bool
template parameters, float and double, with unswitching turned off, and reads GCC's vectorizer
dump: each loop must be vectorized. A compile-time property (no timing); it needs GCC on x86-64.
"""

from __future__ import annotations

import itertools
import platform
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "cpp" / "include" / "optkern" / "rules" / "optim.hpp"
# The flags of cpp/CMakeLists.txt, for one ISA level (no function clones), unswitching off.
FLAGS = [
    "-std=gnu++17",
    "-O3",
    "-fno-math-errno",
    "-fno-trapping-math",
    "-ffp-contract=off",
    "-march=x86-64-v3",
    "-DOPTKERN_NATIVE=1",
]


def _gcc() -> str | None:
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None or platform.machine() not in ("x86_64", "AMD64"):
        return None
    out = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
    return cxx if ("GCC" in out or "g++" in out or "Free Software Foundation" in out) else None


def vectorizer_sections(cxx: str, tmp_path: Path, src: list[str], flags: list[str]) -> list[str]:
    """GCC's vectorizer dump of the translation unit `src` (lines) compiled with FLAGS + `flags`
    against cpp/ and cpp/include/, one section a function (its name first)."""
    (tmp_path / "loops.cpp").write_text("\n".join(src) + "\n")
    dump = tmp_path / "vect.txt"
    cmd = [cxx, *FLAGS, *flags, f"-fdump-tree-vect-details={dump}"]
    cmd += ["-I", str(ROOT / "cpp"), "-I", str(ROOT / "cpp" / "include"), "-c", "loops.cpp", "-o", "loops.o"]
    p = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    return re.split(r"\n;; Function ", "\n" + dump.read_text())[1:]


def rule_templates() -> dict[str, int]:
    """Rule struct name -> number of bool template parameters, for every struct in rules/optim.hpp
    that is a rule (has kState; a bool may have a default, as Adam's UnitBc2)."""
    text = RULES.read_text()
    found = {}
    # (a rule may derive from its scalars' struct: Adam : AdamScalars<T>)
    rule = r"template <class T((?:, bool \w+(?: = \w+)?)*)> struct (\w+)(?: : [\w<>]+)? \{(.*?)\n\};"
    for m in re.finditer(rule, text, re.S):
        if "static constexpr int kState" in m.group(3):
            found[m.group(2)] = m.group(1).count("bool")
    return found


def instantiations() -> list[str]:
    """C++ type of every rule variant, float and double."""
    out = []
    for name, bools in rule_templates().items():
        for t in ("float", "double"):
            for combo in itertools.product(("false", "true"), repeat=bools):
                out.append(f"optkern::rules::{name}<{', '.join((t, *combo))}>")
    return out


def test_the_rule_list_is_complete():
    """The parse finds the six rules and their variant parameters (so the next test cannot pass
    by finding nothing)."""
    assert rule_templates() == {"Sgd": 1, "Adagrad": 0, "RMSprop": 2, "Adadelta": 0, "Adam": 2, "NAdam": 0}


@pytest.mark.spawns
def test_every_rule_loop_vectorizes_without_unswitching(tmp_path):
    cxx = _gcc()
    if cxx is None:
        pytest.skip("needs GCC on x86-64 (the vectorizer whose dump this reads)")
    rules = instantiations()
    src = ['#include "element_loops.hpp"', '#include "optkern/rules/optim.hpp"']
    for r in rules:
        t = r.split("<", 1)[1].split(",")[0].rstrip(">")
        src.append(f"template void optkern::rule_loop<{t}, {r}>({r}, {t}*, const {t}*, {t}*, {t}*, {t}*, int64_t);")
    sections = vectorizer_sections(cxx, tmp_path, src, ["-fno-unswitch-loops"])
    loops = {s.split(" (", 1)[0]: s.count("LOOP VECTORIZED") for s in sections if "rule_loop<" in s.split("\n", 1)[0]}
    assert len(loops) == len(rules), sorted(loops)
    scalar = sorted(name for name, n in loops.items() if n == 0)
    assert not scalar, f"rule loops GCC did not vectorize: {scalar}"
