"""Build optkern._cuda from cuda/*.cu as a CPU module (CUDA on the CPU, see include/cuda_runtime.h).

    python tools/cuda_emu/build.py [--out DIR] [--asan] [-j N]

Every ``kernel<<<grid, block[, shmem[, stream]]>>>(args)`` is rewritten to
``::okemu::launch(grid, block, shmem, stream, kernel, args)`` into DIR/src, and
the files are compiled as C++17 with __CUDACC__ and __CUDA_ARCH__ defined (the
device branches of the rule headers run) into DIR/optkern/_cuda<suffix>.so.
Only the units whose sources or included headers changed are recompiled (the
compiler's .d files). tools/cuda_emu/run puts DIR and the CuPy stand-in first on
the path and runs the CUDA test files against it.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import re
import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CUDA = ROOT / "cuda"
#: the emulator itself, linked into every build: the block scheduler and the launches / runtime calls
RUNTIME = (HERE / "scheduler.cpp", HERE / "runtime.cpp")


def _back_over_name(src: str, end: int) -> int:
    """Start of the kernel expression ending at ``end``: a qualified name with template arguments."""
    i = end
    while i > 0 and src[i - 1].isspace():
        i -= 1
    if src[i - 1] == ">":  # template arguments: balance <...>
        depth = 0
        while i > 0:
            i -= 1
            depth += {">": 1, "<": -1}.get(src[i], 0)
            if depth == 0:
                break
    while i > 0 and (src[i - 1].isalnum() or src[i - 1] in "_:"):
        i -= 1
    return i


def _matching_paren(src: str, open_at: int) -> int:
    depth = 0
    for i in range(open_at, len(src)):
        depth += {"(": 1, ")": -1}.get(src[i], 0)
        if depth == 0:
            return i
    raise ValueError("unbalanced parentheses after a launch")


def _split_top_level(text: str) -> list[str]:
    out, depth, cur = [], 0, []
    for ch in text:
        if ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
            continue
        depth += {"(": 1, "[": 1, "{": 1, ")": -1, "]": -1, "}": -1}.get(ch, 0)
        cur.append(ch)
    if "".join(cur).strip():
        out.append("".join(cur).strip())
    return out


def rewrite_launches(src: str, where: str = "") -> tuple[str, int]:
    """Every triple-chevron launch as a call of okemu::launch; returns the text and the count.

    A launch is named by its kernel expression, after ``where:line`` of the launch when ``where``
    (a file name) is given: the emulator counts launches per name (launch-site coverage).
    """
    count = 0
    # Last to first, so the offsets (and line numbers) of the launches before stay those of `src`.
    for at in reversed([m.start() for m in re.finditer("<<<", src)]):
        close = src.index(">>>", at)
        config = _split_top_level(src[at + 3 : close])
        if not 2 <= len(config) <= 4:
            raise ValueError(f"launch configuration with {len(config)} parts: {src[at : close + 3]!r}")
        config += ["0", "cudaStream_t(nullptr)"][len(config) - 2 :]
        start = _back_over_name(src, at)
        kernel = src[start:at].strip()
        paren = close + 3
        while src[paren].isspace():
            paren += 1
        if src[paren] != "(":
            raise ValueError(f"no argument list after the launch of {kernel}")
        end = _matching_paren(src, paren)
        args = src[paren + 1 : end].strip()
        name = f"{where}:{src.count(chr(10), 0, at) + 1} {kernel}" if where else kernel
        # A lambda, not a function pointer: template kernels deduce their arguments as in CUDA,
        # and braced arguments initialize the parameters. Each thread evaluates the arguments.
        call = f"::okemu::launch({', '.join(config)}, [&] {{ {kernel}({args}); }}, {json.dumps(name)})"
        src = src[:start] + call + src[end + 1 :]
        count += 1
    return src, count


def rewrite_opt_ins(src: str) -> str:
    """Every ``cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes)``
    as ``::okemu::opt_in_shared("kernel", bytes)``: the emulator keys the opt-in by the kernel
    expression's text, which its launches' names end with."""
    for m in reversed(list(re.finditer(r"\bcudaFuncSetAttribute\s*\(", src))):
        end = _matching_paren(src, m.end() - 1)
        args = _split_declarators(src[m.end() : end])  # (template arguments nest)
        if len(args) != 3 or args[1].strip() != "cudaFuncAttributeMaxDynamicSharedMemorySize":
            raise ValueError(f"cannot emulate {src[m.start() : end + 1]!r}")
        kernel = " ".join(args[0].split())
        src = src[: m.start()] + f"::okemu::opt_in_shared({json.dumps(kernel)}, {args[2].strip()})" + src[end + 1 :]
    return src


def _split_declarators(text: str) -> list[str]:
    """Top-level comma split that also nests template arguments (``SumK<T, K> sm[32], x``)."""
    out, depth, cur = [], 0, []
    for ch in text:
        if ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
            continue
        depth += {"(": 1, "[": 1, "{": 1, "<": 1, ")": -1, "]": -1, "}": -1, ">": -1}.get(ch, 0)
        cur.append(ch)
    out.append("".join(cur).strip())
    return out


def dynamic_shared(src: str) -> str:
    """``extern __shared__ T name[];`` (dynamic shared memory) as a pointer to the launch's buffer."""
    return re.sub(
        r"\bextern\s+__shared__\s+(?:alignas\(\d+\)\s+)?([\w:]+)\s+(\w+)\s*\[\s*\]\s*;",
        r"\1* \2 = static_cast<\1*>(::okemu::dynamic_shared());",
        src,
    )


