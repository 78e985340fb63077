"""The trt backend on real TensorRT and a real GPU: engines built from the ONNX file, runtime factors,
the on-disk cache, fp16, profiles. These need libnvinfer, pycuda and an NVIDIA GPU; where one is
missing they skip and say which (TensorRT cannot be installed on our build machines: its PyPI
packages download the libraries from NVIDIA's index, which they cannot reach)."""

from __future__ import annotations

import importlib.util
import logging
import threading
from types import SimpleNamespace

import graphs
import numpy as np
import pytest


def _missing() -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return "TensorRT is not installed (it cannot be installed from PyPI here; see DESIGN.md)"
    if importlib.util.find_spec("pycuda") is None:
        return "pycuda is not installed (pip install 'deploy-sdk[trt]' on a machine with the CUDA toolkit)"
    from sdk.devices import cuda_gpus

    if not cuda_gpus():
        return "no CUDA GPU"
    return None


MISSING = _missing()
pytestmark = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")
FACTORS = (2, 3, 4)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.fixture(scope="module")
def srcnn3() -> str:
    from sdk.model import bundled_path

    return str(bundled_path("srcnn3"))


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("engines")


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    from PIL import Image
    from skimage import data

    return np.asarray(Image.fromarray(data.astronaut()).resize((128, 96), Image.Resampling.BICUBIC))


@pytest.fixture(scope="module")
def reference(srcnn3, image) -> dict[int, np.ndarray]:
    from sdk import Predictor

    with Predictor(srcnn3, backend="ort-cpu") as cpu:
        return {factor: cpu(image, scale=factor) for factor in FACTORS}


@pytest.fixture(scope="module")
def fp32(srcnn3, cache_dir):
    from sdk import Predictor

    with Predictor(srcnn3, backend="trt", cache_dir=cache_dir) as predictor:
        yield predictor


def _engines(cache_dir) -> dict:
    return {p.name: p.stat().st_mtime_ns for p in (cache_dir / "engines").glob("*.engine")}


@pytest.mark.parametrize("factor", FACTORS)
def test_fp32_matches_onnxruntime_cpu(fp32, image, reference, factor):
    assert fp32.backend == "trt"
    out = fp32(image, scale=factor)
    assert out.shape == (image.shape[0] * factor, image.shape[1] * factor, 3)
    assert np.abs(out.astype(int) - reference[factor].astype(int)).max() <= 2


@pytest.mark.parametrize("factor", FACTORS)
def test_fp16_is_within_40_db_of_onnxruntime_cpu(srcnn3, cache_dir, image, reference, factor):
    from sdk import Predictor

    with Predictor(srcnn3, backend="trt", precision="fp16", cache_dir=cache_dir) as half:
        assert _psnr(half(image, scale=factor), reference[factor]) >= 40.0


def test_engines_are_one_per_factor_and_reused_from_disk(fp32, srcnn3, cache_dir, image, reference, caplog):
    from sdk import Predictor

    for factor in FACTORS:
        fp32(image, scale=factor)
    before = _engines(cache_dir)
    with caplog.at_level(logging.WARNING), Predictor(srcnn3, backend="trt", cache_dir=cache_dir) as again:
        for factor in FACTORS:
            assert np.array_equal(again(image, scale=factor), fp32(image, scale=factor))
    assert "building a TensorRT engine" not in caplog.text
    assert _engines(cache_dir) == before


