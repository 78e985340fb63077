"""Pure-ONNX helpers shared by the optimisation pass and the backends that rewrite graphs.

* :func:`specialise` bakes the values of the inputs that decide an output *shape* (Resize's runtime
  ``factor``; :func:`sdk.graph.inputs.shape_inputs` finds them) in as constants on a copy of the
  graph: an engine that compiles shapes ahead of time needs those as constants. The pass does it per
  factor so that the factor's Resize can be rewritten; the TensorRT backend does it so that its
  builder sees constant scales.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..errors import InputError, ModelError

# protobuf cannot serialise a message over 2 GiB: bigger models keep their weights in a side file.
_INLINE_LIMIT = 1 << 30


def specialise(proto, values: Mapping[str, np.ndarray]):
    """A copy of ``proto`` with the named inputs replaced by constants holding ``values``."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.ModelProto()
    model.CopyFrom(proto)
    graph = model.graph
    declared = {v.name: v for v in graph.input}
    for name, value in values.items():
        if name not in declared:
            raise ModelError(f"cannot specialise input {name!r}: the model's inputs are {sorted(declared)}")
        tensor_type = declared[name].type.tensor_type
        dtype = helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)
        array = np.asarray(value)
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim]
        if array.ndim != len(dims) or any(want is not None and want != got for want, got in zip(dims, array.shape)):
            shown = ["?" if d is None else d for d in dims]
            raise InputError(f"input {name!r} has shape {list(array.shape)}; the model declares {shown}")
        if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
            raise InputError(f"input {name!r} holds {array.tolist()}: every value must be a finite number")
        graph.input.remove(declared[name])
        # A stale initializer of the same name (IR < 4 style defaults) would shadow our constant.
        for init in [i for i in graph.initializer if i.name == name]:
            graph.initializer.remove(init)
        graph.initializer.append(numpy_helper.from_array(array.astype(dtype), name))
    onnx.checker.check_model(model)
    return model


def load_with_weights(path: Path):
    """The model at ``path`` with any external weight files read in, ready to be rewritten."""
    import onnx

    try:
        return onnx.load(str(path), load_external_data=True)
    except Exception as exc:
        raise ModelError(
            f"cannot read {path} with its weights ({type(exc).__name__}: {exc}); "
            "keep the .onnx file next to its weight files"
        ) from exc


def save(proto, path: Path) -> Path:
    """Write a rewritten model; weights go to a side file when protobuf cannot hold them."""
    import onnx

    path = Path(path)
    if proto.ByteSize() < _INLINE_LIMIT:
        onnx.save(proto, str(path))
    else:
        onnx.save(
            proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=path.name + ".weights"
        )
    return path


def to_bytes(proto) -> bytes:
    return proto.SerializeToString()
