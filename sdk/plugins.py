"""Discovering backends: one plugin manager, loaded once, where a broken plugin hurts only itself.

pluggy's ``load_setuptools_entrypoints`` stops at the first plugin that fails to import, so we load
each entry point ourselves, record what went wrong, and go on. ``SDK_STRICT_PLUGINS=1`` turns the
records back into exceptions (useful while writing a plugin).

Environment:
    SDK_LOAD_PLUGINS     comma-separated plugin (entry-point) names: load only these
    SDK_DISABLE_PLUGINS  comma-separated plugin or backend names: skip these (``ort-cuda`` hides
                         one backend, ``onnxruntime`` the whole built-in plugin)
    SDK_STRICT_PLUGINS   "1": raise PluginError instead of recording a failure
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from importlib import metadata

import pluggy

from . import hookspecs
from .backend import Backend
from .errors import PluginError
from .stdio import stdout_to_stderr

ENTRY_POINT_GROUP = "sdk.backends"
BUILTIN_DISTRIBUTION = "deploy-sdk"


@dataclass(frozen=True)
class BackendRecord:
    """A loaded backend and where it came from."""

    backend: Backend
    plugin: str  # entry-point name
    distribution: str
    version: str


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be used, and why."""

    plugin: str
    distribution: str
    version: str
    error: str


@dataclass
class Registry:
    backends: dict[str, BackendRecord] = field(default_factory=dict)
    failures: list[PluginFailure] = field(default_factory=list)

    def get(self, name: str) -> BackendRecord | None:
        return self.backends.get(name)

    def by_priority(self) -> list[BackendRecord]:
        return sorted(self.backends.values(), key=lambda r: (-r.backend.priority, r.backend.name))


_lock = threading.Lock()
_registry: Registry | None = None
pm = pluggy.PluginManager(hookspecs.PROJECT)
pm.add_hookspecs(hookspecs)


def _names(variable: str) -> set[str] | None:
    value = os.environ.get(variable)
    if value is None:
        return None
    return {name.strip().lower() for name in value.split(",") if name.strip()}


def _strict() -> bool:
    return os.environ.get("SDK_STRICT_PLUGINS", "").strip().lower() in ("1", "true", "yes")


def load_plugins() -> Registry:
    """Load every ``sdk.backends`` entry point once; later calls return the same registry."""
    global _registry
    with _lock:
        if _registry is None:
            _registry = _load(metadata.entry_points(group=ENTRY_POINT_GROUP))
        return _registry


def reset() -> None:
    """Forget what was loaded, so the next call loads again (tests, and hosts that install plugins)."""
    global _registry
    with _lock:
        for name, _ in list(pm.list_name_plugin()):
            pm.unregister(name=name)
        _registry = None


def _load(entry_points) -> Registry:
    registry = Registry()
    only, skip = _names("SDK_LOAD_PLUGINS"), _names("SDK_DISABLE_PLUGINS")
    # Built-ins first, then sorted: which of two clashing backends wins never depends on install order.
    for ep in sorted(entry_points, key=lambda e: (_dist(e)[0] != BUILTIN_DISTRIBUTION, e.name, _dist(e)[0])):
        if (only is not None and ep.name.lower() not in only) or (skip and ep.name.lower() in skip):
            continue
        distribution, version = _dist(ep)
        try:
            backends = [b for b in _load_one(ep) if not (skip and b.name in skip)]
            # All of a plugin's backends are checked before any is added: a clash rejects the
            # plugin whole instead of leaving half of it registered.
            names = [b.name for b in backends]
            for name in names:
                first = registry.backends.get(name)
                if first is not None or names.count(name) > 1:
                    other = f"{first.distribution} (plugin {first.plugin!r})" if first else f"{distribution} itself"
                    raise PluginError(
                        f"backend name {name!r} is provided twice: by {other} and by {distribution} "
                        f"(plugin {ep.name!r}); uninstall one"
                    )
            for backend in backends:
                registry.backends[backend.name] = BackendRecord(backend, ep.name, distribution, version)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            if _strict():
                raise PluginError(f"plugin {ep.name!r} from {distribution} {version}: {error}") from exc
            registry.failures.append(PluginFailure(ep.name, distribution, version, error))
    return registry


def _dist(ep) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    return (dist.name, dist.version) if dist is not None else ("?", "?")


def _load_one(ep) -> list[Backend]:
    """Import one plugin module, register it, call its hook, and check what it returned."""
    with stdout_to_stderr():  # a plugin that prints as it is imported must not corrupt `--json` output
        module = ep.load()
    if pm.is_registered(module):  # the same module behind two entry points: count it once
        return []
    pm.register(module, name=ep.name)
    try:
        pm.check_pending()  # a misspelled hook (`sdk_backend`) is an error, not a silent no-op
        results = [impl.function() for impl in pm.hook.sdk_backends.get_hookimpls() if impl.plugin is module]
        backends = []
        for result in results:
            items = [result] if isinstance(result, Backend) else result
            if not isinstance(items, (list, tuple)):
                raise PluginError(f"sdk_backends() returned {result!r}; it must return a list of sdk.Backend instances")
            for item in items:
                if not isinstance(item, Backend):
                    raise PluginError(f"sdk_backends() returned {item!r}; it must return sdk.Backend instances")
                item.validate()
                backends.append(item)
        return backends
    except BaseException:
        pm.unregister(module)
        raise
