// The agent protocol the native runners speak (pte_runner.cpp, litert_runner.cpp, ort_runner.cpp): arguments,
// input files, the first/warm-up/timed runs, raw output files and the JSON report. Each runner
// brings its runtime: loading, tensor specs, dtype conversion and one run.
//
//   RUNNER MODEL --samples N --out-dir DIR [--input FILE:DTYPE]... [--quant SIDE:I:SCALE:ZP]...
//          [--threads 1] [--warmup 5] [--runs 50] [--max-seconds 30] [runner's own options]
//
// Each --input file holds N samples of one input, back to back, raw, in DTYPE (float32 unless said).
// DIR/output_K.bin gets N samples of output K raw, in the model's dtype. The last line on stdout is
// one JSON object: {"ok": true, ...} or {"ok": false, "stage", "error"}. Timings: the first run,
// then warm-up runs untimed and timed runs over the samples in turn (i % N), stopping after
// --max-seconds once 3 runs are timed. Part of edgeship (runtime/native_build.py builds it in).

#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace edgeship_runner {

using Clock = std::chrono::steady_clock;

inline std::string json_str(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

inline std::string num(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

inline double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

inline double peak_rss_mb() {  // VmHWM: this process's own peak resident memory
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::atof(line.c_str() + 6) / 1024.0;
  return -1;
}

struct Fail {
  std::string stage, error;
};

[[noreturn]] inline void fail(const std::string& stage, const std::string& error) { throw Fail{stage, error}; }

// "platform":{...},"runtime":"NAME VERSION"
inline std::string platform_json(const std::string& runtime) {
  struct utsname u;
  uname(&u);
  std::ostringstream js;
  js << "\"platform\":{\"machine\":" << json_str(u.machine) << ",\"cpus\":" << sysconf(_SC_NPROCESSORS_ONLN) << "}";
  js << ",\"runtime\":" << json_str(runtime);
  return js.str();
}

// A runner's dtype table entry: the protocol's name, the runtime's own type, bytes per element.
template <typename Type>
struct DTypeOf {
  const char* name;
  Type type;
  size_t size;
};

template <typename D, size_t N>
const D* dtype_of(const D (&table)[N], decltype(D::type) t) {
  for (const auto& d : table)
    if (d.type == t) return &d;
  return nullptr;
}
template <typename D, size_t N>
const D* dtype_named(const D (&table)[N], const std::string& n) {
  for (const auto& d : table)
    if (n == d.name) return &d;
  return nullptr;
}

struct Quant {
  bool set = false;
  double scale = 1.0;
  long zero_point = 0;
};

inline std::string quant_json(const Quant& q) {
  return q.set ? "{\"scale\":" + num(q.scale) + ",\"zero_point\":" + std::to_string(q.zero_point) + "}" : "null";
}

template <typename Int>
std::string shape_text(const std::vector<Int>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? "," : "") + std::to_string(s[i]);
  return out + "]";
}

struct Args {
  std::string model, out_dir;
  std::vector<std::pair<std::string, std::string>> inputs;  // file, dtype name
  std::map<std::string, Quant> quant;                       // "input0" -> scale/zp
  long samples = 1, threads = 1, warmup = 5, runs = 50;
  double max_seconds = 30.0;
};

// The runner's own options: EXTRA(option, next) takes one (next() reads its next value) and says
// whether it did. KNOWN_DTYPE says which ":DTYPE" suffixes of --input are dtypes (else the whole
// value is the file, float32).
inline Args parse_args(int argc, char** argv, const std::string& usage,
                       const std::function<bool(const std::string&)>& known_dtype,
                       const std::function<bool(const std::string&, const std::function<std::string()>&)>& extra) {
  Args a;
  int i = 1;
  auto need = [&]() -> std::string {
    if (i + 1 >= argc) fail("arguments", std::string(argv[i]) + " needs a value");
    return argv[++i];
  };
  for (; i < argc; ++i) {
    std::string k = argv[i];
    if (k == "--samples") a.samples = std::atol(need().c_str());
    else if (k == "--threads") a.threads = std::atol(need().c_str());
    else if (k == "--warmup") a.warmup = std::atol(need().c_str());
    else if (k == "--runs") a.runs = std::atol(need().c_str());
    else if (k == "--max-seconds") a.max_seconds = std::atof(need().c_str());
    else if (k == "--out-dir") a.out_dir = need();
    else if (k == "--input") {
      std::string v = need();
      auto colon = v.rfind(':');
      if (colon != std::string::npos && known_dtype(v.substr(colon + 1)))
        a.inputs.emplace_back(v.substr(0, colon), v.substr(colon + 1));
      else a.inputs.emplace_back(v, "float32");
    } else if (k == "--quant") {  // SIDE:I:SCALE:ZP, e.g. input:0:0.0123:-128
      std::string v = need();
      std::replace(v.begin(), v.end(), ':', ' ');
      std::istringstream in(v);
      std::string side;
      int idx;
      Quant q;
      if (!(in >> side >> idx >> q.scale >> q.zero_point)) fail("arguments", "--quant takes SIDE:I:SCALE:ZP");
      q.set = true;
      a.quant[side + std::to_string(idx)] = q;
    } else if (extra(k, need)) {
    } else if (!k.empty() && k[0] == '-') fail("arguments", "unknown option " + k);
    else if (a.model.empty()) a.model = k;
    else fail("arguments", "unexpected argument " + k);
  }
  if (a.model.empty()) fail("arguments", usage);
  if (a.samples < 1) fail("arguments", "--samples must be at least 1");
  return a;
}

// The --input files, checked against the model's input specs (each with dtype->size, nbytes and
// sizes) and read a sample at a time: load(s) puts sample s of every input, converted to the
// model's bytes, at at(j). One sample per input is held, whatever N (a whole file, or every
// sample converted ahead, would be N times the input in memory). CONVERT(src, from, spec, dst, j)
// turns one sample of a FROM file into the model's bytes; MODEL is the error messages' word for it
// ("program", "model").
template <typename Spec, typename DType>
class InputFeed {
 public:
  using Convert = std::function<void(const uint8_t*, const DType*, const Spec&, uint8_t*, int)>;

  InputFeed(const Args& a, const std::vector<Spec>& ins, const char* model,
            const std::function<const DType*(const std::string&)>& dtype_named, Convert convert)
      : ins_(ins), convert_(std::move(convert)), inputs_(ins.size()) {
    if (a.inputs.size() != ins.size())
      fail("read", std::string("the ") + model + " takes " + std::to_string(ins.size()) + " inputs, got " +
                       std::to_string(a.inputs.size()) + " --input files");
    const size_t n = static_cast<size_t>(a.samples);
    for (size_t j = 0; j < ins.size(); ++j) {
      Input& in = inputs_[j];
      in.path = a.inputs[j].first;
      in.from = dtype_named(a.inputs[j].second);
      in.per = ins[j].nbytes / ins[j].dtype->size * in.from->size;
      in.file.open(in.path, std::ios::binary);
      if (!in.file) fail("read", "cannot read input file " + in.path);
      in.file.seekg(0, std::ios::end);
      auto size = static_cast<long long>(in.file.tellg());
      if (size < 0 || static_cast<unsigned long long>(size) != in.per * n)
        fail("read", "input " + std::to_string(j) + " (" + in.path + "): expected " + std::to_string(n) +
                         " samples of shape " + shape_text(ins[j].sizes) + " " + in.from->name + " (" +
                         std::to_string(in.per * n) + " bytes), got " + std::to_string(size < 0 ? 0 : size) + " bytes");
      in.raw.resize(in.per);
      in.bytes.resize(ins[j].nbytes);
    }
  }

  void load(size_t s) {
    if (s == loaded_) return;
    loaded_ = SIZE_MAX;
    for (size_t j = 0; j < inputs_.size(); ++j) {
      Input& in = inputs_[j];
      in.file.clear();
      in.file.seekg(static_cast<std::streamoff>(s * in.per));
      if (!in.file.read(reinterpret_cast<char*>(in.raw.data()), static_cast<std::streamsize>(in.per)))
        fail("read", "cannot read sample " + std::to_string(s) + " of input file " + in.path);
      convert_(in.raw.data(), in.from, ins_[j], in.bytes.data(), static_cast<int>(j));
    }
    loaded_ = s;
  }

  uint8_t* at(size_t j) { return inputs_[j].bytes.data(); }

 private:
  struct Input {
    std::string path;
    std::ifstream file;
    const DType* from = nullptr;
    size_t per = 0;
    std::vector<uint8_t> raw, bytes;
  };
  const std::vector<Spec>& ins_;
  Convert convert_;
  std::vector<Input> inputs_;
  size_t loaded_ = SIZE_MAX;
};

// The first run (timed), the other samples, DIR/output_K.bin, then the warm-up and timed runs.
// LOAD(s) readies sample s (untimed); RUN_ONCE(s, keep) runs it, and with keep appends each
// output's bytes to RESULTS[k].
template <typename Load, typename RunOnce>
std::string run_protocol(const Args& a, std::vector<std::vector<uint8_t>>& results, Load load, RunOnce run_once) {
  const size_t n = static_cast<size_t>(a.samples);
  std::ostringstream js;
  load(0);
  auto t0 = Clock::now();
  run_once(0, true);
  double first_ms = ms_since(t0);
  for (size_t s = 1; s < n; ++s) {
    load(s);
    run_once(s, true);
  }
  if (!a.out_dir.empty()) {
    for (size_t k = 0; k < results.size(); ++k) {
      std::string path = a.out_dir + "/output_" + std::to_string(k) + ".bin";
      std::ofstream f(path, std::ios::binary);
      f.write(reinterpret_cast<const char*>(results[k].data()), static_cast<std::streamsize>(results[k].size()));
      if (!f) fail("write", "cannot write " + path);
    }
  }
  js << ",\"first_ms\":" << num(first_ms) << ",\"samples\":" << n;

  for (long i = 0; i < a.warmup; ++i) {
    load(static_cast<size_t>(i) % n);
    run_once(static_cast<size_t>(i) % n, false);
  }
  std::vector<double> timed;
  auto start = Clock::now();
  for (long i = 0; i < a.runs; ++i) {
    load(static_cast<size_t>(i) % n);
    auto t = Clock::now();
    run_once(static_cast<size_t>(i) % n, false);
    timed.push_back(ms_since(t));
    if (ms_since(start) > a.max_seconds * 1000.0 && timed.size() >= 3) break;
  }
  js << ",\"warmup\":" << a.warmup << ",\"requested_runs\":" << a.runs << ",\"samples_ms\":[";
  for (size_t i = 0; i < timed.size(); ++i) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.5f", timed[i]);
    js << (i ? "," : "") << buf;
  }
  js << "]";
  return js.str();
}

