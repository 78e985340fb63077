"""The PyTorch rows' network from the user's own code: ``--torch-module FILE.py:NAME`` or ``MODULE:NAME``.

A community architecture (Real-ESRGAN Compact, SPAN, RRDB, SwinIR ...) cannot be rebuilt from its
ONNX graph by our generic torch interpreter (PReLU, attention, LayerNorm ...), and PyTorch users run
it as the module they wrote, not as a graph. ``NAME`` is a callable taking no arguments that returns
that ``nn.Module``, holding the weights the ONNX file was exported with (a seeded builder, or one that
loads a checkpoint); it is called with the image tensor alone. Only the torch worker imports this.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

from ..errors import SDKError


def split_spec(spec: str) -> tuple[str, str]:
    """ "path/archs.py:compact" -> ("path/archs.py", "compact"); SDKError when it is not that shape."""
    where, sep, name = spec.rpartition(":")
    if not sep or not where or not name.isidentifier():
        raise SDKError(f"--torch-module {spec!r}: write FILE.py:NAME or MODULE:NAME (a builder of the nn.Module)")
    return where, name


def load_builder(spec: str):
    """The callable ``spec`` names."""
    where, name = split_spec(spec)
    if where.endswith(".py") or "/" in where:
        path = Path(where).expanduser().resolve()
        if not path.is_file():
            raise SDKError(f"--torch-module {spec!r}: no such file {path}")
        name_in_sys = f"sdk_bench_torch_{path.stem}"
        loader = importlib.util.spec_from_file_location(name_in_sys, path)
        module = importlib.util.module_from_spec(loader)
        sys.modules[name_in_sys] = module  # dataclasses and pickling look the module up there
        loader.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise SDKError(f"--torch-module {spec!r}: cannot import {where} ({exc})") from exc
    builder = getattr(module, name, None)
    if not callable(builder):
        raise SDKError(f"--torch-module {spec!r}: {where} has no callable {name!r}")
    return builder


def torch_module(spec: str, image_input: str):
    """(module, its input names, where it came from) for the torch rows, like reference_module()."""
    from torch import nn

    module = load_builder(spec)()
    if not isinstance(module, nn.Module):
        raise SDKError(f"--torch-module {spec!r} returned {type(module).__name__}, not a torch.nn.Module")
    return module.eval(), [image_input], f"{spec} (the PyTorch module, weights as built there)"
