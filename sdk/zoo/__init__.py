"""The model zoo: PyTorch definitions of the bundled models, their training and their ONNX export.

Only ``sdk export`` and ``sdk train`` reach this package, so its modules may import torch at top
level - but this file must not, because ``sdk.zoo.commands`` (imported by the CLI to build its
parser) lives below it and ``import sdk`` has to stay free of torch.
"""
