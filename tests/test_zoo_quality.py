"""The quality benchmark, the PSNR protocol and the demo, on a tiny generated folder of images."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sdk.zoo.imaging import crop_to_multiple, downscale, luma_bt601, psnr_y, upscale

ROOT = Path(__file__).resolve().parent.parent


def _quality_module():
    spec = importlib.util.spec_from_file_location("quality", ROOT / "benchmarks" / "quality.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Three small smooth 'photos' of odd sizes, one of them grayscale."""
    out = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(50, 62), (47, 41), (36, 36)]):
        coarse = rng.integers(0, 256, (h // 6 + 2, w // 6 + 2, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC)
        (image.convert("L") if i == 2 else image).save(out / f"img{i}.png")
    (out / "notes.txt").write_text("not an image")
    return out


def test_luma_is_matlab_rgb2ycbcr():
    white, black = np.full((1, 1, 3), 255, np.uint8), np.zeros((1, 1, 3), np.uint8)
    assert luma_bt601(white)[0, 0] == pytest.approx(235.0)
    assert luma_bt601(black)[0, 0] == pytest.approx(16.0)


def test_psnr_crops_the_border_and_uses_peak_255():
    a = np.full((10, 10, 3), 100, np.uint8)
    b = a.copy()
    b[0, :] = 0  # a wrong border row: cropped away
    assert psnr_y(a, b, border=1) == float("inf")
    c = a.copy()
    c[1:-1, 1:-1] = 110  # Y differs by 10 * 219/255 everywhere inside
    expected = 10 * np.log10(255**2 / (10 * 219 / 255) ** 2)
    assert psnr_y(a, c, border=1) == pytest.approx(expected)


def test_quality_table_on_any_folder(folder, tmp_path, capsys):
    quality = _quality_module()
    prefix = tmp_path / "q"
    assert quality.main(["--data", str(folder), "--out", str(prefix)]) == 0
    printed = capsys.readouterr().out
    for method in ("bicubic (PIL)", "srcnn", "srcnn3", "espcn", "paper: SRCNN 9-5-5, ImageNet"):
        assert f"| {method} |" in printed
    record = json.loads(prefix.with_suffix(".json").read_text())
    rows = {r["method"]: r for r in record["rows"]}
    assert record["images"] == ["img0.png", "img1.png", "img2.png"]
    assert set(rows["srcnn3"]["psnr"]) == {"2", "3", "4"}
    assert set(rows["srcnn"]["psnr"]) == {"3"} and set(rows["espcn"]["psnr"]) == {"3"}
    # The bicubic row is the protocol applied by hand.
    for scale in (2, 3, 4):
        scores = []
        for name in record["images"]:
            truth = crop_to_multiple(np.asarray(Image.open(folder / name).convert("RGB")), scale)
            scores.append(psnr_y(truth, upscale(downscale(truth, scale), scale), scale))
        assert rows["bicubic (PIL)"]["psnr"][str(scale)] == pytest.approx(np.mean(scores))
    assert "| srcnn3 |" in prefix.with_suffix(".md").read_text()


def test_demo_writes_results_beside_bicubic(folder, tmp_path, capsys):
    from sdk.zoo.demo import main

    assert main(["--out", str(tmp_path), "--image", str(folder / "img0.png"), "--backend", "ort-cpu"]) == 0
    printed = capsys.readouterr().out
    for scale in (2, 3, 4):
        assert (tmp_path / f"img0_x{scale}_compare.png").is_file()
        assert (tmp_path / f"img0_x{scale}_srcnn3.png").is_file()
        assert f"   x{scale}" in printed
        bicubic = Image.open(tmp_path / f"img0_x{scale}_bicubic.png")
        ours = Image.open(tmp_path / f"img0_x{scale}_srcnn3.png")
        assert bicubic.size == ours.size == (62 // scale * scale, 50 // scale * scale)


def test_cli_parser_does_not_import_torch():
    code = (
        "import sys, sdk.cli; p = sdk.cli.build_parser(); "
        "assert p.parse_args(['export', '--out-dir', 'x']).func; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


@pytest.mark.parametrize("model, scale", [("srcnn", 3), ("srcnn3", 2), ("srcnn3", 3), ("srcnn3", 4), ("espcn", 3)])
def test_bundled_models_beat_bicubic_on_a_photo_they_were_not_trained_on(model, scale):
    """The shipped files through the product's own pipeline: a wrong value range, colour order or
    luma conversion anywhere between Predictor and the weights loses to bicubic by whole dBs."""
    import sdk

    data = pytest.importorskip("skimage.data", reason="scikit-image ships the 'camera' photo")
    truth = crop_to_multiple(np.asarray(Image.fromarray(data.camera()).convert("RGB")), scale)
    low = downscale(truth, scale)
    with sdk.Predictor(model, backend="ort-cpu") as predictor:
        ours = predictor(low, scale=scale)
    gain = psnr_y(truth, ours, scale) - psnr_y(truth, upscale(low, scale), scale)
    assert gain > 0.3, f"{model} x{scale}: {gain:+.2f} dB over bicubic"


def test_quality_refuses_a_missing_folder_and_unreadable_images(folder, tmp_path):
    quality = _quality_module()
    with pytest.raises(SystemExit, match="is not a folder; pass --data DIR"):
        quality.main(["--data", str(tmp_path / "nowhere")])
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes((folder / "img0.png").read_bytes())
    (broken / "b.png").write_bytes(b"not a png")
    with pytest.raises(SystemExit, match="cannot read .*b.png .*remove it from the folder"):
        quality.main(["--data", str(broken), "--out", str(tmp_path / "q")])
    assert not (tmp_path / "q.json").exists()