// main's body: RUN(&partial) returns the report's keys; a Fail (or any std::exception) becomes the
// {"ok":false,...} line with what was known by then. The exit status: 0 ok, 1 not.
template <typename Run>
int agent_main(Run run) {
  std::string partial;
  try {
    std::string body = run(&partial);
    std::printf("\n{\"ok\":true,%s}\n", body.c_str());
    std::fflush(stdout);
    return 0;
  } catch (const Fail& f) {
    std::printf("\n{\"ok\":false,%s%s\"stage\":%s,\"error\":%s}\n", partial.c_str(), partial.empty() ? "" : ",",
                json_str(f.stage).c_str(), json_str(f.error).c_str());
  } catch (const std::exception& e) {
    std::printf("\n{\"ok\":false,%s%s\"stage\":\"run\",\"error\":%s}\n", partial.c_str(), partial.empty() ? "" : ",",
                json_str(std::string("std::exception: ") + e.what()).c_str());
  }
  std::fflush(stdout);
  return 1;
}

// The model file's bytes for the process's lifetime: mapped read-only (the page cache, no copy),
// or read whole when it is not a regular file. A FIFO nobody writes blocks here (the caller's
// timeout). WHAT names the format in the error ("a TFLite model").
inline const void* map_model(const std::string& path, size_t* size, const std::string& what) {
  int fd = open(path.c_str(), O_RDONLY);
  if (fd < 0) fail("load", "cannot open '" + path + "': " + std::strerror(errno));
  struct stat st;
  if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
    if (st.st_size == 0) fail("load", "'" + path + "' is empty (0 bytes), not " + what);
    void* p = mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) fail("load", "cannot map '" + path + "': " + std::strerror(errno));
    *size = static_cast<size_t>(st.st_size);
    return p;
  }
  auto* data = new std::vector<char>();
  char buf[65536];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) data->insert(data->end(), buf, buf + n);
  close(fd);
  if (data->empty()) fail("load", "'" + path + "' is empty (0 bytes), not " + what);
  *size = data->size();
  return data->data();
}

