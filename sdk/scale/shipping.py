"""Shipping a model to the machines of a Ray cluster, for the folder jobs and the server alike.

A bundled model travels as its name (every node has the package). A file travels as its bytes, and
those of its external-data files, put once into Ray's object store; each node writes them into a
folder named after their digest, so actors on one node share one copy.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def ship_model(model) -> Any:
    """What an actor needs to open ``model`` on any node (pass it to :func:`open_shipped` there).
    Call it on the driver, inside a running Ray session."""
    from ..model import BUNDLED, Model
    from .cluster import import_ray

    if isinstance(model, str) and model in BUNDLED:
        return model
    ray = import_ray()
    loaded = Model(model)  # a bad or hostile file fails here, on the driver, before any actor starts
    folder = loaded.path.parent
    # The main file last: an actor that finds it on its node knows the weights are there too.
    paths = [*loaded.external_files(), loaded.path]
    files = {str(p.relative_to(folder)): p.read_bytes() for p in paths}
    return {"digest": loaded.sha256, "main": loaded.path.name, "files": ray.put(files)}


def open_shipped(model) -> str | Path:
    """What ``Predictor(...)`` takes, on the node this runs on, for what :func:`ship_model` returned
    (anything else, a bundled name or a path, is given back as it is)."""
    if not isinstance(model, Mapping):
        return model
    from ..files import atomic_write

    folder = Path(tempfile.gettempdir()) / "sdk-ray-models" / model["digest"]
    main = folder / model["main"]
    if not main.is_file():
        import ray

        files: Any = ray.get(model["files"])  # the dict ship_model put: name -> bytes
        for name, data in files.items():
            atomic_write(folder / name, data)  # a concurrent actor on this node writes the same bytes
    return main
