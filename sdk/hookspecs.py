"""The hook a backend plugin implements.

A plugin is a module named by an entry point in the group ``sdk.backends``::

    [project.entry-points."sdk.backends"]
    myengine = "my_package.plugin"

and that module implements::

    from sdk import hookimpl

    @hookimpl
    def sdk_backends():
        return [MyEngineBackend()]
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
