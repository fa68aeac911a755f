"""The CUDA-on-the-CPU emulator (tools/cuda_emu) that runs cuda/*.cu where no GPU is lent.

Its launch rewriting on the project's own syntax, and its scheduler's semantics on small
kernels compiled here: barriers and warp shuffles (every thread's values, not just lane 0's),
`__shared__` per block, 2-D/3-D indices, a barrier that can never open (an error, not a hang),
an invalid configuration (reported at cudaGetLastError), exceptions from threads; and the checks for
GPU-only defects: a shared-memory race shows in reversed or shuffled thread order (OKEMU_ORDER),
shared memory starts as 0xff bytes in every block, a shuffle mask naming an exited lane fails the
launch, grids and shared memory past the device's limits are invalid configurations. The whole CUDA
test suite against the emulated module is `tools/cuda_emu/run` (minutes; see bench/RESULTS.md).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EMU = ROOT / "tools" / "cuda_emu"
sys.path.insert(0, str(EMU))
import build as emu_build  # noqa: E402

CXX = shutil.which("c++") or shutil.which("g++")


@pytest.mark.parametrize(
    "src,want",
    [
        ("k<<<g, b>>>(x, y);", '::okemu::launch(g, b, 0, cudaStream_t(nullptr), [&] { k(x, y); }, "k");'),
        (
            "mt::apply_kernel<T, Src><<<unsigned(chunks), kBlock, 0, s>>>(tab, src);",
            "::okemu::launch(unsigned(chunks), kBlock, 0, s, [&] { mt::apply_kernel<T, Src>(tab, src); }, "
            '"mt::apply_kernel<T, Src>");',
        ),
        (
            "f<A<B>><<<dim3(x, y), 32, shm>>>(p, {1, 2}, g(h(3)));",
            "::okemu::launch(dim3(x, y), 32, shm, cudaStream_t(nullptr), [&] { f<A<B>>(p, {1, 2}, g(h(3))); }, "
            '"f<A<B>>");',
        ),
        ("k<<<1, 1>>>();", '::okemu::launch(1, 1, 0, cudaStream_t(nullptr), [&] { k(); }, "k");'),
    ],
)
def test_launches_are_rewritten(src, want):
    got, n = emu_build.rewrite_launches(src)
    assert (got, n) == (want, 1)


def test_every_launch_in_cuda_is_rewritten():
    total = 0
    for f in [*(ROOT / "cuda").glob("*.cu"), *(ROOT / "cuda").glob("*.cuh")]:
        text, n = emu_build.rewrite_launches(f.read_text())
        assert "<<<" not in text and ">>>" not in text, f.name
        total += n
    assert total >= 40  # the project launches ~57 kernels from its sources


def test_launch_sites_are_named_by_file_and_line():
    src = "int a;\nk<<<1, 1>>>(\n  x);\nj<<<2, 3>>>();\n"
    got, n = emu_build.rewrite_launches(src, "cuda/a.cu")
    assert n == 2 and '"cuda/a.cu:2 k")' in got and '"cuda/a.cu:4 j")' in got
    sites = emu_build.launch_sites()
    assert len(sites) == len(set(sites)) >= 50  # every launch in cuda/, each its own name
    assert all(s.startswith("cuda/") for s in sites)


def test_shared_memory_opt_ins_are_rewritten():
    src = "check(cudaFuncSetAttribute(k<A, B>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(n)), w);"
    assert emu_build.rewrite_opt_ins(src) == 'check(::okemu::opt_in_shared("k<A, B>", int(n)), w);'
    with pytest.raises(ValueError, match="cannot emulate"):
        emu_build.rewrite_opt_ins("cudaFuncSetAttribute(k, cudaFuncAttributePreferredSharedMemoryCarveout, 50);")


def test_bad_launch_syntax_is_refused():
    with pytest.raises(ValueError, match="configuration"):
        emu_build.rewrite_launches("k<<<1>>>(x);")


KERNELS = r"""
#include "cuda_runtime.h"
#include <cstdio>
#include <cstdlib>
#include <string>
#include <stdexcept>
#include <vector>

