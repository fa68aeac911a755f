// Portability macros shared by the C++/OpenMP and the CUDA builds.
#pragma once
#include <cmath>

#if defined(__CUDACC__)
#define OK_HD __host__ __device__ __forceinline__
#elif defined(__GNUC__)
#define OK_HD inline __attribute__((always_inline))
#else
#define OK_HD inline
#endif

// Hot CPU loops are compiled once per ISA level and picked at load time
// (GCC function multi-versioning), so a portable wheel still runs AVX2 /
// AVX-512 code. OPTKERN_NATIVE builds for the host CPU instead.
#if !defined(__CUDACC__) && defined(__GNUC__) && !defined(__clang__) && \
    defined(__x86_64__) && !defined(OPTKERN_NATIVE)
#define OK_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#define OK_HAVE_CLONES 1
#else
#define OK_CLONES
#define OK_HAVE_CLONES 0
#endif

// One rounding of a b + c wherever it runs, host or device (torch's add(other, alpha=...) is an
// fmadd in its vector kernels; GCC and nvcc contract a b + c only where they choose to).
#if defined(__CUDA_ARCH__)
template <class T> OK_HD T fma_t(T a, T b, T c) { return fma(a, b, c); }
#else
template <class T> OK_HD T fma_t(T a, T b, T c) { return std::fma(a, b, c); }
#endif

#if defined(_MSC_VER)
#define OK_RESTRICT __restrict
#else
#define OK_RESTRICT __restrict__
#endif
