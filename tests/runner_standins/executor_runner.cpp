// A STAND-IN for ExecuTorch's native `executor_runner`, for the adb tests only (edgeship's own
// code, not ExecuTorch's). No Android build of executor_runner can be had here, so the tests build
// this one for aarch64 with edgeship's cross toolchain against the aarch64 executorch wheel's
// libraries (the same ones edgeship's pte_runner links, runtime/native_build.py), and the loopback
// adb test server runs it as the arm64 code it is, under QEMU. Its outputs are real ExecuTorch
// outputs; its timings are emulated timings.
//
// It takes executor_runner's gflags as --name=value (--model_path, --inputs a.bin,b.bin,
// --output_file BASE, --num_executions, --cpu_threads, --print_output, --method_name, --data_path;
// any other flag: "ERROR: unknown command line flag 'x'", exit 1). Like
// examples/portable/executor_runner/executor_runner.cpp it reads each input file as the raw bytes
// of that input tensor (dtype and shape from the method's metadata; ones without --inputs),
// writes each output tensor's raw bytes to BASE-<i>.bin, and logs in ET_LOG's format
// ("I <time> executorch:<file>:<line>] ..."): "Model loaded in %f ms.", "Iteration %u of %u: %f ms",
// "Model executed successfully %u time(s) in %f ms.", "%zu outputs: ", "Writing output to file: %s".
// --print_output and --data_path are accepted and unused.

#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>

#include <chrono>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include "../../runtime/native/et_threadpool.h"

using executorch::aten::ScalarType;
using executorch::extension::Module;
using executorch::runtime::Error;
using executorch::runtime::EValue;

