"""Finding, loading and checking a model file: the one place the core loads ONNX files (what their
graphs say is read by :mod:`sdk.graph`).

Backends get a :class:`Model` and load ``model.path`` with their own engine, so external weight
files next to the model keep resolving.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import ModelError
from .graph.tensors import TensorInfo, count, element_size, opset, tensor_info

BUNDLED = ("srcnn", "srcnn3", "espcn")


def bundled_path(name: str) -> Path:
    """The file of a model shipped inside the package."""
    path = Path(str(resources.files("sdk") / "models" / f"{name}.onnx"))
    if not path.is_file():
        raise ModelError(f"the bundled model {name!r} is missing from this install ({path}); reinstall deploy-sdk")
    return path


def model_file(model: str | os.PathLike[str]) -> Path:
    """A bundled model's name or a path -> an existing file, or a ModelError saying what to pass."""
    if isinstance(model, str) and model in BUNDLED:
        return bundled_path(model)
    if not isinstance(model, (str, os.PathLike)):
        raise ModelError(
            f"model must be a path to an .onnx file or one of {', '.join(BUNDLED)}, not {type(model).__name__}"
        )
    path = Path(model).expanduser()
    if not path.exists():
        raise ModelError(
            f"model file {str(path)!r} does not exist; pass a path to an .onnx file or a bundled model name ({', '.join(BUNDLED)})"
        )
    if path.is_dir():
        raise ModelError(f"model {str(path)!r} is a folder; pass the .onnx file inside it")
    return path


class Model:
    """An ONNX model on disk: its inputs, outputs, opset and metadata, read once."""

    def __init__(self, model: str | os.PathLike[str]):
        import onnx  # imported here so that `import sdk` stays light

        self.path = model_file(model)
        self.name = model if isinstance(model, str) and model in BUNDLED else self.path.stem
        _check_fits_memory(self.path, self.path.stat().st_size, "model file")
        try:
            # External weights are not needed to read the signature; engines load them from the path.
            proto = onnx.load(str(self.path), load_external_data=False)
        except Exception as exc:
            raise ModelError(
                f"{self.path} is not a readable ONNX model ({type(exc).__name__}: {exc}); "
                "the file may be truncated or not ONNX at all - export it again"
            ) from exc
        if not proto.HasField("graph") or not proto.graph.output:
            raise ModelError(f"{self.path} holds no ONNX graph (empty, truncated, or not ONNX); export it again")
        # Our own checks first: they are the guarantee, whatever onnx's checker happens to catch.
        check_external_data(proto, self.path)
        check_declared_sizes(proto, self.path)
        try:
            onnx.checker.check_model(str(self.path))  # by path: external files resolve next to it
        except Exception as exc:
            raise ModelError(f"{self.path} is not a valid ONNX model: {exc}; export it again") from exc
        self.proto = proto
        initializers = {init.name for init in proto.graph.initializer}
        self.inputs = tuple(tensor_info(v) for v in proto.graph.input if v.name not in initializers)
        self.outputs = tuple(tensor_info(v) for v in proto.graph.output)
        self.opset = opset(proto)
        self.metadata = {p.key: p.value for p in proto.metadata_props}
        # The pipeline fields the caller declared for this file (Predictor's ``pipeline=``), kept with
        # it for the engines that prepare inputs of their own (int8 calibration): the file's metadata
        # alone would have them guess, e.g. 0..255 for a model that takes 0..1.
        self.declared: dict[str, Any] = {}

    @functools.cached_property
    def sha256(self) -> str:
        """Digest of the model's content (and external data files), for caches keyed on content."""
        digest = hashlib.sha256()
        for path in [self.path, *self.external_files()]:
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
        return digest.hexdigest()

    def external_files(self) -> list[Path]:
        """The files beside the model that hold its external weights (checked at load to lie inside
        its folder): what must travel with the model when it is copied or shipped."""
        return _external_paths(self.proto, self.path)

    def input(self, name: str) -> TensorInfo:
        for info in self.inputs:
            if info.name == name:
                return info
        raise ModelError(f"{self.name} has no input {name!r}; its inputs are {[i.name for i in self.inputs]}")

    def __repr__(self) -> str:
        return f"Model({str(self.path)!r})"


