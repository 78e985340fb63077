import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # so tests can import the graphs helper

import graphs


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
    """Why the `gpu` tests cannot run here ("" when they can)."""
    from sdk.devices import cuda_gpus

    if not cuda_gpus():
        return "needs a CUDA GPU: NVML finds none on this machine (benchmarks/gpu/check.sh runs these on one)"
    try:
        import onnxruntime
    except ImportError:
        return "needs onnxruntime-gpu: onnxruntime is not installed"
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        return f"needs onnxruntime-gpu: onnxruntime {onnxruntime.__version__} here is the CPU build"
    return ""


def pytest_collection_modifyitems(config, items):
    marked = [item for item in items if item.get_closest_marker("gpu")]
    reason = _no_gpu_reason() if marked else ""
    for item in marked if reason else ():
        item.add_marker(pytest.mark.skip(reason=reason))
