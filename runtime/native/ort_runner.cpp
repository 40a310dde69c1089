// edgeship's native ONNX Runtime runner: runs a .onnx through the onnxruntime wheel's own
// libonnxruntime.so (its C API; no Python, no numpy) with the agent's protocol. Built at first use
// by runtime/native_build.py; small on purpose, like litert_runner.cpp.
//
//   ort_runner MODEL.onnx --samples N --out-dir DIR [--input FILE:DTYPE]... [--quant SIDE:I:SCALE:ZP]...
//              [--want SIDE I TENSOR_NAME MODEL_NAME]... [--shape I:D0,D1,...]... [--threads 1]
//              [--warmup 5] [--runs 50] [--max-seconds 30]
//   ort_runner --probe      (the runtime, the machine and the execution provider)
//
// Inputs and outputs are in the session's own order; `--want side i name key` reorders them as the
// manifest's signature lists them (tensor name, else model name, else left in place: the Python
// runner's _ordered). Each --input file holds N samples of one input, back to back, raw, in DTYPE
// (float32 unless said). An input whose shape the model leaves open takes its open dimensions from
// `--shape I:...` (the sample's own shape, as the Python runner feeds a[i:i+1]), else 1. A float32
// file feeding an integer input is quantized with --quant input:I:SCALE:ZP (half to even, clipped,
// as numpy); other dtypes are cast. The session is onnxruntime's CPU execution provider with
// --threads intra-op threads, one inter-op thread, sequential execution, all graph optimizations
// (runtime/standalone/onnx.py's settings). Outputs are allocated by onnxruntime each run;
// DIR/output_K.bin gets N samples of output K raw, in the model's dtype, and the report gives each
// output's shape as the first sample's run produced it. The protocol's code (arguments, input
// files, runs, outputs, the JSON line) is runner_common.h's.
//
// The wheel ships no headers. OrtGetApiBase() -> GetApi(version) -> a struct of function pointers
// (OrtApi); the slot indices and signatures below were read from ONNX Runtime's public header
// include/onnxruntime/core/session/onnxruntime_c_api.h (microsoft/onnxruntime), whose OrtApi is
// append-only: every slot used here lies in the "Version 1 - DO NOT MODIFY ABOVE" block (slots
// 0..101), so a header of any version gives the same indices as the 1.31 library this is built
// against (ORT_API_VERSION 31, passed in as EDGESHIP_ORT_API_VERSION). Only what this file calls.

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "runner_common.h"

#ifndef EDGESHIP_ORT_VERSION
#define EDGESHIP_ORT_VERSION "unknown"
#endif
#ifndef EDGESHIP_ORT_API_VERSION
#define EDGESHIP_ORT_API_VERSION 31
#endif

extern "C" {
// Opaque handles (onnxruntime_c_api.h ORT_RUNTIME_CLASS)
struct OrtEnv;
struct OrtStatus;  // nullptr: success
struct OrtMemoryInfo;
struct OrtSession;
struct OrtValue;
struct OrtRunOptions;
struct OrtTypeInfo;
struct OrtTensorTypeAndShapeInfo;
struct OrtSessionOptions;
struct OrtAllocator;
typedef void (*OrtAnyFn)();  // one OrtApi slot: cast to its own type before the call
struct OrtApiBase {
  const OrtAnyFn* (*GetApi)(uint32_t version);  // the OrtApi, or nullptr for a version it lacks
  const char* (*GetVersionString)();
};
const OrtApiBase* OrtGetApiBase(void);
}

