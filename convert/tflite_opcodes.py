"""A .tflite model's operator-code table, for the passes that add ops to a finished flatbuffer
(tflite_common's integer I/O, tflite_hard_swish)."""

from __future__ import annotations


def opcode_index(model, builtin: int, version: int) -> int:
    """The index of `builtin`'s entry in a ModelT's operatorCodes (added if absent), at least `version`."""
    from ai_edge_litert import schema_py_generated as fb

    for i, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
            code.version = max(code.version, version)
            return i
    code = fb.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, min(builtin, 127), version
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1
