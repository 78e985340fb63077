"""What the benchmarks need torch for, and nothing else does: the community's architectures written out
as PyTorch modules (``archs``), and their ONNX exports (``export``).

The runtime (``sdk``) never imports this package; ``sdk bench --torch-module FILE.py:NAME`` loads a
builder from it in the benchmark's torch worker only.
"""
