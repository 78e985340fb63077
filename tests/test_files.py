"""Atomic writes: every file the SDK writes is the old one or the whole new one, never a part."""

from __future__ import annotations

import os

import pytest

from sdk.files import atomic_file, atomic_write


def test_the_target_appears_only_when_the_block_succeeds(tmp_path):
    target = tmp_path / "deep" / "report.json"
    with atomic_file(target) as handle:
        handle.write(b"{}")
        assert not target.exists()  # still under its temporary name
    assert target.read_bytes() == b"{}"
    assert [p.name for p in target.parent.iterdir()] == ["report.json"]


def test_a_failure_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"old model")
    with pytest.raises(RuntimeError, match="exporter crashed"), atomic_file(target) as handle:
        handle.write(b"half a mod")
        raise RuntimeError("exporter crashed")
    assert target.read_bytes() == b"old model"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_text_is_written_as_utf8_with_the_permissions_of_a_plain_open(tmp_path):
    target = tmp_path / "table.md"
    atomic_write(target, "| gain | +1.39 dB |\n")
    assert target.read_text(encoding="utf-8") == "| gain | +1.39 dB |\n"
    plain = tmp_path / "plain"
    plain.write_text("x")  # what open() gives under this process's umask
    assert oct(target.stat().st_mode & 0o777) == oct(plain.stat().st_mode & 0o777)
    assert os.stat(target).st_mode & 0o044  # not the private 0600 of a temporary file
