"""Reaching Ray: its import, with the install hint, for every module of sdk.scale."""

from __future__ import annotations

from ..errors import SDKError

INSTALL_HINT = "pip install 'deploy-sdk[cpu,ray]'"


def import_ray():
    """``ray`` with Ray Data, or an SDKError that says how to install it."""
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise SDKError(f"running on Ray needs Ray Data ({exc}); install it with {INSTALL_HINT}") from exc
    return ray
