"""What a model's graph says, read from its ONNX protobuf: the one place the core reads graphs.

    tensors.py      signatures (TensorInfo), element sizes, the graph's constants, inferred types
    inputs.py       which input is the image (and its layout), which is the runtime scale, and which
                    inputs decide an output's shape
    scale.py        the factor a fixed-scale graph upscales by
    reach.py        how far an output pixel sees (the receptive field), for tile margins
    activations.py  the bytes a run keeps alive at once, for the memory footprint

Reading and checking a file is :mod:`sdk.model`; rewriting a graph is :mod:`sdk.optimize`. Nothing
here imports onnx at module level: ``import sdk`` stays light.
"""
