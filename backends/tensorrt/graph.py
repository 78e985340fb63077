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

from sdk.errors import BackendUnavailableError, ModelError

# The factor specialisation and file helpers are the core's (the optimisation pass uses them too).
from sdk.graph.inputs import shape_inputs  # noqa: F401
from sdk.optimize.graph import load_with_weights, save, specialise  # noqa: F401

# Ops kept in fp32 by the fp16 conversion, besides the converter's own list: Resize's roi and scales
# must stay float32 (they are shape-like), and a cubic Resize in fp16 loses more than it gains.
_FP32_OPS = ("Resize", "Upsample")


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
