"""What the benchmarks share and nothing else needs: the community's architectures written out as
PyTorch modules (``archs``), their ONNX exports (``export``), and the side-by-side timing of engine
sessions (``turns``).

The runtime (``sdk``) never imports this package; ``sdk bench --torch-module FILE.py:NAME`` loads a
builder from it in the benchmark's torch worker only.
"""
