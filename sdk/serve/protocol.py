"""The Open Inference Protocol (KServe v2) over REST: request parsing and response encoding.

Written from the published protocol and its binary tensor data extension: a request body is a JSON
object, optionally followed by raw tensor bytes when the ``Inference-Header-Content-Length`` header
gives the JSON part's length; an input whose parameters carry ``binary_data_size`` takes its data
from those bytes (little-endian, row-major; BYTES elements are a 4-byte length and the bytes). An
output is sent back the same way when the request asks for it (``binary_data`` on the output, or
``binary_data_output`` on the request).
"""

from __future__ import annotations

import base64
import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import bad_request, too_large, unprocessable
from .nesting import json_depth

HEADER_LENGTH = "inference-header-content-length"

# Protocol datatype <-> numpy dtype; BYTES is a list of bytes objects here.
DATATYPES = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
}
_NAMES = {dtype: name for name, dtype in DATATYPES.items()}


def datatype_of(dtype) -> str:
    name = _NAMES.get(np.dtype(dtype))
    if name is None:
        raise bad_request(f"dtype {dtype} has no Open Inference Protocol datatype")
    return name


@dataclass
class InferInput:
    name: str
    datatype: str
    shape: list[int]
    data: object  # np.ndarray, or list[bytes] for BYTES
    parameters: dict = field(default_factory=dict)


@dataclass
class InferRequest:
    id: str | None
    inputs: list[InferInput]
    outputs: list[dict] | None  # the requested outputs, as sent; None = all
    parameters: dict

    def wants_binary(self, name: str) -> bool:
        for out in self.outputs or ():
            if out.get("name") == name:
                flag = (out.get("parameters") or {}).get("binary_data")
                if flag is not None:
                    return bool(flag)
        return bool(self.parameters.get("binary_data_output", False))


def parse_request(
    body: bytes,
    header_length: str | None,
    max_json_bytes: int = 2**24,
    max_elements: int = 2**24,
    max_json_depth: int = 32,
) -> InferRequest:
    """An InferRequest from a request body, or a 400 (413 past the limits) that says what is wrong.

    The JSON part is at most ``max_json_bytes`` (a Python object per number costs far more than its
    text) and nests at most ``max_json_depth`` levels (counted on its bytes before the parser
    recurses), holds no NaN or Infinity (they are not JSON), and the inputs together at most
    ``max_elements`` elements, counted from their shapes before any data is converted."""
    if header_length is not None:
        try:
            length = int(header_length)
        except ValueError:
            raise bad_request(f"Inference-Header-Content-Length {header_length!r} is not a whole number") from None
        if not 0 < length <= len(body):
            raise bad_request(f"Inference-Header-Content-Length {length} does not fit a body of {len(body)} bytes")
        head, rest = body[:length], memoryview(body)[length:]
    else:
        head, rest = body, memoryview(b"")
    if len(head) > max_json_bytes:
        raise too_large(
            f"the request's JSON part is {len(head)} bytes; this server takes at most {max_json_bytes} "
            "(--max-json-mb): send tensors as binary data (the binary tensor extension)"
        )
    depth = json_depth(head)
    if depth > max_json_depth:
        raise bad_request(
            f"the request's JSON is nested too deep ({depth} levels; this server takes at most {max_json_depth}, "
            "--max-json-depth): an inference request needs a few levels, plus a tensor's rank for its data"
        )
    try:
        doc = json.loads(head, parse_constant=_not_json, parse_float=_finite)
    except RecursionError:  # (json_depth bounds it first; this stays for text it misjudges)
        raise bad_request("the request's JSON is nested too deep; an inference request needs a few levels") from None
    except ValueError as exc:  # JSONDecodeError, bad UTF-8, NaN, 1e999, an integer of 5,000 digits
        raise bad_request(f"the request is not JSON ({str(exc)[:200]}); send an inference request object") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), list) or not doc["inputs"]:
        raise bad_request('an inference request is a JSON object with a non-empty "inputs" list')
    parameters = doc.get("parameters") or {}
    outputs = doc.get("outputs")
    if not isinstance(parameters, dict) or (outputs is not None and not _outputs_ok(outputs)):
        raise bad_request(
            '"parameters" must be an object and "outputs" a list of objects, each with a "name" string and '
            'optional "parameters" object'
        )
    request_id = doc.get("id")
    if request_id is not None and not (isinstance(request_id, str) and len(request_id) <= 256):
        raise bad_request('"id" must be a string of at most 256 characters')
    inputs, offset, elements = [], 0, 0
    for index, item in enumerate(doc["inputs"]):
        parsed, used = _parse_input(index, item, rest[offset:], max_elements - elements)
        inputs.append(parsed)
        offset += used
        elements += math.prod(parsed.shape)
    if offset != len(rest):
        raise bad_request(
            f"{len(rest) - offset} bytes of binary data follow the inputs' binary_data_size total; they must match"
        )
    return InferRequest(request_id, inputs, outputs, parameters)