def fresh_shared(src: str) -> tuple[str, int]:
    """After each ``__shared__`` declaration, a call of okemu::shared_fresh per declared name.

    On a GPU a block's shared memory starts undefined; here ``__shared__`` variables are function
    statics that keep the previous block's values, which would hide a read before any write. The
    call fills a variable with 0xff bytes (NaN, all-ones integers) when a block first reaches it.
    Returns the text and the number of variables.
    """
    count = 0
    out, pos = [], 0
    for m in re.finditer(r"\b__shared__\s+([^;{}()]*?);", src):
        names = []
        for k, decl in enumerate(_split_declarators(m.group(1))):
            decl = re.sub(r"\[.*\]", "", decl.split("=")[0]).strip()
            words = re.findall(r"[A-Za-z_]\w*", decl)
            if not words or (k == 0 and len(words) < 2):
                raise ValueError(f"cannot read the __shared__ declaration {m.group(0)!r}")
            names.append(words[-1])
        calls = " ".join(f"::okemu::shared_fresh(&{n}, sizeof({n}));" for n in names)
        out += [src[pos : m.end()], " ", calls]
        pos = m.end()
        count += len(names)
    out.append(src[pos:])
    return "".join(out), count


def launch_sites() -> list[str]:
    """The name of every launch in cuda/ (what the emulated module counts)."""
    sites = []
    for f in sorted([*CUDA.glob("*.cu"), *CUDA.glob("*.cuh")]):
        text = f.read_text()
        sites += re.findall(r'\[&\] \{.*?\}, "([^"]+)"\)', rewrite_launches(text, f"cuda/{f.name}")[0], re.S)
    return sites


def _flags(asan: bool) -> list[str]:
    import pybind11

    inc = [HERE / "include", ROOT / "cpp" / "include", Path(pybind11.get_include())]
    # -O2 with ASan too: the optimized build is the one the tests are meant to check.
    # -fno-strict-aliasing: kernels read float arrays as float4 (vector loads), as CUDA allows.
    flags = ["-std=c++17", "-fPIC", "-fvisibility=hidden", "-g", "-O2", "-fno-strict-aliasing"]
    # No implicit contraction, as the CPU module (cpp/CMakeLists.txt) and nvcc (--fmad=false in
    # cuda/CMakeLists.txt): every fma a rule intends is an explicit fma_t, so the CUDA tests that
    # compare with the CPU module bit for bit do not depend on where a compiler chose to fuse.
    # x86-64-v3 where the CPU has FMA: fma_t is then one instruction, not libm's software fma.
    fma = "fma" in Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else False
    flags += (["-march=x86-64-v3"] if fma else []) + ["-ffp-contract=off"]
    flags += ["-D__CUDACC__", "-D__CUDA_ARCH__=900", "-DOPTKERN_CUDA_EMULATED=1"]
    flags += ["-Wall", "-Wextra", "-Wno-unknown-pragmas", "-Wno-unused-parameter", "-Wno-attributes"]
    if asan:
        flags += ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"]
    flags += [f"-I{p}" for p in inc] + [f"-I{sysconfig.get_paths()['include']}"]
    return flags


