// ExecuTorch's CPU threadpool, as libexecutorch_threadpool.so exports it: the executorch wheel ships
// the library but no threadpool.h, so edgeship declares the two calls it makes (pte_runner.cpp, and
// bench/native_runner.py's bare loop) here, once.
#pragma once

#include <cstddef>
#include <cstdint>

namespace executorch::extension::threadpool {
class ThreadPool {
 public:
  size_t get_thread_count() const;
  bool _unsafe_reset_threadpool(uint32_t num_threads);
};
ThreadPool* get_threadpool();
}  // namespace executorch::extension::threadpool
