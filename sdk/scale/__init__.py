"""Running one job over more than one machine.

Each way to scale out lives in its own module (``sdk.scale.ray``) and imports its library only when
used, so ``import sdk`` and ``import sdk.scale`` stay light. Shipping a model to a cluster's nodes
(:func:`ship_model` on the driver, :func:`open_shipped` on a node) serves the folder jobs and the
server alike.
"""

from .shipping import open_shipped, ship_model

__all__ = ["open_shipped", "ship_model"]
