"""A SavedModel that TensorFlow's object loader rejects, loaded through its serving signature.

Some SavedModels written by Keras 2 (TF <= 2.15) hold optimizer slot variables in their object
graph, and TF 2.21's `tf.saved_model.load` stops on them ("'_UserObject' object has no attribute
'add_slot'"); `TFLiteConverter.from_saved_model` reads the same object graph and stops alike. The
graph and the signatures are fine: TF's v1 loader (`tf.compat.v1.saved_model.loader.load`, which
reads the MetaGraph and restores the variables by name, never the object graph) runs them.

`load_signature` does that: a v1 Session loads the 'serve' MetaGraph, the 'serving_default'
signature's outputs are frozen (variables -> constants), and the frozen graph, pruned to that
signature, is saved as a plain TF2 SavedModel with the same signature (input names, dtypes and
shapes, output keys) and loaded back with the object loader. What the rest of edgeship reads is
then an ordinary SavedModel: the float reference, .tflite (TFLiteConverter) and .onnx (tf2onnx)
go through their usual routes on the very graph the signature runs. The manifest records that the
fallback was used and why (`model.loader`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import tempfile
import warnings
from pathlib import Path

from edgeship.console import warn
from edgeship.errors import InputError

SIGNATURE = "serving_default"
TAGS = ["serve"]
LOADER = "tf.compat.v1.saved_model.loader (signature 'serving_default', variables frozen)"


def load_signature(path: Path, reason: str, tf):
    """(a loaded TF object whose signatures['serving_default'] runs the SavedModel's serving
    signature, the manifest's loader record). `reason` is what the object loader said. Raises
    InputError, naming both loaders' words, when the v1 loader cannot read it either."""
    try:
        with _quiet_tf_logging():
            graph_def, inputs, outputs = _frozen_signature(path, tf)
            obj = _as_saved_model(graph_def, inputs, outputs, tf)
    except InputError:
        raise
    except Exception as e:
        raise InputError(
            f"cannot load SavedModel '{path}': {reason}; TF's v1 loader could not read it either: "
            f"{_first_line(e)}",
            hint="re-save it with the TensorFlow that wrote it (tf.saved_model.save, or model.export for Keras), "
            "or export a .keras/.h5 file",
        ) from None
    warn(f"TF's object loader rejected SavedModel '{path.name}' ({reason}); loaded its '{SIGNATURE}' signature "
         "through TF's v1 loader instead (variables frozen)")
    return obj, {"loader": LOADER, "object_loader_error": reason}


def _frozen_signature(path: Path, tf):
    """(frozen GraphDef, {input key: (tensor name, shape with None for unknown, dtype)},
    {output key: tensor name}) of the 'serving_default' signature."""
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as sess:
        meta = tf.compat.v1.saved_model.loader.load(sess, TAGS, str(path))
        if SIGNATURE not in meta.signature_def:
            have = ", ".join(sorted(meta.signature_def)) or "none"
            raise InputError(f"SavedModel '{path}' has no '{SIGNATURE}' signature (it has: {have})",
                             hint="export it with one")
        sig = meta.signature_def[SIGNATURE]
        inputs = {
            k: (v.name, [None if d.size < 0 else int(d.size) for d in v.tensor_shape.dim], tf.as_dtype(v.dtype))
            for k, v in sig.inputs.items()
        }
        outputs = {k: v.name for k, v in sig.outputs.items()}
        nodes = sorted({name.split(":")[0] for name in outputs.values()})
        frozen = tf.compat.v1.graph_util.convert_variables_to_constants(sess, graph.as_graph_def(), nodes)
    return _rename_functions(frozen), inputs, outputs


def _rename_functions(graph_def):
    """Give the frozen graph's functions names of their own. Freezing rewrites each function (its
    variable inputs become constants) but keeps its name ('__inference_serve_41'), and TF refuses
    a second, different definition under a name this process already holds. The new names are
    derived from the library's bytes: the same model gets the same names, run after run."""
    library = graph_def.library
    if not library.function:
        return graph_def
    tag = hashlib.sha256(library.SerializeToString(deterministic=True)).hexdigest()[:12]
    names = {f.signature.name: f"{f.signature.name}_frozen_{tag}" for f in library.function}

    def fix(node) -> None:
        if node.op in names:  # a function called as an op
            node.op = names[node.op]
        for attr in node.attr.values():
            if attr.HasField("func") and attr.func.name in names:
                attr.func.name = names[attr.func.name]
            if attr.HasField("list"):
                for f in attr.list.func:
                    f.name = names.get(f.name, f.name)

    for node in graph_def.node:
        fix(node)
    for function in library.function:
        function.signature.name = names[function.signature.name]
        for node in function.node_def:
            fix(node)
    for gradient in library.gradient:
        gradient.function_name = names.get(gradient.function_name, gradient.function_name)
        gradient.gradient_func = names.get(gradient.gradient_func, gradient.gradient_func)
    return graph_def


def _as_saved_model(graph_def, inputs: dict, outputs: dict, tf):
    """The frozen graph as a TF2 SavedModel with the same 'serving_default' signature, loaded."""
    wrapped = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(graph_def, name=""), [])
    names = sorted(inputs)
    element = wrapped.graph.as_graph_element
    pruned = wrapped.prune([element(inputs[n][0]) for n in names], {k: element(t) for k, t in outputs.items()})
    specs = [tf.TensorSpec(inputs[n][1], inputs[n][2], name=n) for n in names]

    @tf.function(input_signature=specs)
    def serve(*args):
        return pruned(*args)

    holder = tf.Module()
    holder.serve = serve
    with tempfile.TemporaryDirectory(prefix="edgeship-savedmodel-v1-") as tmp:
        tf.saved_model.save(holder, tmp, signatures={SIGNATURE: serve.get_concrete_function()})
        return tf.saved_model.load(tmp)  # frozen: no variables or assets are read from tmp later


def _first_line(e: BaseException) -> str:
    """TF's errors end in proto dumps ('}') or node names: their first line says what failed, or,
    when it is a heading ('Graph execution error:'), the line after it."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith(("Detected at node", "File ", "[["))] or lines
    head = lines[0] if lines else ""
    if head.endswith(":") and len(lines) > 1:
        head = f"{head} {lines[1]}"
    text = f"{type(e).__name__}: {head}" if head else type(e).__name__
    return text if len(text) <= 300 else text[:297] + "..."


@contextlib.contextmanager
def _quiet_tf_logging():
    """TF's v1 APIs log deprecation notices through Python logging; the fallback's one line says
    what happened."""
    logger = logging.getLogger("tensorflow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