def test_a_corrupt_engine_file_is_rebuilt_with_a_warning(srcnn3, tmp_path, image, reference, caplog):
    from sdk import Predictor

    with Predictor(srcnn3, backend="trt", cache_dir=tmp_path) as first:
        first(image, scale=3)
    (engine,) = (tmp_path / "engines").glob("*.engine")
    blob = engine.read_bytes()
    engine.write_bytes(blob[: len(blob) // 2])
    with caplog.at_level(logging.WARNING), Predictor(srcnn3, backend="trt", cache_dir=tmp_path) as second:
        out = second(image, scale=3)
    assert "unusable" in caplog.text and "building a TensorRT engine" in caplog.text
    assert np.abs(out.astype(int) - reference[3].astype(int)).max() <= 2


def test_an_engine_tensorrt_cannot_load_is_rebuilt(srcnn3, tmp_path, image, reference, caplog):
    """A well-formed cache file whose payload TensorRT rejects (as one from another TensorRT would be)."""
    from deploy_sdk_backends.tensorrt.cache import unwrap, wrap
    from sdk import Predictor

    with Predictor(srcnn3, backend="trt", cache_dir=tmp_path) as first:
        first(image, scale=2)
    (engine,) = (tmp_path / "engines").glob("*.engine")
    key = SimpleNamespace(digest=engine.stem)  # only the digest goes into the header
    payload = unwrap(key, engine.read_bytes())
    engine.write_bytes(wrap(key, b"\0" * len(payload)))
    with caplog.at_level(logging.WARNING), Predictor(srcnn3, backend="trt", cache_dir=tmp_path) as second:
        out = second(image, scale=2)
    assert "could not deserialize" in caplog.text
    assert np.abs(out.astype(int) - reference[2].astype(int)).max() <= 2


def test_a_given_profile_is_enforced(srcnn3, cache_dir, image):
    from sdk import Predictor
    from sdk.errors import InputError

    profile = {"input": [(1, 3, 16, 16), (1, 3, 64, 64), (1, 3, 128, 128)]}
    with Predictor(srcnn3, backend="trt", cache_dir=cache_dir, profile=profile) as bounded:
        assert bounded(image[:64, :64], scale=2).shape == (128, 128, 3)
        with pytest.raises(InputError, match="outside the TensorRT profile you gave"):
            bounded(np.zeros((200, 200, 3), np.uint8), scale=2)


def test_a_derived_profile_widens_for_a_bigger_image(srcnn3, tmp_path, image, caplog):
    from sdk import Predictor

    with Predictor(srcnn3, backend="trt", cache_dir=tmp_path) as predictor:
        small = predictor(image[:32, :32], scale=2)
        with caplog.at_level(logging.WARNING):
            big = predictor(image, scale=2)
        again = predictor(image[:32, :32], scale=2)
    assert "outside the engine's profile" in caplog.text
    assert big.shape == (image.shape[0] * 2, image.shape[1] * 2, 3)
    assert np.abs(small.astype(int) - again.astype(int)).max() <= 1


def test_a_fixed_scale_model_runs(tmp_path, image):
    from sdk import Predictor

    model = graphs.save(graphs.fixed_scale_model(3), tmp_path / "srcnn-like.onnx")
    with Predictor(model, backend="ort-cpu") as cpu, Predictor(model, backend="trt", cache_dir=tmp_path) as gpu:
        assert np.abs(gpu(image).astype(int) - cpu(image).astype(int)).max() <= 2


def test_more_factors_than_the_lru_holds(srcnn3, cache_dir, image, reference):
    from sdk import Predictor

    with Predictor(srcnn3, backend="trt", cache_dir=cache_dir, max_engines=1) as predictor:
        for factor in (*FACTORS, 2):
            assert np.abs(predictor(image, scale=factor).astype(int) - reference[factor].astype(int)).max() <= 2


def test_threads_share_one_predictor(fp32, image, reference):
    results, errors = {}, []

    def work(factor):
        try:
            results[factor] = fp32(image, scale=factor)
        except Exception as exc:  # surfaced below with the factor that failed
            errors.append((factor, exc))

    threads = [threading.Thread(target=work, args=(f,)) for f in FACTORS]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert not errors
    for factor in FACTORS:
        assert np.abs(results[factor].astype(int) - reference[factor].astype(int)).max() <= 2


def test_raw_run_returns_the_model_outputs(fp32, image):
    feeds = {
        "input": np.ascontiguousarray(image.transpose(2, 0, 1)[None].astype(np.float32)),
        "factor": np.array([1, 1, 2, 2], np.float32),
    }
    outputs = fp32.run(feeds)
    assert list(outputs) == [fp32.model.outputs[0].name]
    assert outputs[fp32.model.outputs[0].name].shape == (1, 3, image.shape[0] * 2, image.shape[1] * 2)
