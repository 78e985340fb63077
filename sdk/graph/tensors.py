"""Tensors as a graph declares them: signatures, element sizes, constant values, inferred types."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from ..errors import ModelError

if TYPE_CHECKING:  # onnx is imported where it is used: `import sdk` stays light
    from onnx import GraphProto, ModelProto, TensorProto, ValueInfoProto

# Bytes counted for an element whose ONNX type numpy cannot size: UNDEFINED (a value nobody typed) or a
# type newer than this onnx. numpy sizes every other type (float8 and the 4-bit types at a byte, their
# unpacked size). Four is the float32 these models compute in, and it errs high: a memory estimate
# that is too low gives tiles that overflow their budget, the failure that hurts; the hostile-file
# check (sdk.model) compares with the machine's whole memory, so erring high costs it nothing real.
UNKNOWN_ELEMENT_BYTES = 4


@dataclass(frozen=True)
class TensorInfo:
    """One input or output of a model or session. Dimensions are ints, or a str/None when dynamic."""

    name: str
    shape: tuple[int | str | None, ...]
    dtype: np.dtype[Any]

    @property
    def static_shape(self) -> bool:
        """Whether every dimension is a number (no symbolic or unknown one)."""
        return all(isinstance(d, int) for d in self.shape)


def tensor_info(value: ValueInfoProto) -> TensorInfo:
    """The :class:`TensorInfo` of a graph input or output (a ValueInfoProto); untyped values are float32."""
    tensor_type = value.type.tensor_type
    shape = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor_type.shape.dim)
    if not tensor_type.elem_type:
        return TensorInfo(value.name, shape, np.dtype("float32"))
    try:
        dtype = np_dtype(tensor_type.elem_type)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(
            f"tensor {value.name!r} has ONNX element type {tensor_type.elem_type}, which the SDK cannot handle"
        ) from exc
    return TensorInfo(value.name, shape, dtype)


def np_dtype(elem_type: int) -> np.dtype[Any]:
    """The numpy dtype of an ONNX element type (KeyError for UNDEFINED or an unknown type)."""
    from onnx import helper

    return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type))


@functools.cache
def element_size(elem_type: int) -> int:
    """Bytes per element of an ONNX element type (UNKNOWN_ELEMENT_BYTES when numpy cannot size it)."""
    try:
        return max(1, np_dtype(elem_type).itemsize)
    except Exception:
        return UNKNOWN_ELEMENT_BYTES


def count(dims: Iterable[int]) -> int:
    """Elements of a tensor of these dimensions; -1 when one is negative (a broken or hostile file)."""
    if any(d < 0 for d in dims):
        return -1
    return math.prod(int(d) for d in dims)


def nbytes(dims: Iterable[int], elem_type: int) -> int:
    return count(dims) * element_size(elem_type)


def dims(value: ValueInfoProto) -> list[int | None]:
    """A ValueInfoProto's dimensions: numbers, None where symbolic or unknown."""
    return [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]


@overload
def opset(proto: ModelProto) -> int | None: ...
@overload
def opset(proto: ModelProto, default: int) -> int: ...
def opset(proto: ModelProto, default: int | None = None) -> int | None:
    """The default-domain opset a model is written in (``default`` when it names none)."""
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default)


class Constants(Mapping[str, np.ndarray]):
    """A graph's constant values by name: its initializers and its Constant nodes' tensors.

    Values become numpy arrays only when read (a model's weights are most of its bytes, and most
    callers want a few small ones); a weight kept in an external file that was not loaded reads as
    absent. :meth:`dims` needs no conversion at all.
    """

    def __init__(self, graph: GraphProto) -> None:
        tensors: dict[str, TensorProto] = {t.name: t for t in graph.initializer}
        for node in graph.node:
            if node.op_type == "Constant":
                for attr in node.attribute:
                    if attr.name == "value":
                        tensors[node.output[0]] = attr.t
        self._tensors = tensors
        self._arrays: dict[str, np.ndarray] = {}

    def _loaded(self) -> Iterator[str]:
        from onnx import TensorProto

        return (name for name, t in self._tensors.items() if t.data_location != TensorProto.EXTERNAL)

    def __getitem__(self, name: str) -> np.ndarray:
        found = self._arrays.get(name)
        if found is None:
            from onnx import TensorProto, numpy_helper

            tensor = self._tensors[name]
            if tensor.data_location == TensorProto.EXTERNAL:
                raise KeyError(name)
            found = self._arrays[name] = numpy_helper.to_array(tensor)
        return found

    def __iter__(self) -> Iterator[str]:
        return self._loaded()

    def __len__(self) -> int:
        return sum(1 for _ in self._loaded())

    def __contains__(self, name: object) -> bool:  # without reading the value
        from onnx import TensorProto

        tensor = self._tensors.get(name) if isinstance(name, str) else None
        return tensor is not None and tensor.data_location != TensorProto.EXTERNAL

    def dims(self, name: str) -> tuple[int, ...] | None:
        """A constant's dimensions (its data may stay unread, or in an external file), or None."""
        tensor = self._tensors.get(name)
        return None if tensor is None else tuple(tensor.dims)


def value_types(proto: ModelProto) -> dict[str, tuple[str, tuple[int | None, ...]]]:
    """name -> (numpy dtype name, shape) for every value ONNX shape inference can describe (the shape
    with None for unknown dimensions, () when inference found none)."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(proto)
    except Exception:
        inferred = proto
    graph = inferred.graph
    found: dict[str, tuple[str, tuple[int | None, ...]]] = {}
    for value in (*graph.input, *graph.value_info, *graph.output):
        tensor = value.type.tensor_type
        if not tensor.elem_type:
            continue
        shape = tuple(dims(value))
        found[value.name] = (np_dtype(tensor.elem_type).name, shape if tensor.HasField("shape") else ())
    return found
