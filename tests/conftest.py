import sys
from fnmatch import fnmatch
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # so tests can import the graphs helper

import graphs

# What each test module needs beyond the core, by file name (a module gets the marks of every pattern it
# matches): `make test-fast` leaves these out, and the tests marked `slow` where they are written; `make
# test` runs them all. The markers are declared in pyproject.toml; tests/test_markers.py fails for a
# module that imports Ray, the server or selenium without its mark.
AREAS = {
    "test_ray.py": ("ray",),
    "test_*_ray.py": ("ray",),
    "test_serve*.py": ("serve",),
    "test_serve_page.py": ("browser",),
    "test_trt_engine.py": ("gpu",),
}


def areas(path) -> set[str]:
    return {mark for pattern, marks in AREAS.items() if fnmatch(path.name, pattern) for mark in marks}


def pytest_ignore_collect(collection_path, config):
    """Not even import an area's module when `-m` deselects every test it could hold: importing Ray
    alone costs seconds, which `make test-fast` would pay for tests it then leaves out."""
    area = areas(collection_path)
    if not area or not config.option.markexpr:
        return None
    from itertools import combinations

    from _pytest.mark.expression import Expression  # what -m itself evaluates with

    expression = Expression.compile(config.option.markexpr)
    # A test carries its module's marks plus any of the registered ones written on it.
    others = [line.split(":")[0] for line in config.getini("markers") if line.split(":")[0] not in area]
    extras = [set(c) for n in range(len(others) + 1) for c in combinations(others, n)]
    if any(expression.evaluate(lambda name, /, **_: name in {*area, *extra}) for extra in extras):
        return None
    return True


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def runtime_model(models_dir) -> str:
    return graphs.save(graphs.runtime_scale_model(), models_dir / "srcnn3-like.onnx")


@pytest.fixture(scope="session")
def fixed_model(models_dir) -> str:
    return graphs.save(graphs.fixed_scale_model(3), models_dir / "srcnn-like.onnx")


@pytest.fixture(scope="session")
def y_model(models_dir) -> str:
    return graphs.save(graphs.y_channel_model(3), models_dir / "espcn-like.onnx")


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """A real photograph (scikit-image ships it offline), small enough for fast tests."""
    from PIL import Image
    from skimage import data

    return np.asarray(Image.fromarray(data.astronaut()).resize((48, 40), Image.Resampling.BICUBIC))


@pytest.fixture
def fresh_plugins():
    """Reload plugins around a test that changes sys.path or the environment."""
    from sdk import plugins

    plugins.reset()
    yield plugins
    plugins.reset()


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Optimised models and engines go to a cache of the test run's own, never the user's."""
    with pytest.MonkeyPatch.context() as patch:  # session-scoped, so not the monkeypatch fixture
        patch.setenv("SDK_CACHE_DIR", str(tmp_path_factory.mktemp("sdk-cache")))
        # backend="auto" goes by priority here, whatever plugins this environment has: a timing trial
        # would make tests slow and their choice noisy. tests/test_tuning.py measures on purpose.
        patch.setenv("SDK_TUNE", "0")
        yield


def _no_gpu_reason() -> str:
    """Why the `gpu` tests cannot run here ("" when they can); each engine's own tests say what else
    they need (tests/test_gpu.py: onnxruntime-gpu; test_trt_engine.py: TensorRT)."""
    from sdk.devices import cuda_gpus

    if not cuda_gpus():
        return "needs a CUDA GPU: NVML finds none on this machine (benchmarks/gpu/check.sh runs these on one)"
    return ""


def pytest_collection_modifyitems(config, items):
    for item in items:  # the areas' marks first: the GPU check below reads them
        for name in areas(item.path):
            item.add_marker(name)
    marked = [item for item in items if item.get_closest_marker("gpu")]
    reason = _no_gpu_reason() if marked else ""
    for item in marked if reason else ():
        item.add_marker(pytest.mark.skip(reason=reason))
