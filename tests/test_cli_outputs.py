"""`sdk upscale` checks where it will write before any work: a looping symbolic link, an input, a
folder that cannot be written are each a clear error, with no traceback and nothing upscaled."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from sdk import cli


@pytest.fixture
def pictures(tmp_path, photo):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(photo).save(folder / "a.png")
    return folder


@pytest.fixture
def no_work(monkeypatch):
    """Fails the test if any image reaches the engine."""
    import sdk.jobs

    def run(*args, **kwargs):
        raise AssertionError("upscaling started before the outputs were checked")

    monkeypatch.setattr(sdk.jobs, "run", run)


def upscale(inputs, output, model) -> list[str]:
    return ["upscale", *map(str, inputs), "-o", str(output), "--model", model, "--scale", "2", "--backend", "ort-cpu"]


def test_a_symlink_loop_at_the_output_name_is_a_clear_error(pictures, tmp_path, runtime_model, capsys, no_work):
    loop = tmp_path / "out.png"
    loop.symlink_to(loop)
    assert cli.main(upscale([pictures / "a.png"], loop, runtime_model)) == 1
    err = capsys.readouterr().err
    assert "symbolic link that leads back to itself" in err and "Traceback" not in err


def test_a_symlink_loop_inside_the_output_folder_is_a_clear_error(pictures, tmp_path, runtime_model, capsys, no_work):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").symlink_to(out / "b.png")
    (out / "b.png").symlink_to(out / "a.png")
    assert cli.main(upscale([pictures], out, runtime_model)) == 1
    err = capsys.readouterr().err
    assert "leads back to itself" in err and "Traceback" not in err


def test_an_output_folder_that_cannot_be_made_is_found_before_any_work(
    pictures, tmp_path, runtime_model, capsys, no_work
):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert cli.main(upscale([pictures], blocker / "sub", runtime_model)) == 1
    err = capsys.readouterr().err
    assert "cannot write in the output folder" in err and "Traceback" not in err


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes in any folder, whatever its mode")
def test_a_read_only_output_folder_is_found_before_any_work(pictures, tmp_path, runtime_model, capsys, no_work):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        assert cli.main(upscale([pictures], out, runtime_model)) == 1
    finally:
        out.chmod(0o755)
    assert "cannot write in the output folder" in capsys.readouterr().err


def test_the_check_leaves_nothing_behind(tmp_path):
    from sdk.files import check_writable

    check_writable(tmp_path / "new" / "folder")
    assert not list(tmp_path.iterdir())  # nothing made, no probe left


def test_video_outputs_get_the_same_checks(tmp_path):
    from sdk.errors import SDKError
    from sdk.video.commands import plan_outputs

    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"")
    loop = tmp_path / "out.mkv"
    loop.symlink_to(loop)
    with pytest.raises(SDKError, match="leads back to itself"):
        plan_outputs([clip], loop, alone=True)
    with pytest.raises(SDKError, match="overwrite an input"):
        plan_outputs([clip], Path(tmp_path), alone=False)
