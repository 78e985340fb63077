"""Running one job over more than one machine.

Each engine of scale lives in its own module (``sdk.scale.ray``) and imports its library only when
used, so ``import sdk`` and ``import sdk.scale`` stay light.
"""
