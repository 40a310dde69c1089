// edgeship's native LiteRT runner: runs a .tflite through the ai-edge-litert wheel's own
// libLiteRt.so (its C API; no Python, no numpy) with the agent's protocol. Built at first use by
// runtime/native_build.py; small on purpose, like pte_runner.cpp.
//
//   litert_runner MODEL.tflite --samples N --out-dir DIR [--input FILE:DTYPE]... [--quant SIDE:I:SCALE:ZP]...
//                 [--want SIDE I TENSOR_NAME SIGNATURE_KEY]... [--threads 1] [--warmup 5] [--runs 50]
//                 [--max-seconds 30] [--profile FILE]
//   litert_runner --probe      (the runtime, the machine and the accelerators registered)
//
// Inputs and outputs are in the model's own order (its main subgraph's), like the Python runner's
// get_input_details(); `--want side i name key` reorders them as the manifest's signature lists
// them: matched by tensor name, else by signature key, else left in place (the Python runner's
// rule). Each --input file holds N samples of one input, back to back, raw, in DTYPE (float32
// unless said). A float32 file feeding an integer input is quantized with the tensor's own
// per-tensor parameters, else --quant input:I:SCALE:ZP (half to even, clipped, as numpy); other
// dtypes are cast. DIR/output_K.bin gets N samples of output K raw, in the model's dtype.
// The last line on stdout is one JSON object: {"ok": true, ...} or {"ok": false, "stage", "error"}.
// Timings: init (model + compiled model + buffers), the first run, then warm-up runs untimed and
// timed runs over the samples in turn (i % N), stopping after --max-seconds once 3 runs are timed.
// --profile FILE: LiteRT's profiler on for every run; FILE gets one line per event:
// type<TAB>elapsed_us<TAB>node<TAB>tag.
// The protocol's code both runners share (arguments, input files, runs, outputs, the JSON line) is
// runner_common.h's.
//
// The wheel ships no headers: the declarations below are LiteRT's public C API
// (google-ai-edge/LiteRT, litert/c/*.h), unchanged from v2.2.0 to the 2.3.0 wheel built here, which
// exports them as VERS_1.0 symbols. Only the handles, enums and structs this file uses.

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

#ifndef EDGESHIP_LITERT_VERSION
#define EDGESHIP_LITERT_VERSION "unknown"
#endif

