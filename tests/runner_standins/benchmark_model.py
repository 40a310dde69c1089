# A STAND-IN for LiteRT's native `benchmark_model`, for the adb tests only: no Android runner
# binary can be had here. The tests install it as an executable whose #! line is the emulated
# Pi's arm64 python3, so it runs on the arm64 userland behind the loopback adb test server and
# times the .tflite for real with the LiteRT Python runtime (XNNPACK, its default delegate).
# It takes benchmark_model's flags and prints its log lines in the formats of
# tensorflow/lite/tools/benchmark/benchmark_model.cc (BenchmarkLoggingListener::OnBenchmarkEnd:
# "Inference timings in us: Init: ..., First inference: ..., Warmup (avg): ..., Inference (avg): ...")
# and of the per-phase stats line ("count=... first=... curr=... min=... max=... avg=... std=...
# p5=... median=... p95=..."), each with TFLITE_LOG's "INFO: " prefix.
import sys
import time


def flags(argv):
    out = {}
    for a in argv:
        if not a.startswith("--") or "=" not in a:
            print(f"ERROR: Unconsumed cmdline flag: {a}", file=sys.stderr)
            sys.exit(1)
        k, v = a[2:].split("=", 1)
        out[k] = v
    return out


def stats_line(us):
    s = sorted(us)
    n = len(s)
    avg = sum(s) / n
    std = int((sum((x - avg) ** 2 for x in s) / n) ** 0.5)
    pct = lambda q: s[min(n - 1, int(q / 100.0 * n))]  # noqa: E731
    return (f"count={n} first={us[0]} curr={us[-1]} min={s[0]} max={s[-1]} avg={avg:g} std={std} "
            f"p5={pct(5)} median={pct(50)} p95={pct(95)}")


def main():
    f = flags(sys.argv[1:])
    graph = f.get("graph")
    threads = int(f.get("num_threads", "-1"))
    runs, warmups = int(f.get("num_runs", "50")), int(f.get("warmup_runs", "1"))
    print("INFO: STARTING!")
    print(f"INFO: Num threads: [{threads}]")
    print(f"INFO: Graph: [{graph}]")
    if not graph:
        print("ERROR: Please specify the name of your TF Lite input file with --graph")
        return 1
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    t0 = time.perf_counter()
    try:
        it = Interpreter(model_path=graph, num_threads=max(threads, 1))
    except Exception as e:  # noqa: BLE001
        print(f"ERROR: Could not build model from the provided pre-loaded flatbuffer: {e}")
        return 1
    print(f"INFO: Loaded model {graph}")
    it.allocate_tensors()
    # benchmark_model logs the delegate it applied; so does this stand-in, only when the interpreter
    # really holds XNNPACK partitions (the runtime's DELEGATE nodes), never as a fixed line
    if any(op["op_name"] == "DELEGATE" for op in it._get_ops_details()):
        print("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.")
    init_us = int((time.perf_counter() - t0) * 1e6)
    print(f"INFO: Initialized session in {init_us / 1000:g}ms.")
    rng = np.random.default_rng(0)
    for d in it.get_input_details():
        if np.issubdtype(d["dtype"], np.integer):
            info = np.iinfo(d["dtype"])
            x = rng.integers(info.min, info.max, size=d["shape"], dtype=d["dtype"])
        else:
            x = rng.uniform(-1, 1, size=d["shape"]).astype(d["dtype"])
        it.set_tensor(d["index"], x)

    def phase(n):
        us = []
        for _ in range(n):
            t = time.perf_counter()
            it.invoke()
            us.append(int((time.perf_counter() - t) * 1e6))
        return us

    print(f"INFO: Running benchmark for at least {warmups} iterations and at least 0.5 seconds but terminate "
          "if exceeding 150 seconds.")
    warm = phase(max(warmups, 1))
    print("INFO: " + stats_line(warm) + "\n")
    print(f"INFO: Running benchmark for at least {runs} iterations and at least 1 seconds but terminate "
          "if exceeding 150 seconds.")
    timed = phase(max(runs, 1))
    print("INFO: " + stats_line(timed) + "\n")
    print(f"INFO: Inference timings in us: Init: {init_us}, First inference: {warm[0]}, "
          f"Warmup (avg): {sum(warm) / len(warm):g}, Inference (avg): {sum(timed) / len(timed):g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
