"""``sdk annotate``: write a model's pipeline into a copy of its file, so it runs without hints.

Only ``metadata_props`` change: the graph and the weights are copied byte for byte. Weights kept in
external data files stay where the copy can find them: the copy refers to the same files when it
sits in the same folder, and gets its own copies of them when it is written elsewhere (an ONNX file
may only name external data beside or below itself).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import InputError, ModelError
from .files import atomic_file, atomic_write
from .resolution import Resolution, resolve
from .spec import PIPELINE_KEY


def annotate(model, output, pipeline: Mapping[str, Any] | None = None, overwrite: bool = False) -> Resolution:
    """Write ``model`` with ``pipeline`` (over its metadata and what its graph says) to ``output``.

    Returns the resolution that was written: its ``guesses`` are the conventions nobody declared,
    now recorded as if they had been. Refuses to replace an existing file unless ``overwrite``.
    """
    from .model import Model

    source = Model(model)
    output = Path(output).expanduser()
    if output.suffix.lower() != ".onnx":
        raise InputError(f"the output {output} should end in .onnx")
    if output.is_dir():
        raise InputError(f"the output {output} is a folder; name the .onnx file to write")
    same_file = output.exists() and output.resolve() == source.path.resolve()
    if output.exists() and not overwrite:
        what = "is the input model" if same_file else "exists"
        raise InputError(f"{output} {what}; choose another output, or pass --force (overwrite=True) to replace it")
    resolution = resolve(source, pipeline)
    proto = source.proto  # read without external data: the weights are never loaded, never rewritten
    for entry in list(proto.metadata_props):
        if entry.key == PIPELINE_KEY:
            proto.metadata_props.remove(entry)
    proto.metadata_props.add(key=PIPELINE_KEY, value=resolution.spec.to_json())
    _carry_external_data(source, output.parent)
    atomic_write(output, proto.SerializeToString())
    return resolution


def _carry_external_data(source, folder: Path) -> None:
    """Make the external data files the model names available from ``folder``."""
    for data in source.external_files():
        relative = data.relative_to(source.path.parent)
        target = folder / relative
        if target.exists() and target.resolve() == data.resolve():
            continue
        if not data.is_file():
            raise ModelError(f"{source.path} keeps weights in {data}, which is missing; copy it beside the model")
        if target.exists():
            raise InputError(
                f"{target} exists and is not the model's weight file {data}; write the copy to another folder"
            )
        with open(data, "rb") as src, atomic_file(target) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)


def add_commands(subparsers) -> None:
    from .declare import add_pipeline_arguments

    p = subparsers.add_parser(
        "annotate",
        help="write the pipeline (colour, value range, scale ...) into a copy of a model",
        description="Write the sdk.pipeline metadata into a copy of MODEL, so that Predictor(OUT) and every "
        "sdk command run it right without hints. The weights are copied unchanged.",
    )
    p.add_argument("model", help="the .onnx file (or a bundled model name)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.onnx", help="where to write the annotated copy")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists (also when it is MODEL itself)")
    add_pipeline_arguments(p)
    p.set_defaults(func=cmd_annotate)


def cmd_annotate(args) -> int:
    import sys

    from .declare import pipeline_from_args
    from .spec import FIELDS

    resolution = annotate(args.model, args.output, pipeline_from_args(args), overwrite=args.force)
    spec = resolution.spec
    print(f"wrote {args.output} with {PIPELINE_KEY} = {spec.to_json()}", file=sys.stderr)
    inferred = [name for name in FIELDS if resolution.sources[name] == "inferred"]
    if resolution.guesses:
        print(
            f"sdk: note: nobody declared {', '.join(resolution.guesses)}; written as inferred "
            f"({', '.join(f'{n}={getattr(spec, n)!r}' for n in resolution.guesses)}). Check them: the file "
            "now states them as fact.",
            file=sys.stderr,
        )
    elif inferred:
        print(f"read from the graph: {', '.join(inferred)}", file=sys.stderr)
    return 0
