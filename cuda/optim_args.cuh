// The arguments of one multi-tensor call, checked: every list on one device,
// one dtype (that of params[0]), the sizes of params, no written array
// sharing memory with another; plus the small float64 device buffers
// (step counters, lr, b^2, results). Then apply / reduce launch an op over
// the lists on CuPy's current stream with the GIL released.
#pragma once
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "cuda_arrays.hpp"
#include "multi_tensor.cuh"

namespace optkern {

class CallArgs {
 public:
  // `first` is the list whose dtype and sizes the others must match.
  CallArgs(py::handle first, const char* name, bool written) : dtype_(float_dtype_of(first, name)) {
    lists_.reserve(kMaxLists);
    add(first, name, written);
  }

  DType dtype() const { return dtype_; }
  int device() const { return device_; }

  // A list of arrays with the sizes of the first; None is skipped (returns false).
  bool add(py::handle seq, const char* name, bool written) {
    if (seq.is_none()) return false;
    if (lists_.size() == kMaxLists) throw std::logic_error("CallArgs: too many lists");
    const std::vector<int64_t>* sizes = lists_.empty() ? nullptr : &lists_[0].size;
    lists_.push_back(gather_device(seq, name, dtype_, written, device_, sizes));
    named_.push_back({name, written, false});
    return true;
  }

  // A list that must be given (state the rule reads and writes).
  void require(py::handle seq, const char* name, bool written) {
    if (seq.is_none()) throw py::type_error(std::string(name) + ": expected a list of arrays, got None");
    add(seq, name, written);
  }

  // A float64 device array of n elements; returns its device pointer.
  double* add_buffer(py::handle h, const char* name, int64_t n, bool written) {
    buffers_.reserve(kMaxBuffers);
    if (buffers_.size() == kMaxBuffers) throw std::logic_error("CallArgs: too many buffers");
    buffers_.push_back(gather_scalar_buffer(h, name, device_, n));
    buffer_named_.push_back({name, written, true});
    return buffers_.back().ptr<double>(0);
  }

  // Aliasing checks; then false when there is no element to touch (nothing
  // is launched, so empty calls work without CuPy or a device).
  bool ready(bool always_launch = false) {
    launch_ = false;
    std::vector<NamedDeviceList> all;
    for (size_t i = 0; i < lists_.size(); ++i) all.push_back({named_[i].name, &lists_[i], named_[i].written});
    for (size_t i = 0; i < buffers_.size(); ++i)
      all.push_back({buffer_named_[i].name, &buffers_[i], buffer_named_[i].written, true});
    check_no_overlap(all, dtype_size(dtype_));
    bool any = always_launch;
    for (int64_t n : lists_[0].size) any = any || n > 0;
    if (!any) return false;
    require_current_device(device_, named_[0].name);
    stream_ = current_stream();
    launch_ = true;
    return true;
  }

  template <int D> mt::Lists<D> lists() const {
    if (lists_.size() != size_t(D)) throw std::logic_error("CallArgs: op depth does not match the lists");
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
    if (!step.counters && !step.lr) {
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
    mt::launch_reduce<T>(op, l, fin, device_, stream_);
  }

  cudaStream_t stream() const { return stream_; }

 private:
  static constexpr size_t kMaxLists = 8, kMaxBuffers = 4;
  struct Named { const char* name; bool written; bool single; };
  DType dtype_;
  int device_ = -1;
  cudaStream_t stream_ = nullptr;
  bool launch_ = false;  // ready() found something to launch
  std::vector<DeviceList> lists_;  // reserved: NamedDeviceList points into it
  std::vector<Named> named_;
  std::vector<DeviceList> buffers_;
  std::vector<Named> buffer_named_;
};

// f(float{}) or f(double{}) for the call's dtype.
template <class F> void dispatch_float(DType dt, F&& f) {
  if (dt == DType::f32) f(float{});
  else f(double{});
}

}  // namespace optkern
