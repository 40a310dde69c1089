// edgeship's native ExecuTorch runner: runs a .pte through the executorch wheel's own shared
// libraries (no torch, no Python) with the agent's protocol. Built at first use by
// runtime/native_build.py; small on purpose.
//
//   pte_runner MODEL.pte --samples N --out-dir DIR [--input FILE:DTYPE]... [--quant SIDE:I:SCALE:ZP]...
//              [--threads 1] [--warmup 5] [--runs 50] [--max-seconds 30] [--etdump FILE]
//   pte_runner --probe      (the runtime, the machine and the backends registered)
//
// Each --input file holds N samples of one input, back to back, raw, in DTYPE (float32 unless
// said). A float32 file feeding an int8/uint8/int16 input is quantized with the program's own
// constants (forward_input0_scale/_zp methods) or --quant input:0:SCALE:ZP; float32 feeding
// float16 is cast. DIR/output_K.bin gets N samples of output K raw, in the program's dtype.
// The last line on stdout is one JSON object: {"ok": true, ...} or {"ok": false, "stage", "error"}.
// Timings: init (Module + load_method), the first run, then warm-up runs untimed and timed runs
// over the samples in turn (i % N), stopping after --max-seconds once 3 runs are timed.
// The protocol's code both runners share (arguments, input files, runs, outputs, the JSON line) is
// runner_common.h's.

#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>
#include <executorch/runtime/backend/interface.h>
#ifdef EDGESHIP_ETDUMP
#include <executorch/devtools/etdump/etdump_flatcc.h>
#endif

#include <cstring>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "et_threadpool.h"
#include "runner_common.h"

#ifndef EDGESHIP_ET_VERSION
#define EDGESHIP_ET_VERSION "unknown"
#endif


using executorch::aten::ScalarType;
using executorch::extension::Module;
using executorch::runtime::Error;
using executorch::runtime::EValue;
using namespace edgeship_runner;

namespace {

const char* error_name(Error e) {
  switch (e) {
    case Error::Ok: return "Ok";
    case Error::Internal: return "Internal";
    case Error::InvalidState: return "InvalidState";
    case Error::EndOfMethod: return "EndOfMethod";
    case Error::NotSupported: return "NotSupported";
    case Error::NotImplemented: return "NotImplemented";
    case Error::InvalidArgument: return "InvalidArgument";
    case Error::InvalidType: return "InvalidType";
    case Error::OperatorMissing: return "OperatorMissing (a kernel the program needs is not linked)";
    case Error::NotFound: return "NotFound";
    case Error::MemoryAllocationFailed: return "MemoryAllocationFailed";
    case Error::AccessFailed: return "AccessFailed";
    case Error::InvalidProgram: return "InvalidProgram";
    case Error::InvalidExternalData: return "InvalidExternalData";
    case Error::OutOfResources: return "OutOfResources";
    case Error::DelegateInvalidCompatibility: return "DelegateInvalidCompatibility";
    case Error::DelegateMemoryAllocationFailed: return "DelegateMemoryAllocationFailed";
    case Error::DelegateInvalidHandle: return "DelegateInvalidHandle";
    default: return "Error";
  }
}

std::string error_text(Error e) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%x", static_cast<unsigned>(e));
  return std::string("error ") + buf + " " + error_name(e);
}

using DType = DTypeOf<ScalarType>;
const DType kDTypes[] = {
    {"uint8", ScalarType::Byte, 1},   {"int8", ScalarType::Char, 1},     {"int16", ScalarType::Short, 2},
    {"int32", ScalarType::Int, 4},    {"int64", ScalarType::Long, 8},    {"float16", ScalarType::Half, 2},
    {"float32", ScalarType::Float, 4}, {"float64", ScalarType::Double, 8}, {"bool", ScalarType::Bool, 1},
};

const DType* dtype_of(ScalarType t) { return edgeship_runner::dtype_of(kDTypes, t); }
const DType* dtype_named(const std::string& n) { return edgeship_runner::dtype_named(kDTypes, n); }

struct Spec {
  const DType* dtype;
  std::vector<executorch::aten::SizesType> sizes;
  size_t nbytes;
  Quant quant;
};