# -- hostile files: checked before any engine reads a byte of weights --------------------------------


def _all_tensors(graph) -> Iterator:
    """Every TensorProto in a graph and its subgraphs (If/Loop bodies, Constant nodes)."""
    from onnx import AttributeProto

    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == AttributeProto.TENSOR:
                yield attr.t
            elif attr.type == AttributeProto.TENSORS:
                yield from attr.tensors
            elif attr.type == AttributeProto.GRAPH:
                yield from _all_tensors(attr.g)
            elif attr.type == AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from _all_tensors(sub)


def _external_entries(proto) -> Iterator[tuple[Any, dict[str, str]]]:
    from onnx import TensorProto

    for tensor in _all_tensors(proto.graph):
        if tensor.data_location == TensorProto.EXTERNAL:
            yield tensor, {entry.key: entry.value for entry in tensor.external_data}


def check_external_data(proto, path: Path) -> None:
    """ModelError unless every external weight file lies inside the model's own folder.

    A model is data a user downloads; its external-data locations must not make an engine read
    /etc/shadow or a file reached through ``..`` or a symlink that leaves the folder.
    """
    folder = path.parent.resolve()
    sizes: dict[Path, int] = {}
    for tensor, entries in _external_entries(proto):
        location = entries.get("location", "")
        where = f"{path}: tensor {tensor.name!r} keeps its data in {location!r}"
        if not location:
            raise ModelError(f"{where}: no file named; export the model again")
        if (
            Path(location).is_absolute()
            or location.startswith(("/", "\\"))
            or ".." in Path(location).parts
            or ".." in location.replace("\\", "/").split("/")
        ):
            raise ModelError(f"{where}, outside the model's folder; external data must be a file next to the model")
        target = (path.parent / location).resolve()
        if not target.is_relative_to(folder):
            raise ModelError(
                f"{where}, which leads outside the model's folder ({target}); "
                "external data must be a file next to the model"
            )
        if not target.is_file():
            raise ModelError(f"{where}, which does not exist; copy it next to the model")
        size = sizes.setdefault(target, target.stat().st_size)
        try:
            offset, length = int(entries.get("offset", 0)), int(entries.get("length", size))
        except ValueError:
            raise ModelError(f"{where} with an offset or length that is not a number; export the model again") from None
        if offset < 0 or length < 0 or offset + length > size:
            raise ModelError(
                f"{where} at bytes {offset}..{offset + length}, past the end of that {size}-byte file; "
                "the data file is truncated or belongs to another model"
            )
    _check_fits_memory(path, path.stat().st_size + sum(sizes.values()), "model with its external data")


def _external_paths(proto, path: Path) -> list[Path]:
    names = {entries.get("location", "") for _, entries in _external_entries(proto)}
    return [path.parent / name for name in sorted(names) if name]


def check_declared_sizes(proto, path: Path) -> None:
    """ModelError for a weight or a static input/output shape too large for this machine's memory,
    before an engine tries to allocate it."""
    from .memory import total

    limit = total()
    for tensor in _all_tensors(proto.graph):
        elements = count(tensor.dims)
        if elements < 0 or elements * element_size(tensor.data_type) > limit:
            raise ModelError(
                f"{path}: tensor {tensor.name!r} declares shape {list(tensor.dims)}, "
                f"more than this machine's memory ({limit / 2**30:.1f} GiB); the file is broken or hostile"
            )
    for value in [*proto.graph.input, *proto.graph.output]:
        dims = [d.dim_value for d in value.type.tensor_type.shape.dim if d.HasField("dim_value")]
        elements = count(dims)
        if elements < 0 or elements * element_size(value.type.tensor_type.elem_type) > limit:
            raise ModelError(
                f"{path}: {value.name!r} declares a static shape {dims}, more than this machine's "
                f"memory ({limit / 2**30:.1f} GiB); export the model with sane or dynamic sizes"
            )


def _check_fits_memory(path: Path, size: int, what: str) -> None:
    from .memory import total

    limit = total()
    if size > limit:
        raise ModelError(
            f"{path}: the {what} is {size / 2**30:.1f} GiB, more than this machine's memory "
            f"({limit / 2**30:.1f} GiB); it cannot be loaded here - use a machine with more memory"
        )