extern "C" {
// litert/c/litert_common.h
typedef struct LiteRtEnvironmentT* LiteRtEnvironment;
typedef struct LiteRtModelT* LiteRtModel;
typedef struct LiteRtSubgraphT* LiteRtSubgraph;
typedef struct LiteRtSignatureT* LiteRtSignature;
typedef struct LiteRtTensorT* LiteRtTensor;
typedef struct LiteRtCompiledModelT* LiteRtCompiledModel;
typedef struct LiteRtOptionsT* LiteRtOptions;
typedef struct LiteRtOpaqueOptionsT* LiteRtOpaqueOptions;
typedef struct LiteRtTensorBufferT* LiteRtTensorBuffer;
typedef struct LiteRtTensorBufferRequirementsT* LiteRtTensorBufferRequirements;
typedef struct LiteRtProfilerT* LiteRtProfiler;
typedef struct LiteRtAcceleratorT* LiteRtAccelerator;
typedef struct LiteRtEnvOptionT LiteRtEnvOption;  // never dereferenced: no options are passed
typedef size_t LiteRtParamIndex;
typedef int LiteRtHwAcceleratorSet;
typedef enum { kLiteRtStatusOk = 0 } LiteRtStatus;  // other values are only printed
enum { kLiteRtHwAcceleratorCpu = 1 << 0 };
typedef enum { kLiteRtTensorBufferLockModeRead = 0, kLiteRtTensorBufferLockModeWrite = 1 } LiteRtTensorBufferLockMode;

// litert/c/litert_layout.h
#define LITERT_TENSOR_MAX_RANK 8
typedef struct {
  unsigned int rank : 7;
  unsigned int has_strides : 1;
  int32_t dimensions[LITERT_TENSOR_MAX_RANK];
  uint32_t strides[LITERT_TENSOR_MAX_RANK];
} LiteRtLayout;

// litert/c/litert_model_types.h
typedef enum {
  kLiteRtElementTypeNone = 0, kLiteRtElementTypeBool = 6, kLiteRtElementTypeInt8 = 9, kLiteRtElementTypeInt16 = 7,
  kLiteRtElementTypeInt32 = 2, kLiteRtElementTypeInt64 = 4, kLiteRtElementTypeUInt8 = 3, kLiteRtElementTypeUInt16 = 17,
  kLiteRtElementTypeUInt32 = 16, kLiteRtElementTypeUInt64 = 13, kLiteRtElementTypeFloat16 = 10,
  kLiteRtElementTypeFloat32 = 1, kLiteRtElementTypeFloat64 = 11,
} LiteRtElementType;
typedef struct {
  LiteRtElementType element_type;
  LiteRtLayout layout;
} LiteRtRankedTensorType;
typedef enum { kLiteRtRankedTensorType = 0, kLiteRtUnrankedTensorType = 1 } LiteRtTensorTypeId;
typedef struct {
  float scale;
  int64_t zero_point;
} LiteRtQuantizationPerTensor;
typedef enum { kLiteRtQuantizationNone = 0, kLiteRtQuantizationPerTensor = 1 } LiteRtQuantizationTypeId;

// litert/c/litert_profiler_event.h
typedef enum { kEventOperator = 1 << 1, kEventDelegateOperator = 1 << 2, kEventDelegateProfiledOperator = 1 << 3 }
    LiteRtProfilerEventType;
typedef struct {
  size_t total_allocated_bytes, in_use_allocated_bytes, private_footprint_bytes;
} LiteRtMemoryUsage;
typedef int ProfiledEventSource;
typedef struct {
  const char* tag;
  LiteRtProfilerEventType event_type;
  uint64_t start_timestamp_us;
  uint64_t elapsed_time_us;
  LiteRtMemoryUsage begin_mem_usage;
  LiteRtMemoryUsage end_mem_usage;
  uint64_t event_metadata1;
  uint64_t event_metadata2;
  ProfiledEventSource event_source;
} ProfiledEventData;

LiteRtStatus LiteRtCreateEnvironment(int num_options, const LiteRtEnvOption* options, LiteRtEnvironment* env);
void LiteRtDestroyEnvironment(LiteRtEnvironment env);
// litert/c/internal/litert_accelerator.h
LiteRtStatus LiteRtGetNumAccelerators(LiteRtEnvironment env, LiteRtParamIndex* n);
LiteRtStatus LiteRtGetAccelerator(LiteRtEnvironment env, LiteRtParamIndex i, LiteRtAccelerator* accelerator);
LiteRtStatus LiteRtGetAcceleratorName(const LiteRtAcceleratorT* accelerator, const char** name);
LiteRtStatus LiteRtCreateModelFromBuffer(LiteRtEnvironment env, const void* addr, size_t size, LiteRtModel* model);
void LiteRtDestroyModel(LiteRtModel model);
LiteRtStatus LiteRtGetNumModelSignatures(LiteRtModel model, LiteRtParamIndex* n);
LiteRtStatus LiteRtGetModelSignature(LiteRtModel model, LiteRtParamIndex i, LiteRtSignature* signature);
LiteRtStatus LiteRtGetSignatureKey(LiteRtSignature signature, const char** key);
LiteRtStatus LiteRtGetSignatureSubgraph(LiteRtSignature signature, LiteRtSubgraph* subgraph);
LiteRtStatus LiteRtGetNumSignatureInputs(LiteRtSignature signature, LiteRtParamIndex* n);
LiteRtStatus LiteRtGetSignatureInputName(LiteRtSignature signature, LiteRtParamIndex i, const char** name);
LiteRtStatus LiteRtGetSignatureInputTensorByIndex(LiteRtSignature signature, LiteRtParamIndex i, LiteRtTensor* t);
LiteRtStatus LiteRtGetNumSignatureOutputs(LiteRtSignature signature, LiteRtParamIndex* n);
LiteRtStatus LiteRtGetSignatureOutputName(LiteRtSignature signature, LiteRtParamIndex i, const char** name);
LiteRtStatus LiteRtGetSignatureOutputTensorByIndex(LiteRtSignature signature, LiteRtParamIndex i, LiteRtTensor* t);
LiteRtStatus LiteRtGetNumSubgraphInputs(LiteRtSubgraph subgraph, LiteRtParamIndex* n);
LiteRtStatus LiteRtGetSubgraphInput(LiteRtSubgraph subgraph, LiteRtParamIndex i, LiteRtTensor* t);
LiteRtStatus LiteRtGetNumSubgraphOutputs(LiteRtSubgraph subgraph, LiteRtParamIndex* n);
LiteRtStatus LiteRtGetSubgraphOutput(LiteRtSubgraph subgraph, LiteRtParamIndex i, LiteRtTensor* t);
LiteRtStatus LiteRtGetNumSubgraphOps(LiteRtSubgraph subgraph, LiteRtParamIndex* n);
LiteRtStatus LiteRtGetTensorName(LiteRtTensor tensor, const char** name);
LiteRtStatus LiteRtGetTensorIndex(LiteRtTensor tensor, uint32_t* index);
LiteRtStatus LiteRtGetTensorTypeId(LiteRtTensor tensor, LiteRtTensorTypeId* id);
LiteRtStatus LiteRtGetRankedTensorType(LiteRtTensor tensor, LiteRtRankedTensorType* type);
LiteRtStatus LiteRtGetQuantizationTypeId(LiteRtTensor tensor, LiteRtQuantizationTypeId* id);
LiteRtStatus LiteRtGetPerTensorQuantization(LiteRtTensor tensor, LiteRtQuantizationPerTensor* q);

LiteRtStatus LiteRtCreateOptions(LiteRtOptions* options);
void LiteRtDestroyOptions(LiteRtOptions options);
LiteRtStatus LiteRtSetOptionsHardwareAccelerators(LiteRtOptions options, LiteRtHwAcceleratorSet accelerators);
LiteRtStatus LiteRtAddOpaqueOptions(LiteRtOptions options, LiteRtOpaqueOptions opaque);
LiteRtStatus LiteRtCreateOpaqueOptions(const char* identifier, void* payload, void (*destructor)(void*),
                                       LiteRtOpaqueOptions* options);

LiteRtStatus LiteRtCreateCompiledModel(LiteRtEnvironment env, LiteRtModel model, LiteRtOptions options,
                                       LiteRtCompiledModel* compiled);
void LiteRtDestroyCompiledModel(LiteRtCompiledModel compiled);
LiteRtStatus LiteRtGetCompiledModelInputBufferRequirements(LiteRtCompiledModel compiled, LiteRtParamIndex signature,
                                                           LiteRtParamIndex i, LiteRtTensorBufferRequirements* r);
LiteRtStatus LiteRtGetCompiledModelOutputBufferRequirements(LiteRtCompiledModel compiled, LiteRtParamIndex signature,
                                                            LiteRtParamIndex i, LiteRtTensorBufferRequirements* r);
LiteRtStatus LiteRtGetCompiledModelInputTensorLayout(LiteRtCompiledModel compiled, LiteRtParamIndex signature,
                                                     LiteRtParamIndex i, LiteRtLayout* layout);
LiteRtStatus LiteRtGetCompiledModelOutputTensorLayouts(LiteRtCompiledModel compiled, LiteRtParamIndex signature,
                                                       size_t num_layouts, LiteRtLayout* layouts,
                                                       bool update_allocation);
LiteRtStatus LiteRtRunCompiledModel(LiteRtCompiledModel compiled, LiteRtParamIndex signature, size_t num_inputs,
                                    LiteRtTensorBuffer* inputs, size_t num_outputs, LiteRtTensorBuffer* outputs);
LiteRtStatus LiteRtCompiledModelIsFullyAccelerated(LiteRtCompiledModel compiled, bool* fully_accelerated);
LiteRtStatus LiteRtCompiledModelGetErrorMessages(LiteRtCompiledModel compiled, char** messages);
LiteRtStatus LiteRtCompiledModelGetProfiler(LiteRtCompiledModel compiled, LiteRtProfiler* profiler);

LiteRtStatus LiteRtCreateManagedTensorBufferFromRequirements(LiteRtEnvironment env,
                                                             const LiteRtRankedTensorType* type,
                                                             LiteRtTensorBufferRequirements requirements,
                                                             LiteRtTensorBuffer* buffer);
LiteRtStatus LiteRtGetTensorBufferRequirementsBufferSize(LiteRtTensorBufferRequirements r, size_t* size);
void LiteRtDestroyTensorBuffer(LiteRtTensorBuffer buffer);
LiteRtStatus LiteRtLockTensorBuffer(LiteRtTensorBuffer buffer, void** host_addr, LiteRtTensorBufferLockMode mode);
LiteRtStatus LiteRtUnlockTensorBuffer(LiteRtTensorBuffer buffer);

LiteRtStatus LiteRtStartProfiler(LiteRtProfiler profiler);
LiteRtStatus LiteRtStopProfiler(LiteRtProfiler profiler);
LiteRtStatus LiteRtGetNumProfilerEvents(LiteRtProfiler profiler, int* n);
LiteRtStatus LiteRtGetProfilerEvents(LiteRtProfiler profiler, int n, ProfiledEventData* events);
}  // extern "C"