template <typename T>
void quantize(const float* src, size_t n, const Quant& q, T lo, T hi, uint8_t* dst) {
  T* out = reinterpret_cast<T*>(dst);
  for (size_t i = 0; i < n; ++i) {
    double v = std::nearbyint(static_cast<double>(src[i]) / q.scale) + q.zero_point;  // half to even, as numpy
    out[i] = static_cast<T>(v < lo ? lo : (v > hi ? hi : v));
  }
}

// One sample of a file of FROM dtype as the program's tensor bytes.
void convert_sample(const uint8_t* src, const DType* from, const Spec& to, uint8_t* dst, int index) {
  size_t count = to.nbytes / to.dtype->size;
  if (from == to.dtype) {
    std::memcpy(dst, src, to.nbytes);
    return;
  }
  const float* f = reinterpret_cast<const float*>(src);
  if (from->type == ScalarType::Float && to.dtype->type == ScalarType::Half) {
    auto* out = reinterpret_cast<executorch::aten::Half*>(dst);
    for (size_t i = 0; i < count; ++i) out[i] = executorch::aten::Half(f[i]);
    return;
  }
  if (from->type == ScalarType::Float && to.quant.set) {
    if (to.dtype->type == ScalarType::Char) return quantize<int8_t>(f, count, to.quant, -128, 127, dst);
    if (to.dtype->type == ScalarType::Byte) return quantize<uint8_t>(f, count, to.quant, 0, 255, dst);
    if (to.dtype->type == ScalarType::Short) return quantize<int16_t>(f, count, to.quant, -32768, 32767, dst);
  }
  fail("run", "input " + std::to_string(index) + ": a " + from->name + " file cannot feed the program's " +
                  to.dtype->name + " input" + (to.quant.set ? "" : " (no quantization parameters: pass --quant)"));
}

Spec spec_of(const executorch::runtime::TensorInfo& info, const char* side, int i) {
  Spec s;
  s.dtype = dtype_of(info.scalar_type());
  if (!s.dtype)
    fail("load", std::string(side) + " " + std::to_string(i) + " has scalar type " +
                     std::to_string(static_cast<int>(info.scalar_type())) + ", which this runner does not handle");
  for (auto d : info.sizes()) s.sizes.push_back(d);
  s.nbytes = info.nbytes();
  return s;
}

// A zero-input constant method's value ('forward_input0_scale' and friends), if it has one.
bool constant_value(Module& m, const std::string& name, double* value) {
  auto r = m.execute(name);
  if (!r.ok() || r->empty()) return false;
  const EValue& v = (*r)[0];
  if (v.isDouble()) *value = v.toDouble();
  else if (v.isInt()) *value = static_cast<double>(v.toInt());
  else if (v.isTensor() && v.toTensor().numel() == 1 && v.toTensor().scalar_type() == ScalarType::Float)
    *value = v.toTensor().const_data_ptr<float>()[0];
  else if (v.isTensor() && v.toTensor().numel() == 1 && v.toTensor().scalar_type() == ScalarType::Double)
    *value = v.toTensor().const_data_ptr<double>()[0];
  else if (v.isTensor() && v.toTensor().numel() == 1 && v.toTensor().scalar_type() == ScalarType::Long)
    *value = static_cast<double>(v.toTensor().const_data_ptr<int64_t>()[0]);
  else return false;
  return true;
}