// Block sum: warp shuffles, then lane 0s through shared memory (the project's pattern).
__global__ void block_sum(const double* x, int n, double* out) {
  __shared__ double warp_total[32];
  double v = 0;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) v += x[i];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warp_total[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < int(blockDim.x >> 5) ? warp_total[lane] : 0.0;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    if (lane == 0) out[blockIdx.x] = v;
  }
}

// Every lane's result of a butterfly (xor) reduction, and each thread's 3-D index.
__global__ void butterfly(int* out) {
  int v = int(threadIdx.x);
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  out[threadIdx.x] = v;
}
__global__ void indices(int* out) {
  const int t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const int b = blockIdx.x + gridDim.x * blockIdx.y;
  out[b * 24 + t] = 1000 * b + 100 * int(threadIdx.z) + 10 * int(threadIdx.y) + int(threadIdx.x);
}
// Neighbour exchange through shared memory: wrong without the barrier between write and read.
__global__ void rotate(const int* in, int* out) {
  __shared__ int s[64];
  s[threadIdx.x] = in[threadIdx.x];
  __syncthreads();
  out[threadIdx.x] = s[(threadIdx.x + 1) % blockDim.x];
}
// Lane 0 shuffles while the others wait at __syncthreads: no barrier can ever open.
__global__ void deadlock(double* out) {
  double v = 1;
  if (threadIdx.x == 0) v = __shfl_down_sync(0xffffffffu, v, 1);
  else __syncthreads();
  out[0] = v;
}
__global__ void throws() {
  if (threadIdx.x == 5) throw std::runtime_error("thread 5 failed");
}
// Threads that exit early do not hold a barrier back (as on the GPU).
__global__ void early_exit(int* out) {
  if (threadIdx.x >= 40) return;
  __syncthreads();
  out[threadIdx.x] = 1;
}

// Reads the left neighbour's shared write without a barrier: right only when the scheduler
// happens to run thread t - 1 first (forward order), a race on a GPU.
__global__ void left_racy(int* out) {
  __shared__ int s[64];
  s[threadIdx.x] = int(threadIdx.x);
  out[threadIdx.x] = s[threadIdx.x ? threadIdx.x - 1 : 0];
}
// A block sum whose shared buffer is reused without a barrier after the read of the total:
// thread 0 may overwrite sh[0] with the next sum before the others read the first.
__global__ void reuse_racy(double* out) {
  __shared__ double sh[64];
  double r[2];
  for (int k = 0; k < 2; ++k) {
    sh[threadIdx.x] = double(k + 1);
    __syncthreads();
    for (int h = 32; h > 0; h >>= 1) {
      if (int(threadIdx.x) < h) sh[threadIdx.x] += sh[threadIdx.x + h];
      __syncthreads();
    }
    r[k] = sh[0];  // (a __syncthreads() here makes it race-free)
  }
  out[threadIdx.x] = r[0] + 1000 * r[1];
}
// Reads shared memory before anything wrote it (block 1 must not see block 0's 7).
__global__ void read_before_write(unsigned* out) {
  __shared__ unsigned s;
  if (threadIdx.x == 0) out[blockIdx.x] = s;
  __syncthreads();
  s = 7u;
}
// A tail `if (i >= n) return;` before a full-mask shuffle: the mask names exited lanes.
__global__ void tail_shuffle(const double* x, int n, double* out) {
  const int i = int(threadIdx.x);
  if (i >= n) return;
  double v = x[i];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  if (i == 0) out[0] = v;
}

// 1 KB of static shared memory next to the launch's dynamic bytes.
__global__ void static_and_dynamic(float* out) {
  __shared__ float table[256];
  extern __shared__ float dyn[];
  table[threadIdx.x] = 1.0f;
  dyn[threadIdx.x] = 2.0f;
  __syncthreads();
  out[threadIdx.x] = table[threadIdx.x] + dyn[threadIdx.x];
}