namespace ort {

// ONNXTensorElementDataType
enum ElementType : int {
  kFloat = 1, kUInt8 = 2, kInt8 = 3, kUInt16 = 4, kInt16 = 5, kInt32 = 6, kInt64 = 7, kString = 8, kBool = 9,
  kFloat16 = 10, kDouble = 11, kUInt32 = 12, kUInt64 = 13,
};
enum { kLoggingLevelError = 3 };           // OrtLoggingLevel ORT_LOGGING_LEVEL_ERROR
enum { kSequential = 0 };                  // ExecutionMode ORT_SEQUENTIAL
enum { kArenaAllocator = 1 };              // OrtAllocatorType OrtArenaAllocator
enum { kMemTypeDefault = 0 };              // OrtMemType OrtMemTypeDefault

// OrtApi slot indices (the struct's member order)
enum Slot : size_t {
  kGetErrorCode = 1,
  kGetErrorMessage = 2,
  kCreateEnv = 3,
  kCreateSessionFromArray = 8,
  kRun = 9,
  kCreateSessionOptions = 10,
  kSetSessionExecutionMode = 13,
  kSetSessionLogSeverityLevel = 22,
  kSetIntraOpNumThreads = 24,
  kSetInterOpNumThreads = 25,
  kSessionGetInputCount = 30,
  kSessionGetOutputCount = 31,
  kSessionGetInputTypeInfo = 33,
  kSessionGetOutputTypeInfo = 34,
  kSessionGetInputName = 36,
  kSessionGetOutputName = 37,
  kCreateTensorWithDataAsOrtValue = 49,
  kGetTensorMutableData = 51,
  kCastTypeInfoToTensorInfo = 55,
  kGetTensorElementType = 60,
  kGetDimensionsCount = 61,
  kGetDimensions = 62,
  kGetTensorTypeAndShape = 65,
  kCreateCpuMemoryInfo = 69,
  kAllocatorFree = 76,
  kGetAllocatorWithDefaultOptions = 78,
  kReleaseEnv = 92,
  kReleaseStatus = 93,
  kReleaseMemoryInfo = 94,
  kReleaseSession = 95,
  kReleaseValue = 96,
  kReleaseTypeInfo = 98,
  kReleaseTensorTypeAndShapeInfo = 99,
  kReleaseSessionOptions = 100,
};

// Their signatures (OrtStatus* on failure, nullptr on success, unless said)
using Status = OrtStatus*;
using GetErrorCodeFn = int (*)(const OrtStatus*);
using GetErrorMessageFn = const char* (*)(const OrtStatus*);
using CreateEnvFn = Status (*)(int logging_level, const char* logid, OrtEnv** out);
using CreateSessionFromArrayFn = Status (*)(const OrtEnv*, const void* data, size_t length, const OrtSessionOptions*,
                                            OrtSession** out);
using RunFn = Status (*)(OrtSession*, const OrtRunOptions*, const char* const* input_names,
                         const OrtValue* const* inputs, size_t input_len, const char* const* output_names,
                         size_t output_len, OrtValue** outputs);
using CreateSessionOptionsFn = Status (*)(OrtSessionOptions** out);
using SetIntFn = Status (*)(OrtSessionOptions*, int);  // execution mode, log severity, thread counts
using SessionCountFn = Status (*)(const OrtSession*, size_t* out);
using SessionTypeInfoFn = Status (*)(const OrtSession*, size_t index, OrtTypeInfo** out);
using SessionNameFn = Status (*)(const OrtSession*, size_t index, OrtAllocator*, char** out);
using CreateTensorWithDataFn = Status (*)(const OrtMemoryInfo*, void* data, size_t data_len, const int64_t* shape,
                                          size_t shape_len, int type, OrtValue** out);
using GetTensorMutableDataFn = Status (*)(OrtValue*, void** out);
using CastTypeInfoToTensorInfoFn = Status (*)(const OrtTypeInfo*, const OrtTensorTypeAndShapeInfo** out);
using GetTensorElementTypeFn = Status (*)(const OrtTensorTypeAndShapeInfo*, int* out);
using GetDimensionsCountFn = Status (*)(const OrtTensorTypeAndShapeInfo*, size_t* out);
using GetDimensionsFn = Status (*)(const OrtTensorTypeAndShapeInfo*, int64_t* dims, size_t length);
using GetTensorTypeAndShapeFn = Status (*)(const OrtValue*, OrtTensorTypeAndShapeInfo** out);
using CreateCpuMemoryInfoFn = Status (*)(int allocator_type, int mem_type, OrtMemoryInfo** out);
using AllocatorFreeFn = Status (*)(OrtAllocator*, void*);
using GetAllocatorFn = Status (*)(OrtAllocator** out);
template <typename T>
using ReleaseFn = void (*)(T*);

const OrtAnyFn* g_api = nullptr;

template <typename F>
F fn(Slot s) {
  return reinterpret_cast<F>(g_api[s]);
}

const char* code_name(int c) {  // OrtErrorCode
  switch (c) {
    case 1: return "FAIL";
    case 2: return "INVALID_ARGUMENT";
    case 3: return "NO_SUCHFILE";
    case 4: return "NO_MODEL";
    case 5: return "ENGINE_ERROR";
    case 6: return "RUNTIME_EXCEPTION";
    case 7: return "INVALID_PROTOBUF";
    case 8: return "MODEL_LOADED";
    case 9: return "NOT_IMPLEMENTED";
    case 10: return "INVALID_GRAPH";
    case 11: return "EP_FAIL";
    default: return "ERROR";
  }
}

}  // namespace ort