std::string run(int argc, char** argv, std::string* partial) {
  std::string etdump_path;
  Args a = parse_args(
      argc, argv, "usage: pte_runner MODEL.pte --samples N --out-dir DIR --input FILE[:DTYPE]...",
      [](const std::string& n) { return dtype_named(n) != nullptr; },
      [&](const std::string& k, const std::function<std::string()>& next) {
        if (k != "--etdump") return false;
        etdump_path = next();
        return true;
      });
  std::ostringstream js;
  js << platform_json(std::string("executorch-native ") + EDGESHIP_ET_VERSION);
  *partial = js.str();

  auto* pool = executorch::extension::threadpool::get_threadpool();
  if (pool && a.threads > 0 && pool->get_thread_count() != static_cast<size_t>(a.threads))
    pool->_unsafe_reset_threadpool(static_cast<uint32_t>(a.threads));
  long threads = pool ? static_cast<long>(pool->get_thread_count()) : 1;

  double rss_before = peak_rss_mb();
  auto t0 = Clock::now();
#ifdef EDGESHIP_ETDUMP
  std::unique_ptr<executorch::runtime::EventTracer> tracer;
  executorch::etdump::ETDumpGen* etdump = nullptr;
  if (!etdump_path.empty()) {
    auto gen = std::make_unique<executorch::etdump::ETDumpGen>();
    etdump = gen.get();
    tracer = std::move(gen);
  }
  Module module(a.model, Module::LoadMode::File, std::move(tracer));
#else
  if (!etdump_path.empty()) fail("arguments", "--etdump: this runner was built without ETDump");
  Module module(a.model, Module::LoadMode::File);
#endif
  // the program's internal consistency is checked, as the Python runtime does: a damaged file
  // fails here with an error instead of reaching the kernels
  Error err = module.load(executorch::runtime::Program::Verification::InternalConsistency);
  if (err != Error::Ok) fail("load", "cannot load '" + a.model + "' as an ExecuTorch program: " + error_text(err));
  auto names = module.method_names();
  if (!names.ok()) fail("load", "cannot list the program's methods: " + error_text(names.error()));
  if (!names->count("forward")) fail("load", "the program has no 'forward' method");
  err = module.load_method("forward");
  if (err != Error::Ok) fail("load", "cannot load method 'forward': " + error_text(err));
  auto meta = module.method_meta("forward");
  if (!meta.ok()) fail("load", "no method meta for 'forward': " + error_text(meta.error()));
  std::vector<Spec> ins, outs;
  for (size_t i = 0; i < meta->num_inputs(); ++i) {
    auto tag = meta->input_tag(i);
    if (!tag.ok() || *tag != executorch::runtime::Tag::Tensor) fail("load", "input " + std::to_string(i) + " is not a tensor");
    ins.push_back(spec_of(*meta->input_tensor_meta(i), "input", static_cast<int>(i)));
  }
  for (size_t i = 0; i < meta->num_outputs(); ++i) {
    auto tag = meta->output_tag(i);
    if (!tag.ok() || *tag != executorch::runtime::Tag::Tensor) fail("load", "output " + std::to_string(i) + " is not a tensor");
    outs.push_back(spec_of(*meta->output_tensor_meta(i), "output", static_cast<int>(i)));
  }
  // quantization: the program's own constants first, then --quant
  auto set_quant = [&](Spec& s, const std::string& key) {
    double scale, zp;
    if (names->count("forward_" + key + "_scale") && constant_value(module, "forward_" + key + "_scale", &scale)) {
      s.quant.set = true;
      s.quant.scale = scale;
      s.quant.zero_point = names->count("forward_" + key + "_zp") && constant_value(module, "forward_" + key + "_zp", &zp)
                               ? static_cast<long>(zp) : 0;
    } else if (a.quant.count(key)) {
      s.quant = a.quant[key];
    }
    if (s.dtype->type != ScalarType::Char && s.dtype->type != ScalarType::Byte && s.dtype->type != ScalarType::Short)
      s.quant.set = false;
  };
  for (size_t i = 0; i < ins.size(); ++i) set_quant(ins[i], "input" + std::to_string(i));
  for (size_t i = 0; i < outs.size(); ++i) set_quant(outs[i], "output" + std::to_string(i));
  double init_ms = ms_since(t0);

  std::ostringstream backends;
  bool xnnpack = false;
  for (size_t i = 0; i < meta->num_backends(); ++i) {
    auto name = meta->get_backend_name(i);
    if (!name.ok()) continue;
    backends << (i ? ", " : "") << *name;
    if (std::strcmp(*name, "XnnpackBackend") == 0) xnnpack = true;
  }
  std::string used = backends.str();
  std::string detail = (used.empty() ? std::string("no delegate: portable kernels only") : "program delegates to " + used) +
                       "; " + std::to_string(meta->num_instructions()) + " instructions; " + std::to_string(threads) +
                       " threads";
  js << ",\"init_ms\":" << num(init_ms) << ",\"threads\":" << threads;
  js << ",\"delegate\":{\"name\":\"XNNPACK\",\"active\":" << (xnnpack ? "true" : "false")
     << ",\"detail\":" << json_str(detail) << ",\"backends\":[";
  for (size_t i = 0; i < meta->num_backends(); ++i) {
    auto name = meta->get_backend_name(i);
    js << (i ? "," : "") << json_str(name.ok() ? *name : "?");
  }
  js << "],\"instructions\":" << meta->num_instructions() << "}";
  auto describe = [&](const std::vector<Spec>& specs) {
    std::string out = "[";
    for (size_t i = 0; i < specs.size(); ++i)
      out += std::string(i ? "," : "") + "{\"dtype\":" + json_str(specs[i].dtype->name) + ",\"shape\":" +
             shape_text(specs[i].sizes) + ",\"quantization\":" + quant_json(specs[i].quant) + "}";
    return out + "]";
  };
  js << ",\"inputs\":" << describe(ins) << ",\"outputs\":" << describe(outs);
  *partial = js.str();

  // inputs: read and converted a sample at a time, into one tensor per input
  InputFeed<Spec, DType> feed(
      a, ins, "program", [](const std::string& d) { return dtype_named(d); }, convert_sample);
  std::vector<executorch::extension::TensorPtr> tensors;
  for (size_t j = 0; j < ins.size(); ++j)
    tensors.push_back(executorch::extension::from_blob(feed.at(j), ins[j].sizes, ins[j].dtype->type));

  std::vector<std::vector<uint8_t>> results(outs.size());
  auto run_once = [&](size_t s, bool keep) {
    for (size_t j = 0; j < ins.size(); ++j) {
      Error e = module.set_input("forward", tensors[j], j);
      if (e != Error::Ok) fail("run", "set input " + std::to_string(j) + ": " + error_text(e));
    }
    auto r = module.execute("forward");
    if (!r.ok()) fail("run", "forward failed on sample " + std::to_string(s) + ": " + error_text(r.error()));
    if (!keep) return;
    if (r->size() != outs.size()) fail("run", "forward returned " + std::to_string(r->size()) + " values");
    for (size_t k = 0; k < outs.size(); ++k) {
      const auto& t = (*r)[k].toTensor();
      if (t.nbytes() != outs[k].nbytes) fail("run", "output " + std::to_string(k) + " has an unexpected size");
      const uint8_t* p = t.const_data_ptr<uint8_t>();
      results[k].insert(results[k].end(), p, p + t.nbytes());
    }
  };
  js << run_protocol(a, results, [&](size_t s) { feed.load(s); }, run_once);
#ifdef EDGESHIP_ETDUMP
  if (etdump) {
    auto dump = etdump->get_etdump_data();
    std::ofstream f(etdump_path, std::ios::binary);
    f.write(static_cast<const char*>(dump.buf), static_cast<std::streamsize>(dump.size));
    if (!f) fail("write", "cannot write " + etdump_path);
    js << ",\"etdump\":" << json_str(etdump_path);
  }
#endif
  js << ",\"peak_rss_mb\":" << num(peak_rss_mb()) << ",\"rss_before_load_mb\":" << num(rss_before);
  return js.str();
}

}  // namespace

std::string probe() {
  std::ostringstream js;
  js << platform_json(std::string("executorch-native ") + EDGESHIP_ET_VERSION) << ",\"backends\":[";
  for (size_t i = 0; i < executorch::runtime::get_num_registered_backends(); ++i) {
    auto name = executorch::runtime::get_backend_name(i);
    js << (i ? "," : "") << json_str(name.ok() ? *name : "?");
  }
  auto* pool = executorch::extension::threadpool::get_threadpool();
  js << "],\"threads\":" << (pool ? pool->get_thread_count() : 0) << ",\"etdump\":"
#ifdef EDGESHIP_ETDUMP
     << "true";
#else
     << "false";
#endif
  return js.str();
}

int main(int argc, char** argv) {
  if (argc == 2 && std::strcmp(argv[1], "--probe") == 0) {
    std::printf("\n{\"ok\":true,%s}\n", probe().c_str());
    return 0;
  }
  return agent_main([&](std::string* partial) { return run(argc, argv, partial); });
}
