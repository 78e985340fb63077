"""Does a conversion compute what its ONNX file does? Run as ``python -m sdk_ncnn.check MODEL PARAM BIN
INPUT_BLOB OUTPUT_BLOB`` by :mod:`sdk_ncnn.convert`, in a child process: ncnn aborts the whole process on
some wrongly converted graphs. Exit 0: equal; ``REFUSED`` with the reason on stderr's last line: not.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from sdk import BackendUnavailableError

from .convert import CHECK_SIZE, REFUSED, Converted, load_net, run_image

AGREE = 1e-4  # of the output's largest magnitude; float32 Winograd is off by about 1e-6


def check_against_onnxruntime(ncnn, model, files: Converted) -> None:
    """pnnx converts some graphs wrongly without a word (an Einsum, seen: an output of zeros). Before a
    conversion is kept, ncnn's output on a random input (of a size pnnx did not trace) must equal ONNX Runtime's on the ONNX file, up
    to float32 rounding: ``AGREE`` of the output's largest magnitude (Winograd transforms round a little
    differently; pnnx's default float16 weights would be ~1e-3 off)."""
    import onnxruntime

    (tensor,) = model.inputs
    height, width = (d if isinstance(d, int) else CHECK_SIZE[i] for i, d in enumerate(tensor.shape[2:]))
    image = np.random.default_rng(0).random((tensor.shape[1], height, width), dtype=np.float32)
    session = onnxruntime.InferenceSession(str(model.path), providers=["CPUExecutionProvider"])
    (reference,) = session.run(None, {tensor.name: image[None]})
    try:
        ours = run_image(ncnn, load_net(ncnn, files, threads=1), files, image)[None]
    except BackendUnavailableError as exc:
        raise BackendUnavailableError(
            f"ncnn's conversion of {model.name} does not run ({exc}); use another backend"
        ) from None
    if ours.shape != reference.shape:
        raise BackendUnavailableError(
            f"ncnn's conversion of {model.name} gives shape {ours.shape}, ONNX Runtime {reference.shape}; use another backend"
        )
    error = float(np.abs(ours - reference).max()) / max(float(np.abs(reference).max()), 1e-6)
    if not error <= AGREE:
        raise BackendUnavailableError(
            f"ncnn's conversion of {model.name} computes something else than the ONNX file "
            f"(off by {error:.1e} of the output's range); use another backend"
        )


def main(argv: list[str]) -> int:
    from sdk.model import Model

    from .backend import import_ncnn

    model_path, param, weights, input_blob, output_blob = argv
    try:
        check_against_onnxruntime(
            import_ncnn(), Model(model_path), Converted(Path(param), Path(weights), input_blob, output_blob)
        )
    except BackendUnavailableError as exc:
        print(exc, file=sys.stderr)
        return REFUSED
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
