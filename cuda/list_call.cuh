// One multi-tensor call: its lists and small float64 device buffers (step
// counters, lr, b^2, results), checked by the shared collector of
// optkern/call_args.hpp (DeviceArgs: every array on one device, the lists of one
// dtype -- that of the first list -- and of the first list's sizes, no written
// array sharing memory with another); then apply / reduce launch an op over the
// lists on CuPy's current stream with the GIL released.
#pragma once
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "cuda_arrays.hpp"
#include "multi_tensor.cuh"

namespace optkern {

class ListCall {
 public:
  // `first` is the list whose dtype and sizes the others must match.
  ListCall(py::handle first, const char* name, bool written)
      : dtype_(float_dtype_of(first, name)), args_(dtype_), first_name_(name) {
    lists_.reserve(kMaxLists);
    add(first, name, written);
  }

  DType dtype() const { return dtype_; }
  int device() const { return args_.device; }
  // How many arrays the first list holds.
  size_t count() const { return lists_.empty() ? 0 : lists_[0].size.size(); }

  // A list of arrays with the sizes of the first; None is skipped (returns false).
  bool add(py::handle seq, const char* name, bool written) {
    if (seq.is_none()) return false;
    if (lists_.size() == kMaxLists) throw std::logic_error("ListCall: too many lists");
    const std::vector<int64_t>* sizes = lists_.empty() ? nullptr : &lists_[0].size;
    lists_.push_back(args_.list(seq, name, written, sizes));
    return true;
  }

  // A list that must be given (grads, backups, state the rule reads and writes): None is the
  // CPU's TypeError naming it (add() would skip it, and the op's depth check raise a RuntimeError).
  void require(py::handle seq, const char* name, bool written) {
    if (seq.is_none()) throw py::type_error(std::string(name) + ": expected a list of arrays, got None");
    add(seq, name, written);
  }

  // A float64 device array of n elements; returns its device pointer.
  double* add_buffer(py::handle h, const char* name, int64_t n, bool written) {
    return args_.get<double>(h, name, DType::f64, n, written);
  }

  // A 1-element float32 device flag the kernels read (GradScaler's found_inf).
  const float* add_flag(py::handle h, const char* name) { return args_.get<const float>(h, name, DType::f32, 1, false); }

  // Aliasing checks; then false when there is no element to touch (nothing
  // is launched, so empty calls work without CuPy or a device).
  bool ready(bool always_launch = false) {
    launch_ = false;
    args_.check_overlap();
    bool any = always_launch;
    for (int64_t n : lists_[0].size) any = any || n > 0;
    if (!any) return false;
    require_current_device(args_.device, first_name_);
    stream_ = current_stream();
    launch_ = true;
    return true;
  }

  template <int D> mt::Lists<D> lists() const {
    if (lists_.size() != size_t(D)) throw std::logic_error("ListCall: op depth does not match the lists");
    mt::Lists<D> l{};
    for (int k = 0; k < D; ++k) l[size_t(k)] = &lists_[size_t(k)];
    return l;
  }

  // Launch an element-wise op (see multi_tensor.cuh) over all lists.
  template <class T, class Src> void apply(const Src& src) const {
    const auto l = lists<Src::kDepth>();
    py::gil_scoped_release nogil;
    mt::launch_apply<T>(src, l, stream_);
  }

  // One step of a rule of rules/optim.hpp: built on the host by Rule::at, or
  // (capturable mode, step.counters or step.lr set) on the device, which then
  // advances the counters. Returns the host counters after the step.
  template <class T, class Rule> rules::Counters apply_rule(const mt::DeviceStep<Rule>& step) const {
    if (!step.counters && !step.lr && !step.found_inf) {
      const Rule rule = Rule::at(step.hyper, step.host);
      if (launch_) apply<T>(mt::RuleOp<Rule, T>{rule});
      return rules::advance(rule, step.host);
    }
    if (launch_) apply<T>(mt::DeviceRuleOp<Rule, T>{step});
    if (launch_ && step.counters) {
      mt::finish_counters<Rule><<<1, 1, 0, stream_>>>(step);
      check_launch("optkern._cuda step counters");
    }
    return step.host;
  }

  template <class T, class Op, class Fin> void reduce(const Op& op, const Fin& fin) const {
    const auto l = lists<Op::kDepth>();
    py::gil_scoped_release nogil;
    mt::launch_reduce<T>(op, l, fin, args_.device, stream_);
  }

  // Stage 1 of reduce alone: one partial per chunk of the lists into `partials` (partial_count()).
  template <class T, class Op> void partials(const Op& op, double* partials) const {
    const auto l = lists<Op::kDepth>();
    py::gil_scoped_release nogil;
    mt::launch_partials<T>(op, l, partials, stream_);
  }
  int64_t partial_count() const { return lists_.empty() ? 0 : mt::total_chunks(lists_[0]); }

  // Stage 2 of reduce alone, over n partials (a distributed norm's gathered ones).
  template <class Fin> void finish(const double* partials, int64_t n, const Fin& fin) const {
    py::gil_scoped_release nogil;
    mt::launch_finish(partials, n, fin, stream_);
  }

  cudaStream_t stream() const { return stream_; }

 private:
  static constexpr size_t kMaxLists = 8;
  DType dtype_;
  DeviceArgs args_;  // the shared collector: checks, device, aliasing
  const char* first_name_;
  cudaStream_t stream_ = nullptr;
  bool launch_ = false;  // ready() found something to launch
  std::vector<DeviceList> lists_;
};

// f(float{}) or f(double{}) for the call's dtype.
template <class F> void dispatch_float(DType dt, F&& f) {
  if (dt == DType::f32) f(float{});
  else f(double{});
}

}  // namespace optkern
