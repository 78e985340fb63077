"""Pure-ONNX rewrites that turn a model into something TensorRT can build.

Nothing here imports TensorRT, so every rewrite is tested on ONNX Runtime CPU.

* Runtime scale: a float ``scales`` tensor of Resize that comes from a graph input (the tutorial's
  ``factor``) would become a TensorRT shape tensor, which must be integer, live on the host and have
  profile values - it cannot be built. :func:`specialise` bakes the value in as a constant on a copy
  of the graph; the backend builds one engine per value.
* fp16: TensorRT 11 removed the FP16 builder flag (networks are strongly typed), so reduced precision
  has to be in the graph. :func:`to_fp16` converts a copy, keeping fp32 inputs and outputs so that the
  pipeline feeds the same tensors to every precision.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from sdk.errors import BackendUnavailableError, InputError, ModelError

# (op_type, input slot) pairs whose value decides an output *shape*: TensorRT needs those as constants.
_SHAPE_SLOTS = {("Resize", 1), ("Resize", 2), ("Resize", 3), ("Upsample", 1)}
# Ops kept in fp32 by the fp16 conversion, besides the converter's own list: Resize's roi and scales
# must stay float32 (they are shape-like), and a cubic Resize in fp16 loses more than it gains.
_FP32_OPS = ("Resize", "Upsample")
# protobuf cannot serialise a message over 2 GiB: bigger models keep their weights in a side file.
_INLINE_LIMIT = 1 << 30


def shape_inputs(proto) -> list[str]:
    """Graph inputs whose values end up deciding an output shape (Resize/Upsample scales or sizes).

    The inputs are followed forward through any chain of nodes, so a factor that is cast or
    concatenated before it reaches Resize is found too.
    """
    graph = proto.graph
    initializers = {t.name for t in graph.initializer}
    found = []
    for value in graph.input:
        if value.name in initializers:
            continue
        reached = {value.name}
        hits = False
        for node in graph.node:  # nodes are topologically sorted in a valid ONNX graph
            used = [slot for slot, name in enumerate(node.input) if name in reached]
            if not used:
                continue
            if any((node.op_type, slot) in _SHAPE_SLOTS for slot in used):
                hits = True
                break
            reached.update(node.output)
        if hits:
            found.append(value.name)
    return found


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


def to_fp16(proto):
    """A copy of ``proto`` computing in float16 between fp32 inputs and outputs.

    Resize and Upsample stay in fp32 (their scales must be float32, and the cubic kernel's negative
    lobes amplify fp16 rounding); Cast nodes are inserted around them.
    """
    import onnx

    try:
        from onnxconverter_common import float16
    except ImportError as exc:
        raise BackendUnavailableError(
            f"precision='fp16' converts the ONNX graph and needs onnxconverter-common ({exc}): "
            "pip install 'deploy-sdk[trt]'"
        ) from exc
    block = sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(_FP32_OPS))
    before = _io_types(proto)
    converted = float16.convert_float_to_float16(proto, keep_io_types=True, op_block_list=block)
    if _io_types(converted) != before:
        raise ModelError("the fp16 conversion changed the model's input or output types; use precision='fp32'")
    onnx.checker.check_model(converted)
    return converted


def _io_types(proto) -> tuple:
    graph = proto.graph
    return tuple((v.name, v.type.tensor_type.elem_type) for v in (*graph.input, *graph.output))


def load_with_weights(path: Path):
    """The model at ``path`` with any external weight files read in, ready to be rewritten."""
    import onnx

    try:
        return onnx.load(str(path), load_external_data=True)
    except Exception as exc:
        raise ModelError(f"cannot read {path} with its weights ({type(exc).__name__}: {exc}); "
                         "keep the .onnx file next to its weight files") from exc


def save(proto, path: Path) -> Path:
    """Write a rewritten model for the parser; weights go to a side file when protobuf cannot hold them."""
    import onnx

    path = Path(path)
    if proto.ByteSize() < _INLINE_LIMIT:
        onnx.save(proto, str(path))
    else:
        onnx.save(proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                  location=path.name + ".weights")
    return path
