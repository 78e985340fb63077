"""ONNX -> ncnn, once per model content and converter version, checked, into deploy-sdk's cache.

The converter is pnnx, ncnn's own: a standalone program shipped in the ``pnnx`` package (which lists
torch only for its PyTorch path; an ONNX file needs none). It runs in a child process, so a converter
that crashes cannot take the host with it, inside a scratch folder of the cache: pnnx writes a
simplified copy of its input beside that input, which must never land in the user's model folder.
A conversion is kept only once ncnn's output equals ONNX Runtime's (:mod:`sdk_ncnn.check`, in a child
process too: ncnn aborts the process on some wrongly converted graphs).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sdk import BackendUnavailableError

# pnnx traces a dynamic-size model at two sizes and keeps what changes between them symbolic; the check
# runs a third, so that a shape baked in from a trace shows. All are multiples of 16, which
# window-attention nets and 2x/4x pixel-unshuffles need.
TRACE_SIZES = ((64, 64), (96, 80))
CHECK_SIZE = (80, 48)
# One such image takes the largest super-resolution nets a second or two. A child past this is a
# broken conversion: ncnn on the wrong Einsum conversion (tests) spins without end in about 4 runs of
# 10, where it aborts in the others.
CHECK_TIMEOUT_S = 120
REFUSED = 3  # sdk_ncnn.check's exit status for a conversion that computes something else
INSTALL_PNNX = "pip install --no-deps pnnx (ncnn's ONNX converter, a standalone program)"


class TimedOut(BackendUnavailableError):
    """The converter or the check ran past its time: not remembered as a refusal."""


@dataclass(frozen=True)
class Converted:
    """A model as ncnn loads it: its two files and the names pnnx gave its input and output blobs."""

    param: Path
    weights: Path
    input_blob: str
    output_blob: str


def pnnx_program() -> tuple[Path, str]:
    """The converter's path and version, or BackendUnavailableError saying how to install it. Found
    without importing the package: its ``__init__`` imports torch."""
    spec = importlib.util.find_spec("pnnx")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        program = Path(folder) / "pnnx"
        if program.is_file() and os.access(program, os.X_OK):
            return program, importlib.metadata.version("pnnx")
    raise BackendUnavailableError(f"ncnn's converter is not installed: {INSTALL_PNNX}")


def trace_shapes(model) -> list[str]:
    """pnnx's ``inputshape``/``inputshape2`` arguments for the model's one 4-D input."""
    (tensor,) = model.inputs
    if len(tensor.shape) != 4:
        raise BackendUnavailableError(f"ncnn runs image models (one N,C,H,W input); {model.name} takes {tensor.shape}")
    batch, channels, height, width = tensor.shape
    if isinstance(batch, int) and batch != 1:
        raise BackendUnavailableError(f"ncnn runs one image at a time; {model.name} takes a fixed batch of {batch}")
    if not isinstance(channels, int):
        raise BackendUnavailableError(f"{model.name}'s input declares no channel count; ncnn needs one to convert it")
    if isinstance(height, int) and isinstance(width, int):
        return [f"inputshape=[1,{channels},{height},{width}]"]
    return [f"inputshape{'' if i == 0 else 2}=[1,{channels},{h},{w}]" for i, (h, w) in enumerate(TRACE_SIZES)]


def converted(model, ncnn) -> Converted:
    """The model's conversion, made and checked against ONNX Runtime the first time. A refusal (pnnx
    cannot convert it, or the conversion crashes or computes something else) is kept beside it and
    repeated; a time limit reached is not."""
    from sdk.files import atomic_file
    from sdk.optimize.cache import cache_root

    program, pnnx_version = pnnx_program()
    folder = cache_root() / "ncnn" / f"{model.sha256}-pnnx{pnnx_version}-ncnn{ncnn.__version__}"
    refusal = folder.with_name(folder.name + ".refused")
    if refusal.is_file():  # converting again would give the same answer, seconds later
        raise BackendUnavailableError(refusal.read_text())
    if not (folder / "model.param").is_file():
        folder.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".converting-") as scratch:
            out = Path(scratch) / "out"
            try:
                _convert(program, model, Path(scratch))
                _checked_in_child(
                    model, Converted(out / "model.param", out / "model.bin", *_blob_names(out / "model.param", model))
                )
            except TimedOut:
                raise  # perhaps only a machine too busy: tried again on the next load
            except BackendUnavailableError as exc:
                with atomic_file(refusal) as f:
                    f.write(str(exc).encode())
                raise
            try:
                os.replace(out, folder)  # whole, or not at all
            except OSError:
                if not (folder / "model.param").is_file():  # not a finished copy from a concurrent load
                    raise
    return Converted(folder / "model.param", folder / "model.bin", *_blob_names(folder / "model.param", model))


def load_net(ncnn, files, threads: int):
    net = ncnn.Net()
    opt = net.opt
    opt.num_threads = threads
    # float32 end to end: ncnn may otherwise store or compute in fp16/bf16 where the CPU has them.
    opt.use_fp16_packed = opt.use_fp16_storage = opt.use_fp16_arithmetic = False
    opt.use_bf16_storage = False
    opt.use_winograd_convolution = True
    if net.load_param(str(files.param)) != 0 or net.load_model(str(files.weights)) != 0:
        raise BackendUnavailableError(f"ncnn cannot load its conversion in {files.param.parent}; delete that folder")
    return net


def _convert(program: Path, model, scratch: Path) -> None:
    # The model and its external weight files, linked in so that pnnx's by-products stay here.
    for source in [model.path, *model.external_files()]:
        (scratch / source.name).symlink_to(source.resolve())
    out = scratch / "out"
    out.mkdir()
    outputs = {
        "ncnnparam": out / "model.param",
        "ncnnbin": out / "model.bin",
        "ncnnpy": scratch / "model_ncnn.py",
        "pnnxparam": scratch / "model.pnnx.param",
        "pnnxbin": scratch / "model.pnnx.bin",
        "pnnxpy": scratch / "model_pnnx.py",
        "pnnxonnx": scratch / "model.pnnx.onnx",
    }
    # fp16=0: pnnx stores weights as float16 unless told otherwise, which costs SPAN 4 grey levels.
    command = [str(program), model.path.name, *trace_shapes(model), "fp16=0"]
    command += [f"{key}={path}" for key, path in outputs.items()]
    try:
        done = subprocess.run(command, cwd=scratch, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        raise TimedOut(f"pnnx took over 10 minutes converting {model.name}; use another backend") from None
    if done.returncode != 0 or not outputs["ncnnparam"].is_file() or not outputs["ncnnbin"].is_file():
        tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
        raise BackendUnavailableError(
            f"pnnx cannot convert {model.name} to ncnn (exit {done.returncode}: {' / '.join(tail)}); "
            "run it with backend='ort-cpu' (or 'auto')"
        )


def _checked_in_child(model, files: Converted) -> None:
    command = [sys.executable, "-m", "sdk_ncnn.check", str(model.path), str(files.param), str(files.weights)]
    command += [files.input_blob, files.output_blob]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=CHECK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise TimedOut(
            f"ncnn's conversion of {model.name} ran over {CHECK_TIMEOUT_S} s on a small image, as broken "
            "conversions do; use another backend"
        ) from None
    if done.returncode == 0:
        return
    lines = done.stderr.strip().splitlines()
    if done.returncode == REFUSED:
        raise BackendUnavailableError(lines[-1])
    raise BackendUnavailableError(
        f"ncnn crashed running its conversion of {model.name} (exit {done.returncode}: "
        f"{' / '.join(lines[-2:]) or 'no message'}); use another backend"
    )


def _blob_names(param: Path, model) -> tuple[str, str]:
    """The input blob (the top of the one Input layer) and the output blob pnnx names ``out0``."""
    lines = param.read_text().splitlines()[2:]  # magic number, then layer and blob counts
    inputs = [line.split()[-1] for line in lines if line.split()[:1] == ["Input"]]
    produced = {blob for line in lines for blob in _tops(line)}
    if len(inputs) != 1 or "out0" not in produced:
        raise BackendUnavailableError(
            f"ncnn's conversion of {model.name} has inputs {inputs} and no single output; use another backend"
        )
    return inputs[0], "out0"


def _tops(line: str) -> list[str]:
    # "Type name bottom_count top_count bottoms... tops... key=value..."
    fields = line.split()
    bottoms, tops = int(fields[2]), int(fields[3])
    return fields[4 + bottoms : 4 + bottoms + tops]


def run_image(ncnn, net, files: Converted, image: np.ndarray) -> np.ndarray:
    """One C,H,W float32 image through ``net``: its C,H,W output, an array of its own."""
    extractor = net.create_extractor()
    try:
        extractor.input(files.input_blob, ncnn.Mat(image))
        status, out = extractor.extract(files.output_blob)
        if status != 0:
            raise BackendUnavailableError(f"ncnn failed on a {image.shape} input (status {status})")
        result = np.array(out, dtype=np.float32, copy=True)  # the SDK post-processes outputs in place
    finally:
        extractor.clear()
    if result.ndim != 3:
        raise BackendUnavailableError(f"ncnn's output has shape {result.shape}, not an image's C,H,W")
    return result