int main() {
  int fails = 0;
  const char* order_env = std::getenv("OKEMU_ORDER");
  const std::string order = order_env ? order_env : "forward";
  auto check = [&](bool ok, const char* what) {
    std::printf("%s %s\n", ok ? "ok" : "FAIL", what);
    fails += !ok;
  };
  {
    const int n = 10007;
    std::vector<double> x(n);
    double want = 0;
    for (int i = 0; i < n; ++i) want += (x[i] = (i % 97) * 0.5);
    std::vector<double> part(3, -1);
    block_sum<<<3, 256>>>(x.data(), n, part.data());
    check(part[0] + part[1] + part[2] == want, "block_sum over 3 blocks");
  }
  {
    std::vector<int> out(64, -1);
    butterfly<<<1, 64>>>(out.data());
    bool ok = true;
    for (int t = 0; t < 64; ++t) ok = ok && out[t] == (t < 32 ? 496 : 32 * 32 + 496);
    check(ok, "xor butterfly: every lane holds its warp's total");
  }
  {
    std::vector<int> out(48, -1);
    indices<<<dim3(2, 1), dim3(4, 3, 2)>>>(out.data());
    bool ok = true;
    for (int b = 0; b < 2; ++b)
      for (int z = 0; z < 2; ++z)
        for (int y = 0; y < 3; ++y)
          for (int x = 0; x < 4; ++x) ok = ok && out[b * 24 + x + 4 * (y + 3 * z)] == 1000 * b + 100 * z + 10 * y + x;
    check(ok, "3-D thread and 2-D block indices");
  }
  {
    std::vector<int> in(64), out(64, -1);
    for (int i = 0; i < 64; ++i) in[i] = i * i;
    rotate<<<1, 64>>>(in.data(), out.data());
    bool ok = true;
    for (int i = 0; i < 64; ++i) ok = ok && out[i] == in[(i + 1) % 64];
    check(ok, "shared memory exchange across a barrier");
  }
  {
    std::vector<int> out(64, 0);
    early_exit<<<1, 64>>>(out.data());
    int s = 0;
    for (int v : out) s += v;
    check(s == 40, "exited threads release the barrier");
  }
  {
    double o = 0;
    bool threw = false;
    try {
      deadlock<<<1, 32>>>(&o);
    } catch (const std::runtime_error& e) {
      threw = std::string(e.what()).find("deadlock") != std::string::npos;
    }
    check(threw, "a barrier that cannot open is an error");
  }
  {
    bool threw = false;
    try {
      throws<<<1, 32>>>();
    } catch (const std::runtime_error& e) {
      threw = std::string(e.what()).find("thread 5 failed") != std::string::npos;
    }
    check(threw, "an exception in a thread fails the launch");
  }
  {
    cudaGetLastError();
    throws<<<1, 2048>>>();
    check(cudaGetLastError() == cudaErrorInvalidValue && cudaGetLastError() == cudaSuccess,
          "an invalid configuration is reported once by cudaGetLastError");
  }
  {
    cudaGetLastError();
    bool ok = true;
    throws<<<dim3(1, 65536), 32>>>();
    ok = ok && cudaGetLastError() == cudaErrorInvalidValue;
    throws<<<dim3(1, 1, 65536), 32>>>();
    ok = ok && cudaGetLastError() == cudaErrorInvalidValue;
    throws<<<1, dim3(1, 1, 128)>>>();
    ok = ok && cudaGetLastError() == cudaErrorInvalidValue;
    throws<<<1, 32, 49153>>>();
    ok = ok && cudaGetLastError() == cudaErrorInvalidValue;
    check(ok, "grid.y / grid.z > 65535, block.z > 64, > 48 KB of dynamic shared memory: invalid");
  }
  {
    cudaGetLastError();
    std::vector<float> out(256, 0.0f);
    static_and_dynamic<<<1, 256, 48 * 1024 - 1024>>>(out.data());  // 1 KB static + 47 KB: fits
    bool ok = cudaGetLastError() == cudaSuccess && out[255] == 3.0f;
    static_and_dynamic<<<1, 256, 48 * 1024>>>(out.data());  // 1 KB past 48 KB without the opt-in
    ok = ok && cudaGetLastError() == cudaErrorInvalidValue;
    ok = ok && cudaFuncSetAttribute(static_and_dynamic, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 * 1024) ==
                   cudaSuccess;
    static_and_dynamic<<<1, 256, 64 * 1024>>>(out.data());
    ok = ok && cudaGetLastError() == cudaSuccess;
    static_and_dynamic<<<1, 256, 64 * 1024 + 4>>>(out.data());  // past the opted-in bytes
    ok = ok && cudaGetLastError() == cudaErrorInvalidValue;
    check(ok, "static + dynamic shared memory past 48 KB needs the kernel's opt-in, and stays within it");
  }
  {
    std::vector<int> out(64, -2);
    left_racy<<<1, 64>>>(out.data());
    bool right = true;
    for (int t = 1; t < 64; ++t) right = right && out[t] == t - 1;
    check(order == "forward" ? right : !right, "a read of another thread's shared write without a barrier "
                                               "is right in forward order only");
  }
  {
    std::vector<double> out(64, 0);
    reuse_racy<<<1, 64>>>(out.data());
    bool right = true;
    for (double v : out) right = right && v == 64 + 1000 * 128;
    check(!right, "shared memory reused without a barrier after its read: wrong in every order");
  }
  {
    std::vector<unsigned> out(2, 0);
    read_before_write<<<2, 32>>>(out.data());
    check(out[0] == 0xffffffffu && out[1] == 0xffffffffu, "shared memory starts as 0xff bytes in every block");
  }
  {
    std::vector<double> x(32, 1.0);
    double o = 0;
    bool threw = false;
    try {
      tail_shuffle<<<1, 32>>>(x.data(), 20, &o);
    } catch (const std::runtime_error& e) {
      threw = std::string(e.what()).find("has exited") != std::string::npos;
    }
    tail_shuffle<<<1, 32>>>(x.data(), 32, &o);
    check(threw && o == 32.0, "a shuffle mask naming an exited lane fails the launch");
  }
  return fails;
}
"""


def test_shared_declarations_get_fresh_calls():
    src = "__shared__ uint32_t amax[K][B], neg[K][B];\n  __shared__ SumK<T, K> sm[32];"
    got, n = emu_build.fresh_shared(src)
    assert n == 3
    assert "neg[K][B]; ::okemu::shared_fresh(&amax, sizeof(amax)); ::okemu::shared_fresh(&neg, sizeof(neg));" in got
    assert "sm[32]; ::okemu::shared_fresh(&sm, sizeof(sm));" in got


@pytest.mark.skipif(CXX is None, reason="no C++ compiler")
def test_scheduler_semantics(tmp_path):
    src = tmp_path / "kernels.cpp"
    text, n = emu_build.rewrite_launches(emu_build.rewrite_opt_ins(KERNELS))
    assert n == 21
    text, _ = emu_build.fresh_shared(emu_build.dynamic_shared(text))
    src.write_text(text)
    exe = tmp_path / "kernels"
    subprocess.run(
        [CXX, "-std=c++17", "-O1", f"-I{EMU / 'include'}", str(src), *map(str, emu_build.RUNTIME), "-o", str(exe)],
        check=True,
    )
    for order in ("forward", "reverse", "shuffle"):
        env = {**os.environ, "OKEMU_ORDER": order, "OKEMU_SEED": "7"}
        r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60, env=env)
        assert r.returncode == 0 and "FAIL" not in r.stdout, order + "\n" + r.stdout + r.stderr
        assert r.stdout.count("ok ") == 14, order
