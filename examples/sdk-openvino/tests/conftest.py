"""Fixtures for sdk-openvino's tests. They test the plugin as users get it: installed from its
wheel into an environment beside deploy-sdk (examples/sdk-openvino/ci.sh builds that environment)."""

from __future__ import annotations

from importlib import metadata

import numpy as np
import onnx
import pytest
from plugin_cli import PLUGIN_VARIABLES
from srcnn_graph import srcnn3_graph


def _installed() -> bool:
    try:
        metadata.distribution("sdk-openvino")
    except metadata.PackageNotFoundError:
        return False
    return True


def pytest_collection_modifyitems(config, items):
    if _installed():
        return
    # Importing the source tree would test something users never get; say how to test it for real.
    skip = pytest.mark.skip(
        reason="sdk-openvino is not installed here; run examples/sdk-openvino/ci.sh, "
        "which builds its wheel and installs it into .venv-plugins"
    )
    for item in items:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def srcnn3_path(tmp_path_factory):
    """The bundled srcnn3.onnx when this install has it, else an SRCNN-shaped stand-in."""
    from sdk.errors import ModelError
    from sdk.model import bundled_path

    try:
        return bundled_path("srcnn3")
    except ModelError:
        path = tmp_path_factory.mktemp("models") / "srcnn3-test.onnx"
        onnx.save(srcnn3_graph(), str(path))
        return path


@pytest.fixture(scope="session")
def image():
    """A 40 x 56 RGB test picture: noise (the hardest case for a resize) beside smooth gradients."""
    rng = np.random.default_rng(7)
    picture = np.empty((40, 56, 3), np.uint8)
    picture[:, :28] = rng.integers(0, 256, (40, 28, 3), dtype=np.uint8)
    ys, xs = np.mgrid[0:40, 0:28]
    picture[:, 28:, 0] = ys * 6
    picture[:, 28:, 1] = xs * 9
    picture[:, 28:, 2] = 255 - (ys + xs) * 3
    return picture


@pytest.fixture
def plugins(monkeypatch):
    """A clean plugin registry with no SDK_* plugin variables set; yields sdk.plugins."""
    import sdk.plugins

    for name in PLUGIN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    sdk.plugins.reset()
    yield sdk.plugins
    sdk.plugins.reset()


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """deploy-sdk's optimised models go to a cache of the test run's own, never the user's."""
    with pytest.MonkeyPatch.context() as patch:  # session-scoped, so not the monkeypatch fixture
        patch.setenv("SDK_CACHE_DIR", str(tmp_path_factory.mktemp("sdk-cache")))
        # backend="auto" goes by priority unless a test measures on purpose (tune=True).
        patch.setenv("SDK_TUNE", "0")
        yield