def _not_json(constant: str):
    raise ValueError(f"{constant} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:32]} is too large for a 64-bit float")
    return value


def _outputs_ok(outputs) -> bool:
    return isinstance(outputs, list) and all(
        isinstance(o, dict)
        and isinstance(o.get("name"), str)
        and isinstance(o.get("parameters") if o.get("parameters") is not None else {}, dict)
        for o in outputs
    )


def _parse_input(index: int, item, binary: memoryview, room: int) -> tuple[InferInput, int]:
    if not isinstance(item, dict):
        raise bad_request(f"inputs[{index}] must be an object with name, shape, datatype and data")
    name, datatype, shape = item.get("name"), item.get("datatype"), item.get("shape")
    where = f"input {name!r}" if isinstance(name, str) else f"inputs[{index}]"
    if not isinstance(name, str) or not name:
        raise bad_request(f"{where} has no name")
    if not isinstance(datatype, str) or (datatype != "BYTES" and datatype not in DATATYPES):
        raise bad_request(f"{where}: datatype {datatype!r} is not one of {['BYTES', *DATATYPES]}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise bad_request(f"{where}: shape must be a list of whole numbers >= 0, not {shape!r}")
    parameters = item.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise bad_request(f"{where}: parameters must be an object")
    count = math.prod(shape)
    if count > room:
        raise too_large(
            f"{where}: shape {shape} has {count} elements, more than this request has room for (--max-elements "
            "bounds all inputs together); split the request"
        )
    size = parameters.get("binary_data_size")
    if size is not None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 0 or size > len(binary):
            raise bad_request(
                f"{where}: binary_data_size {size!r} does not fit the {len(binary)} bytes after the JSON header"
            )
        data = _from_binary(where, datatype, shape, count, binary[:size])
        return InferInput(name, datatype, shape, data, parameters), size
    if "data" not in item:
        raise bad_request(f"{where} has neither data nor a binary_data_size parameter")
    return InferInput(
        name, datatype, shape, _from_json(where, datatype, shape, count, item["data"], parameters), parameters
    ), 0


def _from_binary(where, datatype, shape, count, raw: memoryview):
    if datatype == "BYTES":
        elements, offset = [], 0
        while offset < len(raw):
            if offset + 4 > len(raw):
                raise bad_request(f"{where}: a BYTES element's 4-byte length is cut off")
            (length,) = struct.unpack_from("<I", raw, offset)
            offset += 4
            if offset + length > len(raw):
                raise bad_request(f"{where}: a BYTES element claims {length} bytes, more than are left")
            elements.append(bytes(raw[offset : offset + length]))
            offset += length
        if len(elements) != count:
            raise bad_request(f"{where}: shape {shape} holds {count} element(s), the binary data {len(elements)}")
        return elements
    dtype = DATATYPES[datatype].newbyteorder("<")
    if len(raw) != count * dtype.itemsize:
        raise bad_request(f"{where}: shape {shape} of {datatype} needs {count * dtype.itemsize} bytes, got {len(raw)}")
    return np.frombuffer(raw, dtype=dtype).astype(DATATYPES[datatype], copy=True).reshape(shape)


def _from_json(where, datatype, shape, count, data, parameters):
    if datatype == "BYTES":
        flat = _flatten(data)
        base64_coded = parameters.get("content_type") == "base64"
        try:
            elements = [base64.b64decode(e, validate=True) if base64_coded else e.encode("utf-8") for e in flat]
        except (TypeError, AttributeError, ValueError):
            raise bad_request(
                f"{where}: BYTES data must be strings (base64 when parameters.content_type is 'base64')"
            ) from None
        if len(elements) != count:
            raise bad_request(f"{where}: shape {shape} holds {count} element(s), data has {len(elements)}")
        return elements
    try:
        array = np.asarray(data, dtype=DATATYPES[datatype])  # numpy refuses nesting deeper than its dimensions
    except (TypeError, ValueError, OverflowError, RecursionError):
        raise bad_request(f"{where}: data is not a list of {datatype} numbers") from None
    if array.size != count:
        raise bad_request(f"{where}: shape {shape} holds {count} element(s), data has {array.size}")
    return array.reshape(shape)


def _flatten(data) -> list:
    """Nested lists -> their leaves in order (iterative; parse_request bounded their depth)."""
    flat, stack = [], [iter([data])]
    while stack:
        item = next(stack[-1], _END)
        if item is _END:
            stack.pop()
        elif isinstance(item, list):
            stack.append(iter(item))
        else:
            flat.append(item)
    return flat


_END = object()


@dataclass
class InferOutput:
    name: str
    data: Any  # np.ndarray, or list[bytes] with shape given
    shape: list[int] | None = None


def encode_response(model_name: str, request: InferRequest, outputs: list[InferOutput]) -> tuple[bytes, dict[str, str]]:
    """The response body and its headers (binary outputs follow the JSON part, in output order)."""
    entries: list[dict[str, Any]] = []
    chunks: list[bytes | memoryview] = []
    for out in outputs:
        if isinstance(out.data, np.ndarray):
            entry: dict[str, Any] = {
                "name": out.name,
                "datatype": datatype_of(out.data.dtype),
                "shape": list(out.data.shape),
            }
            if not request.wants_binary(out.name) and out.data.dtype.kind == "f" and not np.isfinite(out.data).all():
                raise unprocessable(
                    f"output {out.name!r} holds NaN or infinite values, which JSON cannot carry; ask for it as "
                    'binary data ("parameters": {"binary_data": true} on the output)'
                )
            if request.wants_binary(out.name):
                # The array's own buffer: the join below is the one copy of its bytes.
                little = np.ascontiguousarray(out.data.astype(out.data.dtype.newbyteorder("<"), copy=False))
                raw = memoryview(little)  # type: ignore[arg-type]  # numpy declares its buffer for Python 3.12+ only
                entry["parameters"] = {"binary_data_size": raw.nbytes}
                chunks.append(raw)
            else:
                entry["data"] = out.data.reshape(-1).tolist()
        else:
            entry = {"name": out.name, "datatype": "BYTES", "shape": out.shape or [len(out.data)]}
            if request.wants_binary(out.name):
                packed = b"".join(struct.pack("<I", len(e)) + e for e in out.data)
                entry["parameters"] = {"binary_data_size": len(packed)}
                chunks.append(packed)
            else:
                # Encoded images are not text: JSON carries them as base64, and says so.
                entry["parameters"] = {"content_type": "base64"}
                entry["data"] = [base64.b64encode(e).decode("ascii") for e in out.data]
        entries.append(entry)
    doc = {"model_name": model_name, "outputs": entries}
    if request.id is not None:
        doc["id"] = request.id
    head = json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()
    if not chunks:
        return head, {"content-type": "application/json"}
    return b"".join([head, *chunks]), {"content-type": "application/octet-stream", HEADER_LENGTH: str(len(head))}
