"""The `sdk` command: upscale files and folders safely, describe models."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import sdk
from sdk import cli


@pytest.fixture
def pictures(tmp_path, photo):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(photo).save(folder / "a.png")
    Image.fromarray(photo[::-1]).save(folder / "b.jpg", quality=95)
    (folder / "notes.txt").write_text("not an image, not picked up")
    return folder


def test_upscale_a_folder(pictures, tmp_path, runtime_model, photo):
    out = tmp_path / "out"
    code = cli.main(
        ["upscale", str(pictures), "-o", str(out), "--model", runtime_model, "--scale", "2", "--backend", "ort-cpu"]
    )
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.jpg"]
    written = np.asarray(Image.open(out / "a.png"))
    expected = sdk.Predictor(runtime_model, backend="ort-cpu")(photo, scale=2)
    np.testing.assert_array_equal(written, expected)


def test_upscale_one_file_to_a_file(pictures, tmp_path, runtime_model):
    target = tmp_path / "big.png"
    assert (
        cli.main(
            [
                "upscale",
                str(pictures / "a.png"),
                "-o",
                str(target),
                "--model",
                runtime_model,
                "--scale",
                "3",
                "--tile",
                "16",
            ]
        )
        == 0
    )
    assert Image.open(target).size == (48 * 3, 40 * 3)


def test_never_overwrites_an_input(pictures, runtime_model, capsys):
    before = (pictures / "a.png").read_bytes()
    code = cli.main(["upscale", str(pictures / "a.png"), "-o", str(pictures), "--model", runtime_model, "--scale", "2"])
    assert code == 1 and "would overwrite an input" in capsys.readouterr().err
    assert (pictures / "a.png").read_bytes() == before


def test_existing_outputs_are_skipped_unless_forced(pictures, tmp_path, runtime_model, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").write_bytes(b"precious")
    args = ["upscale", str(pictures), "-o", str(out), "--model", runtime_model, "--scale", "2"]
    assert cli.main(args) == 0
    err = capsys.readouterr().err
    assert "skipped 1 existing output(s) (pass --force to redo them)" in err and "upscaled 1 of 1" in err
    assert (out / "a.png").read_bytes() == b"precious"
    assert Image.open(out / "b.jpg").size == (96, 80)
    assert cli.main(args + ["--force"]) == 0
    assert Image.open(out / "a.png").size == (96, 80)


def test_an_output_that_is_a_file_is_refused_before_any_work(pictures, tmp_path, runtime_model, capsys):
    notes = tmp_path / "notes"
    notes.write_text("keep me")
    code = cli.main(["upscale", str(pictures), "-o", str(notes), "--model", runtime_model, "--scale", "2"])
    assert code == 1 and f"output {notes} is a file: pass a folder" in capsys.readouterr().err
    assert notes.read_text() == "keep me"


def test_a_failed_write_is_reported_and_the_rest_are_done(pictures, tmp_path, runtime_model, capsys, monkeypatch):
    import sdk.images

    real = sdk.images.atomic_file

    def full_for_a(path, *args):
        if Path(path).name == "a.png":
            raise OSError(28, "No space left on device")
        return real(path, *args)

    monkeypatch.setattr(sdk.images, "atomic_file", full_for_a)
    out = tmp_path / "out"
    code = cli.main(["upscale", str(pictures), "-o", str(out), "--model", runtime_model, "--scale", "2"])
    err = capsys.readouterr().err
    assert code == 1 and "upscaled 1 of 2" in err and "No space left on device" in err
    assert sorted(p.name for p in out.iterdir()) == ["b.jpg"]


def test_a_bad_image_is_reported_and_the_rest_are_done(pictures, tmp_path, runtime_model, capsys):
    (pictures / "c.png").write_bytes(b"truncated png")
    out = tmp_path / "out"
    code = cli.main(["upscale", str(pictures), "-o", str(out), "--model", runtime_model, "--scale", "2"])
    err = capsys.readouterr().err
    assert code == 1 and "upscaled 2 of 3" in err and "c.png" in err
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.jpg"]  # no partial file for c.png


def test_a_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    from sdk.images import save_atomic

    target = tmp_path / "x.png"
    target.write_bytes(b"old")

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", explode)
    with pytest.raises(OSError):
        save_atomic(np.zeros((4, 4, 3), np.uint8), target)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]


def test_missing_scale_fails_before_any_work(pictures, tmp_path, runtime_model, capsys):
    out = tmp_path / "out"
    assert cli.main(["upscale", str(pictures), "-o", str(out), "--model", runtime_model]) == 1
    assert "pass scale=" in capsys.readouterr().err and not out.exists()


def test_missing_input(tmp_path, capsys):
    assert cli.main(["upscale", str(tmp_path / "none.png"), "-o", str(tmp_path / "o")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_info(runtime_model, capsys):
    assert cli.main(["info", runtime_model, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert [i["name"] for i in info["inputs"]] == ["input", "factor"]
    assert info["opset"] == 11 and info["pipeline"]["scale_input"] == "factor"
    assert info["pipeline_source"] == "inferred"
    assert info["pipeline_sources"]["value_range"] == "inferred"
    assert cli.main(["info", runtime_model]) == 0
    out = capsys.readouterr().out
    assert re.search(r"value_range\s+\[0\.0, 255\.0\]\s+inferred", out)
    assert "warning" in out and "--value-range 0 1" in out


def test_python_dash_m_sdk_and_console_script():
    listed = subprocess.run(
        [sys.executable, "-m", "sdk", "backends", "--json"], check=True, capture_output=True, text=True
    )
    names = {r["name"] for r in json.loads(listed.stdout)}
    assert {"ort-cpu", "ort-cuda"} <= names


@pytest.mark.parametrize("tile, message", [("abc", "--tile 'abc'"), ("-2", "--tile -2")])
def test_bad_tile_and_budget_options_fail_before_any_work(pictures, tmp_path, runtime_model, capsys, tile, message):
    out = tmp_path / "out"
    assert (
        cli.main(["upscale", str(pictures), "-o", str(out), "--model", runtime_model, "--scale", "2", "--tile", tile])
        == 1
    )
    assert message in capsys.readouterr().err and not out.exists()
    assert (
        cli.main(
            [
                "upscale",
                str(pictures),
                "-o",
                str(out),
                "--model",
                runtime_model,
                "--scale",
                "2",
                "--memory-budget",
                "plenty",
            ]
        )
        == 1
    )
    assert "not a size" in capsys.readouterr().err and not out.exists()


def test_tiled_cli_output_equals_untiled(pictures, tmp_path, runtime_model):
    base = ["upscale", str(pictures / "a.png"), "--model", runtime_model, "--scale", "3"]
    assert cli.main(base + ["-o", str(tmp_path / "tiled.png"), "--tile", "8"]) == 0
    assert cli.main(base + ["-o", str(tmp_path / "whole.png"), "--tile", "0"]) == 0
    tiled, whole = (np.asarray(Image.open(tmp_path / f"{n}.png")).astype(int) for n in ("tiled", "whole"))
    assert np.abs(tiled - whole).max() <= 1
