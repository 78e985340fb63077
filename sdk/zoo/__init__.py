"""The model zoo: PyTorch definitions of the bundled models, their training and their ONNX export.

Only ``sdk export``, ``sdk train`` and the benchmark's PyTorch reference row (:mod:`sdk.zoo.reference`)
reach this package, so its modules may import torch at top level - but this file must not, because
``sdk.zoo.commands`` (imported by the CLI to build its parser) lives below it and ``import sdk`` has
to stay free of torch. It is the only package that imports torch; the runtime never imports it.
"""
