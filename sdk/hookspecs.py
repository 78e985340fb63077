"""The hook a backend plugin implements.

A plugin is a module named by an entry point in the group ``sdk.backends``::

    [project.entry-points."sdk.backends"]
    myengine = "my_package.plugin"

and that module implements::

    from sdk import hookimpl

    @hookimpl
    def sdk_backends():
        return [MyEngineBackend()]

The hook is the only one: everything else a plugin says, it says through its ``Backend``, whose
optional methods have defaults (``raw_runner`` for the benchmark's raw row, ``server_options`` for
the settings it wants in ``sdk serve``, ``concurrent_options`` for running several engine calls at
once), so a plugin written before them keeps working.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pluggy

PROJECT = "sdk"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

if TYPE_CHECKING:
    from .backend import Backend


@hookspec
def sdk_backends() -> Sequence[Backend]:
    """Return the :class:`sdk.Backend` instances this plugin provides (one, or a list)."""
    raise NotImplementedError  # a specification: pluggy calls the plugins' implementations
