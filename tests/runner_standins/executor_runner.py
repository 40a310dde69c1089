# A STAND-IN for ExecuTorch's native `executor_runner`, for the adb tests only: no Android runner
# binary can be had here, and no ExecuTorch runtime for arm64 either (its Python runtime needs a
# CPU torch, which PyPI does not serve for aarch64). The tests install it as an executable whose
# #! line is the HOST's Python: the loopback adb test server's arm64 shell execs it, the kernel
# runs it natively on x86, and it runs the .pte for real with the host's ExecuTorch runtime
# (XNNPACK). So its outputs are real ExecuTorch outputs; its timings are x86 timings.
#
# It takes executor_runner's gflags (--model_path, --inputs a.bin,b.bin, --output_file BASE,
# --num_executions, --cpu_threads, --print_output) and, like
# examples/portable/executor_runner/executor_runner.cpp, reads each input file as the raw bytes
# of that input tensor (dtype and shape from the method's metadata), writes each output tensor's
# raw bytes to BASE-<i>.bin, and logs in ET_LOG's format ("I <time> executorch:<file>:<line>] ..."):
# "Model loaded in %f ms.", "Iteration %u of %u: %f ms", "Model executed successfully %u time(s)
# in %f ms.", "%zu outputs: ", "Writing output to file: %s".
import sys
import time

T0 = time.monotonic()
DTYPES = {0: "uint8", 1: "int8", 2: "int16", 3: "int32", 4: "int64", 5: "float16", 6: "float32", 7: "float64",
          11: "bool"}


def log(level, line, msg):
    t = time.monotonic() - T0
    stamp = f"{int(t // 3600):02d}:{int(t // 60 % 60):02d}:{t % 60:09.6f}"
    print(f"{level} {stamp} executorch:executor_runner.cpp:{line}] {msg}", flush=True)


def flags(argv):
    known = {"model_path": "model.pte", "inputs": "", "output_file": "", "num_executions": "1",
             "cpu_threads": "-1", "print_output": "summary", "method_name": "", "data_path": ""}
    for a in argv:
        name, _, value = a.lstrip("-").partition("=")
        if not a.startswith("-") or name not in known:
            print(f"ERROR: unknown command line flag '{name}'", file=sys.stderr)
            sys.exit(1)
        known[name] = value
    return known


def main():
    f = flags(sys.argv[1:])
    import numpy as np
    import torch
    from executorch.extension.pybindings import _C

    try:
        data = open(f["model_path"], "rb").read()
    except OSError:
        log("E", 150, f"Failed to open model file {f['model_path']}")
        return 1
    log("I", 186, f"Model file {f['model_path']} is loaded.")
    threads = int(f["cpu_threads"])
    if threads > 0:
        _C._unsafe_reset_threadpool(threads)
    log("I", 195, f"Resetting threadpool with num threads = {threads}")
    before = time.perf_counter()
    try:
        program = _C._load_program_from_buffer(data)
        method_name = f["method_name"] or program.get_method_name(0)
        log("I", 195, f"Using method {method_name}")
        method = program.load_method(method_name)
    except Exception as e:  # noqa: BLE001
        log("E", 360, f"Loading of method failed with status 0x{0x23:x}: {str(e).splitlines()[0] if str(e) else e}")
        return 1
    log("I", 368, f"Model loaded in {(time.perf_counter() - before) * 1000:f} ms.")
    meta = method.method_meta()
    tensors = []
    paths = [p for p in f["inputs"].split(",") if p]
    for i in range(meta.num_inputs()):
        info = meta.input_tensor_meta(i)
        dtype, shape = np.dtype(DTYPES[int(info.dtype())]), [int(d) for d in info.sizes()]
        if paths:
            raw = open(paths[i], "rb").read()
            x = np.frombuffer(raw, dtype=dtype)[: int(np.prod(shape))].reshape(shape).copy()
        else:
            x = np.ones(shape, dtype)
        tensors.append(torch.from_numpy(x))
    spent, n = 0.0, int(f["num_executions"])
    outputs = []
    for i in range(n):
        t = time.perf_counter()
        outputs = method.call(tensors)
        ms = (time.perf_counter() - t) * 1000
        spent += ms
        log("I", 527, f"Iteration {i + 1} of {n}: {ms:f} ms")
    log("I", 536, f"Model executed successfully {n} time(s) in {spent:f} ms.")
    log("I", 545, f"{len(outputs)} outputs: ")
    if f["output_file"]:
        for i, y in enumerate(outputs):
            name = f"{f['output_file']}-{i}.bin"
            log("I", 557, f"Writing output to file: {name}")
            open(name, "wb").write(np.ascontiguousarray(y.numpy()).tobytes())
    return 0


if __name__ == "__main__":
    sys.exit(main())
