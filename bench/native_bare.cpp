// The bare C++ loop bench/native_runner.py compares edgeship's native runner with: the Module
// API's own forward() over the same samples, nothing else (no JSON, no output copies).
//   native_bare MODEL.pte INPUT.bin SAMPLES WARMUP RUNS   ->  "p50_ms total_ms" on stdout
#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <vector>

using executorch::extension::Module;
using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  if (argc != 6) return 2;
  Module m(argv[1]);
  if (m.load_method("forward") != executorch::runtime::Error::Ok) return 3;
  auto info = m.method_meta("forward")->input_tensor_meta(0);
  std::vector<executorch::aten::SizesType> sizes(info->sizes().begin(), info->sizes().end());
  size_t per = info->nbytes() / sizeof(float);
  long n = std::atol(argv[3]), warmup = std::atol(argv[4]), runs = std::atol(argv[5]);
  std::vector<float> data(per * n);
  std::ifstream(argv[2], std::ios::binary).read(reinterpret_cast<char*>(data.data()), data.size() * sizeof(float));
  std::vector<executorch::extension::TensorPtr> tensors;
  for (long s = 0; s < n; ++s) tensors.push_back(executorch::extension::from_blob(data.data() + s * per, sizes));
  for (long i = 0; i < warmup; ++i) m.forward(tensors[i % n]);
  std::vector<double> t;
  auto start = Clock::now();
  for (long i = 0; i < runs; ++i) {
    auto t0 = Clock::now();
    if (!m.forward(tensors[i % n]).ok()) return 4;
    t.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  double total = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  std::sort(t.begin(), t.end());
  double k = (t.size() - 1) * 0.5;  // timing.py's linear-interpolated percentile
  size_t lo = static_cast<size_t>(k), hi = std::min(lo + 1, t.size() - 1);
  std::printf("%.6f %.6f\n", t[lo] + (t[hi] - t[lo]) * (k - lo), total);
  return 0;
}
