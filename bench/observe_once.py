"""PT2E calibration with weight observers run once (convert/torch_common.py:constants_observed_once)
against every call: CPU and wall seconds of the torch -> .tflite and torch -> .pte int8 conversions,
alternated A B A B in one process, and the artifacts' sha256 (the same bytes either way).

    .venv/bin/python bench/observe_once.py SOURCE CALIB
    .venv/bin/python bench/observe_once.py examples/torch_digits.py:build digits:train
"""
import contextlib, hashlib, sys, time
from pathlib import Path
import edgeship.convert.torch_tflite as tt, edgeship.convert.torch_pte as tp
from edgeship.pipeline import ExportRequest, prepare
from edgeship.convert import get_route
src = sys.argv[1]; calib = sys.argv[2]
req = ExportRequest(source=src, out=Path('/tmp/obs_x'), targets=['tflite','pte'], recipes='int8', calib=calib, force=True, cle='off', bias_correction='off')
plan = prepare(req)
recipe = [r for r in plan.recipes if r.name=='int8'][0]
@contextlib.contextmanager
def noop(p): yield 0
real = tt.constants_observed_once
for target, mod in (('tflite', tt), ('pte', tp)):
    route = get_route(plan.model.framework, target)
    conv = route.load()
    shas = {}
    for label, fn in (('every call', noop), ('once', real), ('every call', noop), ('once', real)):
        mod.constants_observed_once = fn
        out = Path(f'/tmp/obs_{target}_{label.replace(" ","_")}.{target}')
        t = time.process_time(); w = time.perf_counter()
        conv(plan.model, recipe, plan.calib, out, plan.options)
        print(target, label, f'cpu {time.process_time()-t:.1f}s wall {time.perf_counter()-w:.1f}s', hashlib.sha256(out.read_bytes()).hexdigest()[:16], flush=True)
