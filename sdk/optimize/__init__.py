"""The graph optimisation pass: models rewritten once, before any backend sees them.

    graph.py    pure-ONNX helpers: which inputs set output shapes, baking their values in, saving
    resize.py   an integer-factor Resize -> edge Pad + polyphase Conv + DepthToSpace, checked
                against ONNX's reference implementation
    passes.py   the pass over a whole graph, and its version
    cache.py    rewritten models on disk, keyed on (model content, factor, pass version)
    session.py  one engine session per runtime factor, behind one Session

:func:`optimized_session` is what the SDK calls instead of ``backend.create_session`` (in
``sdk.selection.create_session``). Every
backend takes the option ``optimize`` (default True); ``optimize=False`` gives the backend the model
file exactly as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError

if TYPE_CHECKING:
    from ..backend import Backend, Session
    from ..devices import Device
    from ..model import Model

log = logging.getLogger(__name__)

OPTION = "optimize"  # in sdk.selection.SDK_OPTIONS: every backend accepts it


def split_options(options: Mapping[str, Any]) -> tuple[bool, dict[str, Any]]:
    """(optimize?, the options for the backend)."""
    rest = dict(options)
    optimize = rest.pop(OPTION, True)
    if not isinstance(optimize, bool):
        raise InputError(f"optimize={optimize!r} must be True (the default: rewrite the graph for speed) or False")
    return optimize, rest


def optimized_model(model, values: Mapping | None = None, cache_dir: Path | None = None):
    """The :class:`sdk.model.Model` to load: the rewritten model from the cache (made on a miss), or
    None when the pass changes nothing. ``values`` bakes runtime shape inputs in first."""
    import numpy as np

    from ..model import Model
    from .cache import OptimizedCache, OptimizeKey
    from .graph import load_with_weights, specialise
    from .passes import PASS_VERSION, optimise

    factor = (
        tuple((name, tuple(float(v) for v in np.asarray(value).ravel())) for name, value in sorted(values.items()))
        if values
        else None
    )
    key = OptimizeKey(model.sha256, factor, PASS_VERSION)
    cache = OptimizedCache(cache_dir)
    record = cache.get(key)
    if record is None:
        proto = load_with_weights(model.path)
        if values:
            shapes = {i.name: i for i in model.inputs}
            proto = specialise(
                proto, {name: np.asarray(value, dtype=shapes[name].dtype) for name, value in values.items()}
            )
            _fix_declared_scale(proto, values)
        rewritten, rewrites = optimise(proto)
        for rewrite in rewrites:
            log.info("optimise %s%s: %s", model.name, f" {dict(factor)}" if factor else "", rewrite)
        record = cache.put(key, rewritten, rewrites)
    if not record["changed"]:
        return None
    optimized = Model(cache.paths(key)[0])
    optimized.name = model.name  # messages should name the user's model, not a digest
    optimized.declared = model.declared
    return optimized


def _fix_declared_scale(proto, values: Mapping) -> None:
    """The rewritten model has no scale input any more: its ``sdk.pipeline`` metadata (if any) must
    then declare the fixed scale it now has, or anything that reads it would look for the input."""
    import dataclasses

    import numpy as np

    from ..spec import PIPELINE_KEY, PipelineSpec

    entry = next((p for p in proto.metadata_props if p.key == PIPELINE_KEY), None)
    if entry is None:
        return
    try:
        spec = PipelineSpec.from_json(entry.value)
    except Exception:
        return  # not ours to repair; sdk.resolution.resolve reports it on the original model
    if spec.scale_input not in values:
        return
    factor = float(np.asarray(values[spec.scale_input]).ravel()[-1])
    if factor.is_integer() and factor >= 1:
        entry.value = dataclasses.replace(spec, scale_input=None, scale=int(factor)).to_json()
    else:
        proto.metadata_props.remove(entry)


def optimized_session(
    backend: Backend, model: Model, device: Device, options: Mapping[str, Any], cache_dir: Path | None = None
) -> Session:
    """``backend.create_session`` on the optimised model (per factor for runtime-scale models)."""
    import numpy as np

    from ..graph.inputs import shape_inputs
    from .session import FactorSession

    optimize, rest = split_options(options)
    if not optimize:
        return backend.create_session(model, device, rest)
    names = shape_inputs(model.proto)
    if not names:
        optimized = optimized_model(model, None, cache_dir)
        return backend.create_session(optimized or model, device, rest)
    generic = backend.create_session(model, device, rest)
    dtypes = {i.name: i.dtype for i in model.inputs}

    def create(key):
        if not all(v.is_integer() and v >= 1 for _, values in key for v in values):
            # Only whole factors are rewritten: a value a caller invents (2.0001, 0, -3) runs on the
            # generic session, which either takes it or refuses it, and leaves nothing on disk.
            return None
        values = {name: np.asarray(v, dtype=dtypes[name]) for name, v in key}
        try:
            optimized = optimized_model(model, values, cache_dir)
        except InputError:
            raise
        except Exception as exc:  # a rewrite that fails must cost speed, never the call
            log.warning("could not optimise %s for %s (%s); running it as it is", model.name, dict(key), exc)
            return None
        if optimized is None:
            return None
        return backend.create_session(optimized, device, rest)

    return FactorSession(generic, create, names)