using namespace edgeship_runner;

namespace {

// The API struct for the version this runner was built for: a clear error when the library lacks it.
bool init_api(std::string* why) {
  const OrtApiBase* base = OrtGetApiBase();
  if (!base || !base->GetApi) {
    *why = "libonnxruntime's OrtGetApiBase() returned nothing";
    return false;
  }
  ort::g_api = base->GetApi(EDGESHIP_ORT_API_VERSION);
  if (!ort::g_api) {
    *why = std::string("libonnxruntime ") + (base->GetVersionString ? base->GetVersionString() : "?") +
           " does not provide ONNX Runtime C API version " + std::to_string(EDGESHIP_ORT_API_VERSION) +
           " (this runner was built against onnxruntime " EDGESHIP_ORT_VERSION ")";
    return false;
  }
  return true;
}

std::string library_version() {
  const OrtApiBase* base = OrtGetApiBase();
  return base && base->GetVersionString ? base->GetVersionString() : EDGESHIP_ORT_VERSION;
}

void check(OrtStatus* s, const char* stage, const std::string& what) {
  if (!s) return;
  int code = ort::fn<ort::GetErrorCodeFn>(ort::kGetErrorCode)(s);
  std::string msg = ort::fn<ort::GetErrorMessageFn>(ort::kGetErrorMessage)(s);
  ort::fn<ort::ReleaseFn<OrtStatus>>(ort::kReleaseStatus)(s);
  std::replace(msg.begin(), msg.end(), '\n', ' ');
  while (!msg.empty() && msg.back() == ' ') msg.pop_back();
  fail(stage, what + ": onnxruntime " + ort::code_name(code) + (msg.empty() ? "" : ": " + msg));
}

using DType = DTypeOf<int>;
const DType kDTypes[] = {
    {"uint8", ort::kUInt8, 1},   {"int8", ort::kInt8, 1},     {"int16", ort::kInt16, 2},
    {"uint16", ort::kUInt16, 2}, {"int32", ort::kInt32, 4},   {"uint32", ort::kUInt32, 4},
    {"int64", ort::kInt64, 8},   {"uint64", ort::kUInt64, 8}, {"float32", ort::kFloat, 4},
    {"float64", ort::kDouble, 8}, {"bool", ort::kBool, 1},
};

const DType* dtype_of(int t) { return edgeship_runner::dtype_of(kDTypes, t); }
const DType* dtype_named(const std::string& n) { return edgeship_runner::dtype_named(kDTypes, n); }
bool is_int(const DType* d) { return d->type != ort::kFloat && d->type != ort::kDouble && d->type != ort::kBool; }

struct Spec {
  std::string name;
  size_t index = 0;  // the session's own index
  const DType* dtype = nullptr;
  std::vector<int64_t> sizes;
  size_t nbytes = 0;
  Quant quant;
};

template <typename T>
void store(uint8_t* dst, size_t i, double v) {
  reinterpret_cast<T*>(dst)[i] = static_cast<T>(v);
}

double load(const uint8_t* src, const DType* d, size_t i) {
  switch (d->type) {
    case ort::kUInt8: return reinterpret_cast<const uint8_t*>(src)[i];
    case ort::kInt8: return reinterpret_cast<const int8_t*>(src)[i];
    case ort::kInt16: return reinterpret_cast<const int16_t*>(src)[i];
    case ort::kUInt16: return reinterpret_cast<const uint16_t*>(src)[i];
    case ort::kInt32: return reinterpret_cast<const int32_t*>(src)[i];
    case ort::kUInt32: return reinterpret_cast<const uint32_t*>(src)[i];
    case ort::kInt64: return static_cast<double>(reinterpret_cast<const int64_t*>(src)[i]);
    case ort::kUInt64: return static_cast<double>(reinterpret_cast<const uint64_t*>(src)[i]);
    case ort::kFloat: return reinterpret_cast<const float*>(src)[i];
    case ort::kDouble: return reinterpret_cast<const double*>(src)[i];
    case ort::kBool: return src[i] ? 1.0 : 0.0;
    default: return 0.0;
  }
}

// One sample of a file of FROM dtype as the model's tensor bytes (tensors.py's to_tensor).
void convert_sample(const uint8_t* src, const DType* from, const Spec& to, uint8_t* dst, int index) {
  size_t count = to.nbytes / to.dtype->size;
  if (from == to.dtype) {
    std::memcpy(dst, src, to.nbytes);
    return;
  }
  bool quantize = is_int(to.dtype) && !is_int(from) && to.quant.set;
  for (size_t i = 0; i < count; ++i) {
    double v = load(src, from, i);
    if (quantize) {  // np.round(x.astype(float64) / scale) + zp, clipped
      v = std::nearbyint(v / to.quant.scale) + static_cast<double>(to.quant.zero_point);
      double lo = -9.2e18, hi = 9.2e18;
      switch (to.dtype->type) {
        case ort::kInt8: lo = -128, hi = 127; break;
        case ort::kUInt8: lo = 0, hi = 255; break;
        case ort::kInt16: lo = -32768, hi = 32767; break;
        case ort::kUInt16: lo = 0, hi = 65535; break;
        case ort::kInt32: lo = -2147483648.0, hi = 2147483647.0; break;
        case ort::kUInt32: lo = 0, hi = 4294967295.0; break;
        default: break;
      }
      v = v < lo ? lo : (v > hi ? hi : v);
    } else if (is_int(to.dtype)) {
      v = std::trunc(v);  // numpy's float -> int cast
    }
    switch (to.dtype->type) {
      case ort::kUInt8: store<uint8_t>(dst, i, v); break;
      case ort::kInt8: store<int8_t>(dst, i, v); break;
      case ort::kInt16: store<int16_t>(dst, i, v); break;
      case ort::kUInt16: store<uint16_t>(dst, i, v); break;
      case ort::kInt32: store<int32_t>(dst, i, v); break;
      case ort::kUInt32: store<uint32_t>(dst, i, v); break;
      case ort::kInt64: store<int64_t>(dst, i, v); break;
      case ort::kUInt64: store<uint64_t>(dst, i, v); break;
      case ort::kFloat: store<float>(dst, i, v); break;
      case ort::kDouble: store<double>(dst, i, v); break;
      case ort::kBool: dst[i] = v != 0.0; break;
      default: fail("run", "input " + std::to_string(index) + ": cannot feed a " + to.dtype->name + " input");
    }
  }
}




// --shape I:D0,D1,...: input I's sample shape, for the dimensions the model leaves open
bool parse_shape(const std::string& v, std::map<size_t, std::vector<int64_t>>* shapes) {
  auto colon = v.find(':');
  if (colon == std::string::npos) fail("arguments", "--shape takes I:D0,D1,...");
  std::vector<int64_t> dims;
  std::string rest = v.substr(colon + 1);
  std::replace(rest.begin(), rest.end(), ',', ' ');
  std::istringstream in(rest);
  long long d;
  while (in >> d) dims.push_back(d);
  (*shapes)[static_cast<size_t>(std::atol(v.substr(0, colon).c_str()))] = dims;
  return true;
}


size_t count_of(const std::vector<int64_t>& sizes) {
  size_t n = 1;
  for (auto d : sizes) n *= static_cast<size_t>(d < 0 ? 0 : d);
  return n;
}

// dtype and (declared) shape of one type info; releases it
void describe_type(OrtTypeInfo* info, Spec* s, const char* side, size_t i) {
  const OrtTensorTypeAndShapeInfo* t = nullptr;
  OrtStatus* st = ort::fn<ort::CastTypeInfoToTensorInfoFn>(ort::kCastTypeInfoToTensorInfo)(info, &t);
  auto release = [&] { ort::fn<ort::ReleaseFn<OrtTypeInfo>>(ort::kReleaseTypeInfo)(info); };
  if (st || !t) {
    release();
    check(st, "load", std::string(side) + " " + std::to_string(i) + " type");
    fail("load", std::string(side) + " " + std::to_string(i) + " (" + s->name +
                     ") is not a tensor (a sequence or map), which this runner does not handle");
  }
  int type = 0;
  size_t rank = 0;
  OrtStatus* e = ort::fn<ort::GetTensorElementTypeFn>(ort::kGetTensorElementType)(t, &type);
  if (!e) e = ort::fn<ort::GetDimensionsCountFn>(ort::kGetDimensionsCount)(t, &rank);
  s->sizes.assign(rank, 0);
  if (!e && rank) e = ort::fn<ort::GetDimensionsFn>(ort::kGetDimensions)(t, s->sizes.data(), rank);
  release();
  check(e, "load", std::string(side) + " " + std::to_string(i) + " type");
  s->dtype = dtype_of(type);
  if (!s->dtype)
    fail("load", std::string(side) + " " + std::to_string(i) + " (" + s->name + ") has ONNX element type " +
                     std::to_string(type) +
                     (type == ort::kFloat16 ? " (float16)" : type == ort::kString ? " (string)" : "") +
                     ", which this runner does not handle");
}

std::string describe(const std::vector<Spec>& specs) {
  std::string out = "[";
  for (size_t i = 0; i < specs.size(); ++i) {
    out += std::string(i ? "," : "") + "{\"name\":" + json_str(specs[i].name) + ",\"dtype\":" +
           json_str(specs[i].dtype->name) + ",\"shape\":" + shape_text(specs[i].sizes) + ",\"quantization\":" +
           quant_json(specs[i].quant) + "}";
  }
  return out + "]";
}

std::string runtime_name() { return "onnxruntime-native " + library_version(); }

std::string run(int argc, char** argv, std::string* partial) {
  Wants want;
  std::map<size_t, std::vector<int64_t>> shapes;
  Args a = parse_args(
      argc, argv, "usage: ort_runner MODEL.onnx --samples N --out-dir DIR --input FILE[:DTYPE]...",
      [](const std::string& n) { return dtype_named(n) != nullptr; },
      [&](const std::string& k, const std::function<std::string()>& next) {
        if (k == "--want") return parse_want(next, &want);
        if (k == "--shape") return parse_shape(next(), &shapes);
        return false;
      });
  std::string why;
  if (!init_api(&why)) fail("load", why);
  std::ostringstream js;
  js << platform_json(runtime_name());
  *partial = js.str();

  double rss_before = peak_rss_mb();
  auto t0 = Clock::now();
  OrtEnv* env = nullptr;
  check(ort::fn<ort::CreateEnvFn>(ort::kCreateEnv)(ort::kLoggingLevelError, "edgeship", &env), "load",
        "cannot create the onnxruntime environment");
  OrtSessionOptions* options = nullptr;
  check(ort::fn<ort::CreateSessionOptionsFn>(ort::kCreateSessionOptions)(&options), "load", "session options");
  long threads = a.threads < 1 ? 1 : a.threads;
  check(ort::fn<ort::SetIntFn>(ort::kSetIntraOpNumThreads)(options, static_cast<int>(threads)), "load", "threads");
  check(ort::fn<ort::SetIntFn>(ort::kSetInterOpNumThreads)(options, 1), "load", "threads");
  check(ort::fn<ort::SetIntFn>(ort::kSetSessionExecutionMode)(options, ort::kSequential), "load", "execution mode");
  check(ort::fn<ort::SetIntFn>(ort::kSetSessionLogSeverityLevel)(options, 3), "load", "log level");
  size_t model_size = 0;
  const void* model_bytes = map_model(a.model, &model_size, "an ONNX model");
  OrtSession* session = nullptr;
  check(ort::fn<ort::CreateSessionFromArrayFn>(ort::kCreateSessionFromArray)(env, model_bytes, model_size, options,
                                                                              &session),
        "load", "cannot load '" + a.model + "'");

  OrtAllocator* allocator = nullptr;
  check(ort::fn<ort::GetAllocatorFn>(ort::kGetAllocatorWithDefaultOptions)(&allocator), "load", "allocator");
  auto collect = [&](bool inputs) {
    const char* side = inputs ? "input" : "output";
    size_t n = 0;
    check(ort::fn<ort::SessionCountFn>(inputs ? ort::kSessionGetInputCount : ort::kSessionGetOutputCount)(session, &n),
          "load", std::string(side) + "s");
    std::vector<Spec> specs(n);
    for (size_t i = 0; i < n; ++i) {
      char* name = nullptr;
      check(ort::fn<ort::SessionNameFn>(inputs ? ort::kSessionGetInputName : ort::kSessionGetOutputName)(
                session, i, allocator, &name),
            "load", std::string(side) + " " + std::to_string(i) + " name");
      specs[i].name = name ? name : "";
      if (name) check(ort::fn<ort::AllocatorFreeFn>(ort::kAllocatorFree)(allocator, name), "load", "free");
      specs[i].index = i;
      OrtTypeInfo* info = nullptr;
      check(ort::fn<ort::SessionTypeInfoFn>(inputs ? ort::kSessionGetInputTypeInfo : ort::kSessionGetOutputTypeInfo)(
                session, i, &info),
            "load", std::string(side) + " " + std::to_string(i) + " type");
      describe_type(info, &specs[i], side, i);
    }
    return specs;
  };
  std::vector<Spec> ins = collect(true), outs = collect(false);
  auto key_of = [](const Spec& s) { return s.name; };  // what a wanted key matches: an ONNX model's second name is its own name
  ins = ordered(ins, want["input"], key_of);
  outs = ordered(outs, want["output"], key_of);
  for (size_t i = 0; i < ins.size(); ++i) {  // open dimensions: the sample's, else 1
    auto hint = shapes.find(i);
    for (size_t d = 0; d < ins[i].sizes.size(); ++d)
      if (ins[i].sizes[d] < 0)
        ins[i].sizes[d] = hint != shapes.end() && hint->second.size() == ins[i].sizes.size() && hint->second[d] >= 0
                              ? hint->second[d]
                              : 1;
    ins[i].nbytes = count_of(ins[i].sizes) * ins[i].dtype->size;
    if (is_int(ins[i].dtype) && a.quant.count("input" + std::to_string(i)))
      ins[i].quant = a.quant["input" + std::to_string(i)];
  }
  for (size_t i = 0; i < outs.size(); ++i)
    if (is_int(outs[i].dtype) && a.quant.count("output" + std::to_string(i)))
      outs[i].quant = a.quant["output" + std::to_string(i)];
  double init_ms = ms_since(t0);
  js << ",\"init_ms\":" << num(init_ms) << ",\"threads\":" << threads << ",\"inputs\":" << describe(ins);
  *partial = js.str();

  // inputs: read and converted a sample at a time into buffers the input values wrap (no copy)
  InputFeed<Spec, DType> feed(
      a, ins, "model", [](const std::string& d) { return dtype_named(d); }, convert_sample);
  OrtMemoryInfo* memory = nullptr;
  check(ort::fn<ort::CreateCpuMemoryInfoFn>(ort::kCreateCpuMemoryInfo)(ort::kArenaAllocator, ort::kMemTypeDefault,
                                                                        &memory),
        "load", "memory info");
  std::vector<OrtValue*> in_values(ins.size(), nullptr);
  std::vector<const char*> in_names(ins.size()), out_names(outs.size());
  for (size_t j = 0; j < ins.size(); ++j) {
    check(ort::fn<ort::CreateTensorWithDataFn>(ort::kCreateTensorWithDataAsOrtValue)(
              memory, feed.at(j), ins[j].nbytes, ins[j].sizes.data(), ins[j].sizes.size(), ins[j].dtype->type,
              &in_values[j]),
          "load", "input " + std::to_string(j) + " tensor");
    in_names[j] = ins[j].name.c_str();
  }
  for (size_t k = 0; k < outs.size(); ++k) out_names[k] = outs[k].name.c_str();

  std::vector<std::vector<uint8_t>> results(outs.size());
  std::vector<bool> shaped(outs.size(), false);
  std::vector<OrtValue*> out_values(outs.size(), nullptr);
  auto release_outputs = [&] {
    for (auto& v : out_values) {
      if (v) ort::fn<ort::ReleaseFn<OrtValue>>(ort::kReleaseValue)(v);
      v = nullptr;
    }
  };
  auto run_once = [&](size_t s, bool keep) {
    OrtStatus* st = ort::fn<ort::RunFn>(ort::kRun)(session, nullptr, in_names.data(), in_values.data(),
                                                   in_values.size(), out_names.data(), out_names.size(),
                                                   out_values.data());
    if (st) release_outputs();
    check(st, "run", "run failed on sample " + std::to_string(s));
    if (keep) {
      for (size_t k = 0; k < outs.size(); ++k) {
        OrtTensorTypeAndShapeInfo* info = nullptr;
        check(ort::fn<ort::GetTensorTypeAndShapeFn>(ort::kGetTensorTypeAndShape)(out_values[k], &info), "run",
              "output shape");
        size_t rank = 0;
        OrtStatus* e = ort::fn<ort::GetDimensionsCountFn>(ort::kGetDimensionsCount)(info, &rank);
        std::vector<int64_t> dims(rank, 0);
        if (!e && rank) e = ort::fn<ort::GetDimensionsFn>(ort::kGetDimensions)(info, dims.data(), rank);
        ort::fn<ort::ReleaseFn<OrtTensorTypeAndShapeInfo>>(ort::kReleaseTensorTypeAndShapeInfo)(info);
        check(e, "run", "output shape");
        if (!shaped[k]) outs[k].sizes = dims, shaped[k] = true;
        size_t nbytes = count_of(dims) * outs[k].dtype->size;
        void* p = nullptr;
        if (nbytes) check(ort::fn<ort::GetTensorMutableDataFn>(ort::kGetTensorMutableData)(out_values[k], &p), "run",
                          "output data");
        const uint8_t* b = static_cast<const uint8_t*>(p);
        if (nbytes) results[k].insert(results[k].end(), b, b + nbytes);
      }
    }
    release_outputs();
  };
  js << run_protocol(a, results, [&](size_t s) { feed.load(s); }, run_once);
  double peak = peak_rss_mb();
  js << ",\"outputs\":" << describe(outs);
  js << ",\"delegate\":{\"name\":\"CPUExecutionProvider\",\"active\":null,\"detail\":"
     << json_str("onnxruntime's CPU execution provider, " + std::to_string(threads) + " intra-op thread(s)") << "}";
  js << ",\"peak_rss_mb\":" << num(peak) << ",\"rss_before_load_mb\":" << num(rss_before);
  // values, session, options and environment go with the process
  return js.str();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::strcmp(argv[1], "--probe") == 0) {  // the API struct, an environment, the provider
    std::string why;
    bool ok = init_api(&why);
    OrtEnv* env = nullptr;
    if (ok) {
      OrtStatus* st = ort::fn<ort::CreateEnvFn>(ort::kCreateEnv)(ort::kLoggingLevelError, "edgeship", &env);
      if (st) {
        why = std::string("cannot create the onnxruntime environment: ") +
              ort::fn<ort::GetErrorMessageFn>(ort::kGetErrorMessage)(st);
        ok = false;
      }
    }
    std::printf("\n{\"ok\":%s,%s,\"backends\":[%s]%s}\n", ok ? "true" : "false", platform_json(runtime_name()).c_str(),
                ok ? "\"CPUExecutionProvider\"" : "", ok ? "" : (",\"error\":" + json_str(why)).c_str());
    return ok ? 0 : 1;
  }
  return agent_main([&](std::string* partial) { return run(argc, argv, partial); });
}
