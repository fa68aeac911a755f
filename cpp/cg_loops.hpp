// hessian.cg's vector loops and argument checks on the CPU, shared by cpp/cg.cpp (the whole-vector
// passes) and cpp/cg_slices.cpp (the same update applied a parameter slice at a time, as a
// product's backward pass hands the slices over): one definition of each loop.
#pragma once
#include <pybind11/pybind11.h>

#include <chrono>
#include <cstdint>

#include "cg_threads.hpp"
#include "lane_sums.hpp"
#include "optkern/cg_args.hpp"
#include "optkern/rules/second_order.hpp"
#include "parallel.hpp"
#include "py_arrays.hpp"

namespace optkern {
namespace {  // (each module file its own copy: the loops are OK_CLONES, resolved per file)

// The update and the new residual's squares in one sweep (each index visited once).
template <class T>
OK_CLONES double update_loop(T* OK_RESTRICT x, T* OK_RESTRICT r, const T* OK_RESTRICT p, const T* OK_RESTRICT y,
                             T alpha, T lambda, int64_t n) {
  return lane_sum<double>(n, [&](int64_t i) {
    T xi = x[i], ri = r[i];
    rules::cg_update(xi, ri, p[i], rules::cg_damped(y[i], p[i], lambda), alpha);
    x[i] = xi;
    r[i] = ri;
    return double(ri) * double(ri);
  });
}

template <class T> OK_CLONES void direction_loop(T* OK_RESTRICT p, const T* OK_RESTRICT z, T beta, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) p[i] = rules::cg_direction(z[i], p[i], beta);
}

using cg_args::finite;

// run(work) on the calling thread (work 0) or in a parallel region (work = streams * n), whichever
// `choice` has timed faster for calls of n elements (cg_threads.hpp), this call's time recorded for
// the next choice. `streams`: the arrays the call streams, n elements each; `chunks`: how many it
// splits into (one: the calling thread, untimed).
template <class Run> auto chosen_threads(ThreadChoice& choice, size_t chunks, int64_t n, int64_t streams, Run&& run) {
  const int threads = max_threads();
  const bool may = chunks > 1 && threads > 1 && streams * n >= serial_below(threads);
  const bool par = may && choice.parallel(n, threads);
  const auto t0 = std::chrono::steady_clock::now();
  auto out = run(par ? streams * n : 0);
  if (may) {
    const std::chrono::duration<double, std::nano> took = std::chrono::steady_clock::now() - t0;
    choice.record(n, threads, par, took.count());
  }
  return out;
}

// The vectors, checked (optkern/cg_args.hpp: also writable where written); sum runs f(start,
// length) over fixed chunks (`cost` work units an element), in a parallel region where serial_below
// allows one, or with `choice` on the calling thread or all threads as it has timed them
// (chosen_threads: for a call that follows an operator's product, whose BLAS workers still spin on
// the other cores when it starts). The same bits either way.
struct Vectors : cg_args::Vectors<HostArrays> {
  using cg_args::Vectors<HostArrays>::Vectors;
  template <class F> double sum(int64_t cost, F&& f, ThreadChoice* choice = nullptr) {
    args.check_overlap();
    const auto chunks = make_chunks({n});
    py::gil_scoped_release nogil;
    const auto run = [&](int64_t work) {
      return reduce_chunks(chunks, work, [&](const Chunk& c) { return f(c.start, c.len); });
    };
    return choice ? chosen_threads(*choice, chunks.size(), n, cost, run) : run(n * cost);
  }
};

template <class F> auto by_dtype(const py::dtype& dt, F&& f) {
  return dt.equal(py::dtype::of<float>()) ? f(float{}) : f(double{});
}


// p = z + beta p with p.p of the new p (the damping term of the next p.(A + lambda I) p in
// cg_iteration_known_), summed as cg_curvature(p, p, 0) sums it (the same terms and lanes).
template <class T>
OK_CLONES double direction_sum_loop(T* OK_RESTRICT p, const T* OK_RESTRICT z, T beta, int64_t n) {
  return lane_sum<double>(n, [&](int64_t i) {
    const T q = rules::cg_direction(z[i], p[i], beta);
    p[i] = q;
    return double(q) * double(q);
  });
}

}  // namespace
}  // namespace optkern
