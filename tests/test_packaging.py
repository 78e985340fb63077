"""What `pip install deploy-sdk` puts into site-packages."""

import importlib.metadata
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib")

ROOT = Path(__file__).resolve().parents[1]
INSTALLED_AS = {"sdk": "sdk", "backends": "deploy_sdk_backends"}  # repository folder -> import name


def test_every_package_folder_is_installed():
    """setuptools is given the package list by hand (it cannot rename backends/): a new folder must be in it."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = set()
    for folder, name in INSTALLED_AS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((name, *parts)))
    assert found == set(config["packages"])
    assert config["package-dir"] == {"deploy_sdk_backends": "backends"}


def test_no_generic_top_level_name_and_entry_points_follow():
    entry_points = importlib.metadata.entry_points(group="sdk.backends")
    ours = {ep.name: ep.value for ep in entry_points if ep.dist and ep.dist.name == "deploy-sdk"}
    assert ours == {"onnxruntime": "deploy_sdk_backends.onnxruntime", "tensorrt": "deploy_sdk_backends.tensorrt"}
    top = (importlib.metadata.distribution("deploy-sdk").read_text("top_level.txt") or "").split()
    assert "backends" not in top


def test_the_package_says_it_is_typed():
    """PEP 561: users' type checkers read sdk's annotations only when py.typed is installed with it."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert (ROOT / "sdk" / "py.typed").is_file() and "py.typed" in config["package-data"]["sdk"]