namespace {

using Clock = std::chrono::steady_clock;
const Clock::time_point kStart = Clock::now();

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

// ET_LOG's shape: "<level> HH:MM:SS.ffffff executorch:executor_runner.cpp:<line>] <message>"
void log_line(char level, int line, const char* fmt, ...) {
  double t = std::chrono::duration<double>(Clock::now() - kStart).count();
  long whole = static_cast<long>(t);
  std::printf("%c %02ld:%02ld:%09.6f executorch:executor_runner.cpp:%d] ", level, whole / 3600, whole / 60 % 60,
              t - static_cast<double>(whole - whole % 60), line);
  va_list args;
  va_start(args, fmt);
  std::vprintf(fmt, args);
  va_end(args);
  std::printf("\n");
  std::fflush(stdout);
}

size_t element_size(ScalarType t) {
  switch (t) {
    case ScalarType::Byte: case ScalarType::Char: case ScalarType::Bool: return 1;
    case ScalarType::Short: case ScalarType::Half: return 2;
    case ScalarType::Int: case ScalarType::Float: return 4;
    case ScalarType::Long: case ScalarType::Double: return 8;
    default: return 0;
  }
}

// One element of value 1 in dtype T, for the inputs no file gives.
void write_one(ScalarType t, uint8_t* dst) {
  switch (t) {
    case ScalarType::Byte: case ScalarType::Char: case ScalarType::Bool: *dst = 1; return;
    case ScalarType::Short: { int16_t v = 1; std::memcpy(dst, &v, 2); return; }
    case ScalarType::Half: { uint16_t v = 0x3c00; std::memcpy(dst, &v, 2); return; }
    case ScalarType::Int: { int32_t v = 1; std::memcpy(dst, &v, 4); return; }
    case ScalarType::Float: { float v = 1.0f; std::memcpy(dst, &v, 4); return; }
    case ScalarType::Long: { int64_t v = 1; std::memcpy(dst, &v, 8); return; }
    case ScalarType::Double: { double v = 1.0; std::memcpy(dst, &v, 8); return; }
    default: return;
  }
}

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t comma = s.find(',', start);
    if (comma == std::string::npos) comma = s.size();
    if (comma > start) out.push_back(s.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

int run(std::map<std::string, std::string>& f) {
  const std::string& model_path = f["model_path"];
  if (std::FILE* probe = std::fopen(model_path.c_str(), "rb")) {
    std::fclose(probe);
  } else {
    log_line('E', 150, "Failed to open model file %s", model_path.c_str());
    return 1;
  }
  log_line('I', 186, "Model file %s is loaded.", model_path.c_str());
  long threads = std::strtol(f["cpu_threads"].c_str(), nullptr, 10);
  if (threads > 0) {
    if (auto* pool = executorch::extension::threadpool::get_threadpool())
      pool->_unsafe_reset_threadpool(static_cast<uint32_t>(threads));
  }
  log_line('I', 195, "Resetting threadpool with num threads = %ld", threads);

  auto before = Clock::now();
  Module module(model_path, Module::LoadMode::File);
  Error err = module.load();
  std::string method_name = f["method_name"];
  if (err == Error::Ok && method_name.empty()) {
    auto first = module.program()->get_method_name(0);
    if (first.ok()) method_name = *first;
    else err = first.error();
  }
  if (err == Error::Ok) {
    log_line('I', 195, "Using method %s", method_name.c_str());
    err = module.load_method(method_name);
  }
  if (err != Error::Ok) {
    log_line('E', 360, "Loading of method %s failed with status 0x%x", method_name.c_str(),
             static_cast<unsigned>(err));
    return 1;
  }
  log_line('I', 368, "Model loaded in %f ms.", ms_since(before));

  auto meta = module.method_meta(method_name);
  if (!meta.ok()) {
    log_line('E', 360, "Getting method meta for %s failed with status 0x%x", method_name.c_str(),
             static_cast<unsigned>(meta.error()));
    return 1;
  }
  std::vector<std::string> paths = split_commas(f["inputs"]);
  std::vector<std::vector<uint8_t>> buffers;
  std::vector<executorch::extension::TensorPtr> tensors;
  for (size_t i = 0; i < meta->num_inputs(); ++i) {
    auto info = meta->input_tensor_meta(i);
    if (!info.ok() || element_size(info->scalar_type()) == 0) {
      log_line('E', 250, "Input %zu is not a tensor of a supported dtype", i);
      return 1;
    }
    size_t nbytes = info->nbytes(), esize = element_size(info->scalar_type());
    std::vector<uint8_t> bytes(nbytes);
    if (!paths.empty()) {
      if (i >= paths.size()) {
        log_line('E', 250, "No input file for input %zu", i);
        return 1;
      }
      std::ifstream in(paths[i], std::ios::binary);
      std::vector<uint8_t> raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      if (!in.good() && !in.eof()) raw.clear();
      if (raw.size() < nbytes) {
        log_line('E', 250, "Input file %s holds %zu bytes, input %zu needs %zu", paths[i].c_str(), raw.size(), i,
                 nbytes);
        return 1;
      }
      std::memcpy(bytes.data(), raw.data(), nbytes);
    } else {
      for (size_t k = 0; k < nbytes; k += esize) write_one(info->scalar_type(), bytes.data() + k);
    }
    std::vector<executorch::aten::SizesType> sizes(info->sizes().begin(), info->sizes().end());
    buffers.push_back(std::move(bytes));
    tensors.push_back(executorch::extension::from_blob(buffers.back().data(), sizes, info->scalar_type()));
  }
  for (size_t j = 0; j < tensors.size(); ++j) {
    err = module.set_input(method_name, tensors[j], j);
    if (err != Error::Ok) {
      log_line('E', 430, "Setting input %zu failed with status 0x%x", j, static_cast<unsigned>(err));
      return 1;
    }
  }

  unsigned n = static_cast<unsigned>(std::strtoul(f["num_executions"].c_str(), nullptr, 10));
  double spent = 0;
  std::vector<EValue> outputs;
  for (unsigned i = 0; i < n; ++i) {
    auto t = Clock::now();
    auto r = module.execute(method_name);
    double ms = ms_since(t);
    if (!r.ok()) {
      log_line('E', 520, "Execution of method %s failed with status 0x%x", method_name.c_str(),
               static_cast<unsigned>(r.error()));
      return 1;
    }
    outputs = std::move(*r);
    spent += ms;
    log_line('I', 527, "Iteration %u of %u: %f ms", i + 1, n, ms);
  }
  log_line('I', 536, "Model executed successfully %u time(s) in %f ms.", n, spent);
  log_line('I', 545, "%zu outputs: ", outputs.size());
  const std::string& base = f["output_file"];
  if (!base.empty()) {
    for (size_t i = 0; i < outputs.size(); ++i) {
      std::string name = base + "-" + std::to_string(i) + ".bin";
      log_line('I', 557, "Writing output to file: %s", name.c_str());
      if (!outputs[i].isTensor()) {
        log_line('E', 557, "Output %zu is not a tensor", i);
        return 1;
      }
      const auto& t = outputs[i].toTensor();
      std::ofstream out(name, std::ios::binary);
      out.write(static_cast<const char*>(t.const_data_ptr()), static_cast<std::streamsize>(t.nbytes()));
      if (!out) {
        log_line('E', 557, "Cannot write %s", name.c_str());
        return 1;
      }
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> f = {
      {"model_path", "model.pte"}, {"inputs", ""},         {"output_file", ""}, {"num_executions", "1"},
      {"cpu_threads", "-1"},       {"print_output", "summary"}, {"method_name", ""}, {"data_path", ""}};
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    size_t dashes = a.find_first_not_of('-');
    std::string rest = dashes == std::string::npos ? "" : a.substr(dashes);
    size_t eq = rest.find('=');
    std::string name = rest.substr(0, eq);
    if (a.empty() || a[0] != '-' || !f.count(name)) {
      std::fprintf(stderr, "ERROR: unknown command line flag '%s'\n", name.c_str());
      return 1;
    }
    f[name] = eq == std::string::npos ? "" : rest.substr(eq + 1);
  }
  return run(f);
}
