"""What edgeship pushes to a device: the agent, its timing and probe, and one runner per format.

Every module in this folder is standalone: the standard library, numpy and the module's own
runtime (ai-edge-litert, executorch, onnxruntime), never `edgeship`. The folder is copied as it
is onto a Raspberry Pi (over SSH), into the emulated Pi, or run in a child process on the host,
so a device needs neither PyTorch nor TensorFlow and a runtime that crashes takes down only its
child. tests/test_standalone.py checks the rule. Host-side drivers live one floor up (runtime/).
"""