using namespace edgeship_runner;

namespace {

LiteRtCompiledModel g_compiled = nullptr;  // for its error messages

const char* status_name(int s) {  // litert/c/litert_common.h
  switch (s) {
    case 1: return "InvalidArgument";
    case 2: return "MemoryAllocationFailure";
    case 3: return "RuntimeFailure";
    case 4: return "MissingInputTensor";
    case 5: return "Unsupported";
    case 6: return "NotFound";
    case 7: return "TimeoutExpired";
    case 8: return "WrongVersion";
    case 500: return "FileIO";
    case 501: return "InvalidFlatbuffer";
    case 502: return "DynamicLoading";
    case 504: return "Compilation";
    case 1000: return "IndexOOB";
    default: return "Unknown";
  }
}

void check(LiteRtStatus s, const char* stage, const std::string& what) {
  if (s == kLiteRtStatusOk) return;
  std::string detail;
  char* messages = nullptr;
  if (g_compiled && LiteRtCompiledModelGetErrorMessages(g_compiled, &messages) == kLiteRtStatusOk && messages) {
    detail = messages;
    std::free(messages);
    while (!detail.empty() && (detail.back() == '\n' || detail.back() == ' ')) detail.pop_back();
    std::replace(detail.begin(), detail.end(), '\n', ' ');
  }
  fail(stage, what + ": LiteRT status " + std::to_string(static_cast<int>(s)) + " " + status_name(static_cast<int>(s)) +
                  (detail.empty() ? "" : ": " + detail));
}

using DType = DTypeOf<LiteRtElementType>;
const DType kDTypes[] = {
    {"uint8", kLiteRtElementTypeUInt8, 1},     {"int8", kLiteRtElementTypeInt8, 1},
    {"int16", kLiteRtElementTypeInt16, 2},     {"uint16", kLiteRtElementTypeUInt16, 2},
    {"int32", kLiteRtElementTypeInt32, 4},     {"uint32", kLiteRtElementTypeUInt32, 4},
    {"int64", kLiteRtElementTypeInt64, 8},     {"uint64", kLiteRtElementTypeUInt64, 8},
    {"float16", kLiteRtElementTypeFloat16, 2}, {"float32", kLiteRtElementTypeFloat32, 4},
    {"float64", kLiteRtElementTypeFloat64, 8}, {"bool", kLiteRtElementTypeBool, 1},
};

const DType* dtype_of(LiteRtElementType t) { return edgeship_runner::dtype_of(kDTypes, t); }
const DType* dtype_named(const std::string& n) { return edgeship_runner::dtype_named(kDTypes, n); }
bool is_int(const DType* d) {
  return d->type != kLiteRtElementTypeFloat16 && d->type != kLiteRtElementTypeFloat32 &&
         d->type != kLiteRtElementTypeFloat64 && d->type != kLiteRtElementTypeBool;
}

struct Spec {
  std::string name, key;  // tensor name, signature key
  size_t sig_index = 0;   // its index in the signature (what the compiled model's buffers follow)
  const DType* dtype = nullptr;
  LiteRtRankedTensorType type{};
  std::vector<int32_t> sizes;
  size_t nbytes = 0;
  Quant quant;
};

// half-precision bits from a float, round to nearest even (as numpy's astype(float16))
uint16_t to_half(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000u, mant = x & 0x7fffffu;
  int exp = static_cast<int>((x >> 23) & 0xff);
  if (exp == 0xff) return static_cast<uint16_t>(sign | 0x7c00u | (mant ? 0x200u : 0));
  int e = exp - 127 + 15;
  if (e >= 0x1f) return static_cast<uint16_t>(sign | 0x7c00u);
  if (e <= 0) {
    if (e < -10) return static_cast<uint16_t>(sign);
    mant |= 0x800000u;
    int shift = 14 - e;
    uint32_t h = mant >> shift, rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1))) ++h;
    return static_cast<uint16_t>(sign | h);
  }
  uint32_t h = (static_cast<uint32_t>(e) << 10) | (mant >> 13), rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) ++h;
  return static_cast<uint16_t>(sign | h);
}

