// What the block scheduler (scheduler.cpp) and the launch code (runtime.cpp) call of each other;
// kernels see neither (include/cuda_runtime.h declares what they call).
#pragma once
#include <functional>

#include "cuda_runtime.h"

namespace okemu {

// Every block of `grid`, one at a time, in the run's order (OKEMU_ORDER); each thread of a
// block runs `body`. A thread's exception, a deadlock or a bad shuffle mask: std::runtime_error.
void run_blocks(dim3 grid, dim3 block, const std::function<void()>& body);

// Called as each block starts: its shared memory undefined again (0xff bytes), counted from zero.
void shared_block_start();

}  // namespace okemu
