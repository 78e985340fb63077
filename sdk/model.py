"""Finding and inspecting a model file: the one place that reads ONNX protobufs for the core.

Backends get a :class:`Model` and load ``model.path`` with their own engine, so external weight
files next to the model keep resolving.
"""

from __future__ import annotations

import functools
import hashlib
from importlib import resources
from pathlib import Path

import numpy as np

from .backend import TensorInfo
from .errors import ModelError

BUNDLED = ("srcnn", "srcnn3", "espcn")


def bundled_path(name: str) -> Path:
    """The file of a model shipped inside the package."""
    path = Path(str(resources.files("sdk") / "models" / f"{name}.onnx"))
    if not path.is_file():
        raise ModelError(f"the bundled model {name!r} is missing from this install ({path}); reinstall deploy-sdk")
    return path


def resolve(model: str | Path) -> Path:
    """A bundled model's name or a path -> an existing file, or a ModelError saying what to pass."""
    if isinstance(model, str) and model in BUNDLED:
        return bundled_path(model)
    if not isinstance(model, (str, Path)):
        raise ModelError(f"model must be a path to an .onnx file or one of {', '.join(BUNDLED)}, not {type(model).__name__}")
    path = Path(model).expanduser()
    if not path.exists():
        raise ModelError(f"model file {str(path)!r} does not exist; pass a path to an .onnx file or a bundled model name ({', '.join(BUNDLED)})")
    if path.is_dir():
        raise ModelError(f"model {str(path)!r} is a folder; pass the .onnx file inside it")
    return path


class Model:
    """An ONNX model on disk: its inputs, outputs, opset and metadata, read once."""

    def __init__(self, model: str | Path):
        import onnx  # imported here so that `import sdk` stays light

        self.path = resolve(model)
        self.name = model if isinstance(model, str) and model in BUNDLED else self.path.stem
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
        try:
            # Checked by path when weights live outside the file: the checker finds them beside it.
            external = any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
            onnx.checker.check_model(str(self.path) if external else proto)
        except Exception as exc:
            raise ModelError(f"{self.path} is not a valid ONNX model: {exc}; export it again") from exc
        self.proto = proto
        initializers = {init.name for init in proto.graph.initializer}
        self.inputs = tuple(_tensor_info(v) for v in proto.graph.input if v.name not in initializers)
        self.outputs = tuple(_tensor_info(v) for v in proto.graph.output)
        self.opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
        self.metadata = {p.key: p.value for p in proto.metadata_props}

    @functools.cached_property
    def sha256(self) -> str:
        """Digest of the model's content (and external data files), for caches keyed on content."""
        digest = hashlib.sha256()
        for path in [self.path, *self._external_files()]:
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
        return digest.hexdigest()

    def _external_files(self) -> list[Path]:
        from onnx.external_data_helper import uses_external_data

        # Exporters put large weights in the main graph's initializers; that is where we look.
        names = {
            entry.value
            for tensor in self.proto.graph.initializer
            if uses_external_data(tensor)
            for entry in tensor.external_data
            if entry.key == "location"
        }
        return [self.path.parent / name for name in sorted(names)]

    def input(self, name: str) -> TensorInfo:
        for info in self.inputs:
            if info.name == name:
                return info
        raise ModelError(f"{self.name} has no input {name!r}; its inputs are {[i.name for i in self.inputs]}")

    def __repr__(self) -> str:
        return f"Model({str(self.path)!r})"


def _tensor_info(value) -> TensorInfo:
    from onnx import helper

    tensor_type = value.type.tensor_type
    shape = tuple(
        d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor_type.shape.dim
    )
    dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)) if tensor_type.elem_type else np.dtype("float32")
    return TensorInfo(value.name, shape, dtype)