template <typename T>
void store(uint8_t* dst, size_t i, double v) {
  reinterpret_cast<T*>(dst)[i] = static_cast<T>(v);
}

double load(const uint8_t* src, const DType* d, size_t i) {
  switch (d->type) {
    case kLiteRtElementTypeUInt8: return reinterpret_cast<const uint8_t*>(src)[i];
    case kLiteRtElementTypeInt8: return reinterpret_cast<const int8_t*>(src)[i];
    case kLiteRtElementTypeInt16: return reinterpret_cast<const int16_t*>(src)[i];
    case kLiteRtElementTypeUInt16: return reinterpret_cast<const uint16_t*>(src)[i];
    case kLiteRtElementTypeInt32: return reinterpret_cast<const int32_t*>(src)[i];
    case kLiteRtElementTypeUInt32: return reinterpret_cast<const uint32_t*>(src)[i];
    case kLiteRtElementTypeInt64: return static_cast<double>(reinterpret_cast<const int64_t*>(src)[i]);
    case kLiteRtElementTypeUInt64: return static_cast<double>(reinterpret_cast<const uint64_t*>(src)[i]);
    case kLiteRtElementTypeFloat32: return reinterpret_cast<const float*>(src)[i];
    case kLiteRtElementTypeFloat64: return reinterpret_cast<const double*>(src)[i];
    case kLiteRtElementTypeBool: return src[i] ? 1.0 : 0.0;
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
  if (from->type == kLiteRtElementTypeFloat16)
    fail("read", "input " + std::to_string(index) + ": float16 files are not read; send float32");
  bool quantize = is_int(to.dtype) && !is_int(from) && to.quant.set;
  for (size_t i = 0; i < count; ++i) {
    double v = load(src, from, i);
    if (quantize) {  // np.round(x.astype(float64) / scale) + zp, clipped
      v = std::nearbyint(v / to.quant.scale) + static_cast<double>(to.quant.zero_point);
      double lo = 0, hi = 0;
      switch (to.dtype->type) {
        case kLiteRtElementTypeInt8: lo = -128, hi = 127; break;
        case kLiteRtElementTypeUInt8: lo = 0, hi = 255; break;
        case kLiteRtElementTypeInt16: lo = -32768, hi = 32767; break;
        case kLiteRtElementTypeUInt16: lo = 0, hi = 65535; break;
        case kLiteRtElementTypeInt32: lo = -2147483648.0, hi = 2147483647.0; break;
        default: lo = -9.2e18, hi = 9.2e18;
      }
      v = v < lo ? lo : (v > hi ? hi : v);
    } else if (is_int(to.dtype)) {
      v = std::trunc(v);  // numpy's float -> int cast
    }
    switch (to.dtype->type) {
      case kLiteRtElementTypeUInt8: store<uint8_t>(dst, i, v); break;
      case kLiteRtElementTypeInt8: store<int8_t>(dst, i, v); break;
      case kLiteRtElementTypeInt16: store<int16_t>(dst, i, v); break;
      case kLiteRtElementTypeUInt16: store<uint16_t>(dst, i, v); break;
      case kLiteRtElementTypeInt32: store<int32_t>(dst, i, v); break;
      case kLiteRtElementTypeUInt32: store<uint32_t>(dst, i, v); break;
      case kLiteRtElementTypeInt64: store<int64_t>(dst, i, v); break;
      case kLiteRtElementTypeUInt64: store<uint64_t>(dst, i, v); break;
      case kLiteRtElementTypeFloat32: store<float>(dst, i, v); break;
      case kLiteRtElementTypeFloat64: store<double>(dst, i, v); break;
      case kLiteRtElementTypeBool: dst[i] = v != 0.0; break;
      case kLiteRtElementTypeFloat16: {
        uint16_t h = to_half(static_cast<float>(v));
        std::memcpy(dst + 2 * i, &h, 2);
        break;
      }
      default: fail("run", "input " + std::to_string(index) + ": cannot feed a " + to.dtype->name + " input");
    }
  }
}






void describe_tensor(LiteRtTensor t, Spec* s, const char* side, size_t i) {
  const char* name = nullptr;
  if (LiteRtGetTensorName(t, &name) == kLiteRtStatusOk && name) s->name = name;
  LiteRtTensorTypeId id;
  check(LiteRtGetTensorTypeId(t, &id), "load", std::string(side) + " " + std::to_string(i) + " type");
  if (id != kLiteRtRankedTensorType) fail("load", std::string(side) + " " + std::to_string(i) + " is unranked");
  check(LiteRtGetRankedTensorType(t, &s->type), "load", std::string(side) + " " + std::to_string(i) + " type");
  s->dtype = dtype_of(s->type.element_type);
  if (!s->dtype)
    fail("load", std::string(side) + " " + std::to_string(i) + " has element type " +
                     std::to_string(static_cast<int>(s->type.element_type)) + ", which this runner does not handle");
  LiteRtQuantizationTypeId q;
  if (is_int(s->dtype) && LiteRtGetQuantizationTypeId(t, &q) == kLiteRtStatusOk && q == kLiteRtQuantizationPerTensor) {
    LiteRtQuantizationPerTensor pt;
    if (LiteRtGetPerTensorQuantization(t, &pt) == kLiteRtStatusOk && pt.scale != 0.0f) {
      s->quant.set = true;
      s->quant.scale = static_cast<double>(pt.scale);
      s->quant.zero_point = static_cast<long>(pt.zero_point);
    }
  }
}

void set_layout(Spec* s, const LiteRtLayout& layout, const char* side, size_t i) {
  s->type.layout = layout;
  s->sizes.assign(layout.dimensions, layout.dimensions + layout.rank);
  size_t n = 1;
  for (auto d : s->sizes) {
    if (d < 0) fail("load", std::string(side) + " " + std::to_string(i) + " has a dynamic shape " + shape_text(s->sizes));
    n *= static_cast<size_t>(d);
  }
  s->nbytes = n * s->dtype->size;
}

std::string describe(const std::vector<Spec>& specs) {
  std::string out = "[";
  for (size_t i = 0; i < specs.size(); ++i) {
    out += std::string(i ? "," : "") + "{\"name\":" + json_str(specs[i].name) + ",\"signature_key\":" +
           json_str(specs[i].key) + ",\"dtype\":" + json_str(specs[i].dtype->name) +
           ",\"shape\":" + shape_text(specs[i].sizes) + ",\"quantization\":";
    out += quant_json(specs[i].quant) + "}";
  }
  return out + "]";
}

void delete_chars(void* p) { delete[] static_cast<char*>(p); }

LiteRtOpaqueOptions toml_options(const char* identifier, const std::string& toml) {
  char* payload = new char[toml.size() + 1];
  std::memcpy(payload, toml.c_str(), toml.size() + 1);
  LiteRtOpaqueOptions opaque = nullptr;
  check(LiteRtCreateOpaqueOptions(identifier, payload, delete_chars, &opaque), "load", "options");
  return opaque;
}

std::string runtime_name() { return std::string("litert-native ") + EDGESHIP_LITERT_VERSION; }

std::string run(int argc, char** argv, std::string* partial) {
  std::string profile_path;
  Wants want;
  Args a = parse_args(
      argc, argv, "usage: litert_runner MODEL.tflite --samples N --out-dir DIR --input FILE[:DTYPE]...",
      [](const std::string& n) { return dtype_named(n) != nullptr; },
      [&](const std::string& k, const std::function<std::string()>& next) {
        if (k == "--want") return parse_want(next, &want);
        if (k != "--profile") return false;
        profile_path = next();
        return true;
      });
  std::ostringstream js;
  js << platform_json(runtime_name());
  *partial = js.str();

  double rss_before = peak_rss_mb();
  auto t0 = Clock::now();
  LiteRtEnvironment env = nullptr;
  check(LiteRtCreateEnvironment(0, nullptr, &env), "load", "cannot create the LiteRT environment");
  // from a buffer, not LiteRtCreateModelFromFile: only the buffer path runs the flatbuffer verifier
  // (the Python interpreter verifies too), so a damaged file is an error here, not a crash later
  size_t model_size = 0;
  const void* model_bytes = map_model(a.model, &model_size, "a TFLite model");
  LiteRtModel model = nullptr;
  check(LiteRtCreateModelFromBuffer(env, model_bytes, model_size, &model), "load",
        "cannot load '" + a.model + "' as a LiteRT model (corrupt, truncated or not a .tflite)");
  LiteRtParamIndex n_sigs = 0;
  check(LiteRtGetNumModelSignatures(model, &n_sigs), "load", "signatures");
  if (n_sigs < 1) fail("load", "the model has no signature");
  LiteRtSignature sig;
  check(LiteRtGetModelSignature(model, 0, &sig), "load", "signature 0");
  LiteRtSubgraph graph;
  check(LiteRtGetSignatureSubgraph(sig, &graph), "load", "signature 0's subgraph");

  // the signature's inputs/outputs, each placed where the subgraph lists its tensor
  auto collect = [&](bool inputs) {
    const char* side = inputs ? "input" : "output";
    LiteRtParamIndex n_sig = 0, n_graph = 0;
    check(inputs ? LiteRtGetNumSignatureInputs(sig, &n_sig) : LiteRtGetNumSignatureOutputs(sig, &n_sig), "load", side);
    check(inputs ? LiteRtGetNumSubgraphInputs(graph, &n_graph) : LiteRtGetNumSubgraphOutputs(graph, &n_graph), "load",
          side);
    std::vector<Spec> sig_specs(n_sig);
    std::vector<uint32_t> sig_index_of(n_sig, UINT32_MAX);
    for (LiteRtParamIndex i = 0; i < n_sig; ++i) {
      LiteRtTensor t;
      const char* key = nullptr;
      check(inputs ? LiteRtGetSignatureInputTensorByIndex(sig, i, &t) : LiteRtGetSignatureOutputTensorByIndex(sig, i, &t),
            "load", std::string(side) + " " + std::to_string(i));
      if ((inputs ? LiteRtGetSignatureInputName(sig, i, &key) : LiteRtGetSignatureOutputName(sig, i, &key)) ==
              kLiteRtStatusOk && key)
        sig_specs[i].key = key;
      sig_specs[i].sig_index = i;
      describe_tensor(t, &sig_specs[i], side, i);
      LiteRtGetTensorIndex(t, &sig_index_of[i]);
    }
    std::vector<Spec> own;
    std::vector<bool> placed(n_sig, false);
    for (LiteRtParamIndex g = 0; g < n_graph && n_graph == n_sig; ++g) {
      LiteRtTensor t;
      uint32_t index = UINT32_MAX - 1;
      if ((inputs ? LiteRtGetSubgraphInput(graph, g, &t) : LiteRtGetSubgraphOutput(graph, g, &t)) != kLiteRtStatusOk)
        break;
      LiteRtGetTensorIndex(t, &index);
      for (LiteRtParamIndex i = 0; i < n_sig; ++i)
        if (!placed[i] && sig_index_of[i] == index) {
          placed[i] = true;
          own.push_back(sig_specs[i]);
          break;
        }
    }
    if (own.size() != n_sig) own = sig_specs;  // no match: the signature's own order
    return own;
  };
  std::vector<Spec> ins = collect(true), outs = collect(false);

  LiteRtOptions options = nullptr;
  check(LiteRtCreateOptions(&options), "load", "options");
  check(LiteRtSetOptionsHardwareAccelerators(options, kLiteRtHwAcceleratorCpu), "load", "options");
  check(LiteRtAddOpaqueOptions(options, toml_options("xnnpack", "num_threads = " + std::to_string(a.threads) + "\n")),
        "load", "CPU options");
  if (!profile_path.empty())
    check(LiteRtAddOpaqueOptions(options, toml_options("runtime_options_string", "enable_profiling = true\n")), "load",
          "runtime options");
  LiteRtCompiledModel compiled = nullptr;
  check(LiteRtCreateCompiledModel(env, model, options, &compiled), "load",
        "cannot compile '" + a.model + "' for the CPU (XNNPACK)");
  g_compiled = compiled;

  for (auto& s : ins) {
    LiteRtLayout layout;
    check(LiteRtGetCompiledModelInputTensorLayout(compiled, 0, s.sig_index, &layout), "load", "input layout");
    set_layout(&s, layout, "input", s.sig_index);
  }
  {
    std::vector<LiteRtLayout> layouts(outs.size());
    check(LiteRtGetCompiledModelOutputTensorLayouts(compiled, 0, layouts.size(), layouts.data(), true), "load",
          "output layouts");
    for (auto& s : outs) set_layout(&s, layouts[s.sig_index], "output", s.sig_index);
  }
  // the signature's order, as the compiled model takes its buffers
  std::vector<LiteRtTensorBuffer> in_bufs(ins.size()), out_bufs(outs.size());
  for (auto& s : ins) {
    LiteRtTensorBufferRequirements r;
    check(LiteRtGetCompiledModelInputBufferRequirements(compiled, 0, s.sig_index, &r), "load", "input buffer");
    check(LiteRtCreateManagedTensorBufferFromRequirements(env, &s.type, r, &in_bufs[s.sig_index]), "load",
          "input buffer");
  }
  for (auto& s : outs) {
    LiteRtTensorBufferRequirements r;
    check(LiteRtGetCompiledModelOutputBufferRequirements(compiled, 0, s.sig_index, &r), "load", "output buffer");
    check(LiteRtCreateManagedTensorBufferFromRequirements(env, &s.type, r, &out_bufs[s.sig_index]), "load",
          "output buffer");
  }
  auto key_of = [](const Spec& s) { return s.key; };  // what a wanted key matches: the signature key
  ins = ordered(ins, want["input"], key_of);
  outs = ordered(outs, want["output"], key_of);
  for (size_t i = 0; i < ins.size(); ++i) {
    if (ins[i].quant.set || !a.quant.count("input" + std::to_string(i))) continue;
    if (is_int(ins[i].dtype)) ins[i].quant = a.quant["input" + std::to_string(i)];
  }
  for (size_t i = 0; i < outs.size(); ++i) {
    if (outs[i].quant.set || !a.quant.count("output" + std::to_string(i))) continue;
    if (is_int(outs[i].dtype)) outs[i].quant = a.quant["output" + std::to_string(i)];
  }
  double init_ms = ms_since(t0);

  bool full = false;
  bool known = LiteRtCompiledModelIsFullyAccelerated(compiled, &full) == kLiteRtStatusOk;
  LiteRtParamIndex n_ops = 0;
  LiteRtGetNumSubgraphOps(graph, &n_ops);
  js << ",\"init_ms\":" << num(init_ms) << ",\"threads\":" << a.threads;
  js << ",\"inputs\":" << describe(ins) << ",\"outputs\":" << describe(outs);
  *partial = js.str();

  // inputs: read and converted a sample at a time
  InputFeed<Spec, DType> feed(
      a, ins, "model", [](const std::string& d) { return dtype_named(d); }, convert_sample);

  LiteRtProfiler profiler = nullptr;
  if (!profile_path.empty()) {
    check(LiteRtCompiledModelGetProfiler(compiled, &profiler), "load", "the profiler");
    check(LiteRtStartProfiler(profiler), "load", "starting the profiler");
  }

  std::vector<std::vector<uint8_t>> results(outs.size());
  auto run_once = [&](size_t s, bool keep) {
    for (size_t j = 0; j < ins.size(); ++j) {
      void* p = nullptr;
      check(LiteRtLockTensorBuffer(in_bufs[ins[j].sig_index], &p, kLiteRtTensorBufferLockModeWrite), "run",
            "lock input");
      std::memcpy(p, feed.at(j), ins[j].nbytes);
      LiteRtUnlockTensorBuffer(in_bufs[ins[j].sig_index]);
    }
    check(LiteRtRunCompiledModel(compiled, 0, in_bufs.size(), in_bufs.data(), out_bufs.size(), out_bufs.data()), "run",
          "run failed on sample " + std::to_string(s));
    if (!keep) return;
    for (size_t k = 0; k < outs.size(); ++k) {
      void* p = nullptr;
      check(LiteRtLockTensorBuffer(out_bufs[outs[k].sig_index], &p, kLiteRtTensorBufferLockModeRead), "run",
            "lock output");
      const uint8_t* b = static_cast<const uint8_t*>(p);
      results[k].insert(results[k].end(), b, b + outs[k].nbytes);
      LiteRtUnlockTensorBuffer(out_bufs[outs[k].sig_index]);
    }
  };
  js << run_protocol(a, results, [&](size_t s) { feed.load(s); }, run_once);
  if (profiler) {
    LiteRtStopProfiler(profiler);
    int count = 0;
    check(LiteRtGetNumProfilerEvents(profiler, &count), "profile", "profiler events");
    std::vector<ProfiledEventData> events(static_cast<size_t>(std::max(count, 0)));
    if (count > 0) check(LiteRtGetProfilerEvents(profiler, count, events.data()), "profile", "profiler events");
    std::ofstream f(profile_path);
    for (const auto& e : events) {
      std::string tag = e.tag ? e.tag : "";
      std::replace(tag.begin(), tag.end(), '\t', ' ');
      std::replace(tag.begin(), tag.end(), '\n', ' ');
      f << static_cast<int>(e.event_type) << '\t' << e.elapsed_time_us << '\t'
        << static_cast<long long>(e.event_metadata1) << '\t' << tag << '\n';
    }
    if (!f) fail("write", "cannot write " + profile_path);
    js << ",\"profile\":" << json_str(profile_path) << ",\"profile_events\":" << count;
  }
  double peak = peak_rss_mb();

  // Which ops XNNPACK took. Fully delegated: LiteRT says so. Otherwise the ops LiteRT's own kernels
  // ran are the operator events of a profiled run (XNNPACK's partitions report none): counted from
  // this run's profile, or (no --profile) from one more run of a compiled model with the profiler
  // on, made after the timed runs and the peak so that neither pays for it.
  long undelegated = -1;
  if (known && full) {
    undelegated = 0;
  } else if (known) {
    std::vector<ProfiledEventData> events;
    if (!profiler) {
      LiteRtDestroyCompiledModel(compiled);
      g_compiled = nullptr;
      LiteRtOptions probe_options = nullptr;
      check(LiteRtCreateOptions(&probe_options), "delegation", "options");
      check(LiteRtSetOptionsHardwareAccelerators(probe_options, kLiteRtHwAcceleratorCpu), "delegation", "options");
      check(LiteRtAddOpaqueOptions(probe_options, toml_options("xnnpack", "num_threads = " + std::to_string(a.threads) +
                                                                              "\n")), "delegation", "CPU options");
      check(LiteRtAddOpaqueOptions(probe_options, toml_options("runtime_options_string", "enable_profiling = true\n")),
            "delegation", "runtime options");
      check(LiteRtCreateCompiledModel(env, model, probe_options, &compiled), "delegation", "profiled compiled model");
      g_compiled = compiled;
      check(LiteRtCompiledModelGetProfiler(compiled, &profiler), "delegation", "the profiler");
      check(LiteRtStartProfiler(profiler), "delegation", "starting the profiler");
      feed.load(0);
      run_once(0, false);
    }
    LiteRtStopProfiler(profiler);
    int count = 0;
    if (LiteRtGetNumProfilerEvents(profiler, &count) == kLiteRtStatusOk && count > 0) {
      events.resize(static_cast<size_t>(count));
      if (LiteRtGetProfilerEvents(profiler, count, events.data()) != kLiteRtStatusOk) events.clear();
    }
    std::vector<bool> seen(n_ops, false);
    undelegated = 0;
    for (const auto& e : events)
      // metadata1 is the node's index in its subgraph, metadata2 the subgraph's: a WHILE's condition and
      // body (subgraphs 1..) number their nodes from 0 too, and are not the n_ops counted here (subgraph 0's,
      // as inspect counts them: runtime/standalone/tflite.py delegated_ops)
      if (e.event_type == kEventOperator && e.event_metadata2 == 0 && e.event_metadata1 < n_ops &&
          !seen[e.event_metadata1]) {
        seen[e.event_metadata1] = true;
        ++undelegated;
      }
  }
  long delegated = undelegated < 0 ? -1 : static_cast<long>(n_ops) - undelegated;
  std::string detail = delegated < 0 ? std::string("cannot tell which ops XNNPACK took")
                       : delegated == static_cast<long>(n_ops)
                           ? "all " + std::to_string(n_ops) + " ops delegated to XNNPACK"
                           : std::to_string(delegated) + " of " + std::to_string(n_ops) +
                                 " ops delegated to XNNPACK; " + std::to_string(undelegated) +
                                 " on LiteRT's own CPU kernels (LiteRT's profiler)";
  detail += "; " + std::to_string(a.threads) + " threads";
  js << ",\"delegate\":{\"name\":\"XNNPACK\",\"active\":" << (delegated < 0 ? "null" : delegated > 0 ? "true" : "false")
     << ",\"fully_delegated\":" << (!known ? "null" : full ? "true" : "false") << ",\"total_ops\":" << n_ops;
  if (delegated >= 0) js << ",\"delegated_ops\":" << delegated;
  js << ",\"detail\":" << json_str(detail) << "}";
  js << ",\"peak_rss_mb\":" << num(peak) << ",\"rss_before_load_mb\":" << num(rss_before);
  // buffers, compiled model, model and environment go with the process
  return js.str();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::strcmp(argv[1], "--probe") == 0) {  // the accelerators this libLiteRt.so registers
    LiteRtEnvironment env = nullptr;
    bool ok = LiteRtCreateEnvironment(0, nullptr, &env) == kLiteRtStatusOk;
    std::string names;
    LiteRtParamIndex n = 0;
    if (ok && LiteRtGetNumAccelerators(env, &n) == kLiteRtStatusOk) {
      for (LiteRtParamIndex i = 0; i < n; ++i) {
        LiteRtAccelerator acc = nullptr;
        const char* name = nullptr;
        if (LiteRtGetAccelerator(env, i, &acc) == kLiteRtStatusOk && acc &&
            LiteRtGetAcceleratorName(acc, &name) == kLiteRtStatusOk && name)
          names += std::string(names.empty() ? "" : ",") + json_str(name);
      }
    }
    std::printf("\n{\"ok\":%s,%s,\"backends\":[%s]}\n", ok ? "true" : "false", platform_json(runtime_name()).c_str(),
                names.c_str());
    return ok ? 0 : 1;
  }
  return agent_main([&](std::string* partial) { return run(argc, argv, partial); });
}