def _depfile(obj: Path) -> Path:
    return obj.with_suffix(".d")


def _read_deps(d: Path) -> list[Path]:
    """The prerequisites in a make rule ``obj: a b \\`` as the compiler writes it (-MMD)."""
    text = d.read_text().replace("\\\n", " ")
    return [Path(w) for w in text.split(":", 1)[1].split()]


def _stale(cxx: str, src: Path, obj: Path, flags: list[str]) -> bool:
    """Whether ``obj`` is older than a file it was compiled from (its .d file lists them).

    Per unit, not per tree: a kernel fix recompiles the units that include it, not all twenty
    (each takes minutes). An object from before the .d files has its list made now (-MM: the
    preprocessor only, seconds)."""
    if not obj.exists() or os.environ.get("OKEMU_REBUILD"):
        return True
    d = _depfile(obj)
    if not d.exists() and subprocess.run([cxx, *flags, "-MM", "-MT", str(obj), "-MF", str(d), str(src)]).returncode:
        return True
    built = obj.stat().st_mtime
    return any(not f.exists() or f.stat().st_mtime >= built for f in _read_deps(d))


def _compile(cxx: str, src: Path, obj: Path, flags: list[str]) -> str | None:
    if not _stale(cxx, src, obj, flags):
        return None
    cmd = [cxx, *flags, "-MMD", "-MF", str(_depfile(obj)), "-c", str(src), "-o", str(obj)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        return f"{shlex.join(cmd)}\n{r.stdout}{r.stderr}"
    return None


def build(out: Path, asan: bool, jobs: int) -> Path:
    cxx = os.environ.get("CXX", "c++")
    srcdir, objdir, pkg = out / "src", out / "obj", out / "optkern"
    for d in (srcdir, objdir, pkg):
        d.mkdir(parents=True, exist_ok=True)
    units: list[Path] = []
    # Headers too (they launch kernels): the rewritten copies sit beside the units, which
    # include them by quoted name, so they are found before anything on the include path.
    for f in sorted([*CUDA.glob("*.cu"), *CUDA.glob("*.cuh"), *CUDA.glob("*.hpp")]):
        text, _ = rewrite_launches(rewrite_opt_ins(f.read_text()), f"cuda/{f.name}")
        text, _ = fresh_shared(dynamic_shared(text))
        dst = srcdir / (f.stem + ".cpp" if f.suffix == ".cu" else f.name)
        if not dst.exists() or dst.read_text() != text:
            dst.write_text(text)
        if f.suffix == ".cu":
            units.append(dst)
    units += RUNTIME
    flags = _flags(asan)
    objs = [objdir / (u.stem + ".o") for u in units]
    stamp = objdir / "flags.txt"  # other flags: everything recompiles
    if not stamp.exists() or stamp.read_text() != " ".join(flags):
        for o in objs:
            o.unlink(missing_ok=True)
        stamp.write_text(" ".join(flags))
    with concurrent.futures.ThreadPoolExecutor(jobs) as ex:
        jobs_ = [(u, o, flags) for u, o in zip(units, objs)]
        errors = [e for e in ex.map(lambda j: _compile(cxx, *j), jobs_) if e]
    if errors:
        sys.exit("\n\n".join(errors))
    so = pkg / ("_cuda" + sysconfig.get_config_var("EXT_SUFFIX"))
    if so.exists() and all(so.stat().st_mtime > o.stat().st_mtime for o in objs):
        return so
    link = [cxx, "-shared", *(["-fsanitize=address,undefined"] if asan else []), *map(str, objs), "-o", str(so)]
    subprocess.run(link, check=True)
    return so


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "cuda-emu")
    ap.add_argument("--asan", action="store_true", help="AddressSanitizer + UBSan (run with libasan preloaded)")
    ap.add_argument("-j", type=int, default=os.cpu_count() or 1)
    a = ap.parse_args()
    print(build(a.out, a.asan, a.j))


if __name__ == "__main__":
    main()