// --want SIDE I TENSOR_NAME KEY (names may hold ':'): the manifest's name and key of each position
struct Want {
  std::string name, key;
};
using Wants = std::map<std::string, std::vector<Want>>;  // "input" -> per position

inline bool parse_want(const std::function<std::string()>& next, Wants* want) {
  std::string side = next();
  long idx = std::atol(next().c_str());
  Want w;
  w.name = next();
  w.key = next();
  if (idx < 0 || idx > 4096) fail("arguments", "--want: bad index");
  auto& list = (*want)[side];
  if (list.size() <= static_cast<size_t>(idx)) list.resize(static_cast<size_t>(idx) + 1);
  list[static_cast<size_t>(idx)] = w;
  return true;
}

// The manifest's order (--want) over the model's own: tensor name, else KEY_OF(spec) against the
// wanted key, else the same position; the model's own order when any match is ambiguous (the
// Python runners' _ordered).
template <class Spec, class KeyOf>
std::vector<Spec> ordered(const std::vector<Spec>& own, const std::vector<Want>& want, KeyOf key_of) {
  if (want.empty() || want.size() != own.size()) return own;
  std::vector<Spec> out;
  std::vector<bool> used(own.size(), false);
  for (size_t i = 0; i < want.size(); ++i) {
    size_t pick = i;
    bool found = false;
    for (size_t j = 0; j < own.size() && !found; ++j)
      if (!want[i].name.empty() && own[j].name == want[i].name) pick = j, found = true;
    for (size_t j = 0; j < own.size() && !found; ++j)
      if (!want[i].key.empty() && key_of(own[j]) == want[i].key) pick = j, found = true;
    if (used[pick]) return own;
    used[pick] = true;
    out.push_back(own[pick]);
  }
  return out;
}

}  // namespace edgeship_runner
