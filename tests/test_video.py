"""Video in, video out, on clips made here with PyAV (64x48, a dozen frames).

Each test says what it shows: every frame at its own timestamp (variable frame rates, B-frames),
audio and subtitles copied packet for packet, colour converted with the stream's own matrix and
range at its own bit depth, rotation and HDR tags kept, and bad input refused with a clear error
before anything is written.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip(
    "av", reason="video needs PyAV: pip install 'deploy-sdk[video]' (make install-dev installs it)"
)

import clips  # noqa: E402
import graphs  # noqa: E402

import sdk  # noqa: E402
from sdk.video import read_frames, upscale_video  # noqa: E402
from sdk.video.segments import work_folder  # noqa: E402

SUBTITLES = "1\n00:00:00,000 --> 00:00:00,200\nHello\n\n2\n00:00:00,240 --> 00:00:00,400\nWorld\n"
VFR = [40, 40, 80, 40, 20, 60, 40, 40, 100, 40, 40, 40]  # ms: a variable frame rate


@pytest.fixture(scope="module")
def identity(tmp_path_factory):
    path = graphs.save(graphs.identity_model(), tmp_path_factory.mktemp("id") / "identity.onnx")
    with sdk.Predictor(path, backend="ort-cpu") as predictor:
        yield predictor


@pytest.fixture(scope="module")
def doubler(runtime_model):
    with sdk.Predictor(runtime_model, backend="ort-cpu") as predictor:
        yield predictor


def streams_of(path: Path) -> list[tuple]:
    with av.open(str(path)) as container:
        return [(s.type, s.metadata.get("language"), s.metadata.get("title")) for s in container.streams]


def planes(path: Path) -> list[list[np.ndarray]]:
    """Every frame's Y, Cb, Cr planes as stored (no conversion)."""
    from sdk.video import libav

    out = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            dtype = np.dtype(np.uint8 if libav.depth_of(frame.format) <= 8 else np.uint16)
            out.append([libav.read_plane(p, dtype, p.width, p.height).astype(np.int32) for p in frame.planes[:3]])
    return out


@pytest.mark.parametrize("audio, durations", [("aac", VFR), ("libopus", None)], ids=["aac-vfr", "opus-cfr"])
def test_every_frame_keeps_its_timestamp_and_other_streams_are_copied(tmp_path, doubler, audio, durations):
    """Variable and constant frame rates with B-frames (x264's default), cut into several segments:
    the output has every source frame at the same time, the audio and subtitle packets byte for
    byte, the attachment, languages and titles; the picture is twice the size."""
    font = ("font.ttf", "application/x-truetype-font", b"\x00\x01\x00\x00 a font")
    source = clips.make(
        tmp_path / "in.mkv",
        clips.Clip(durations=durations, audio=audio, subtitles=SUBTITLES, attachment=font, keyint=4, language="eng"),
    )
    seen = []
    summary = upscale_video(
        doubler, source, tmp_path / "out.mkv", scale=2, segment_seconds=0.1, progress=lambda *a: seen.append(a)
    )
    out = tmp_path / "out.mkv"
    assert summary.frames == 12 and summary.segments == 3 and seen[-1] == (12, 12)
    assert clips.frame_times(out) == clips.frame_times(source)
    assert clips.end_time(out) == clips.end_time(source)  # the last frame lasts as long: the same duration
    assert clips.packets(out, "audio") == clips.packets(source, "audio")
    assert clips.packets(out, "subtitles") == clips.packets(source, "subtitles")
    assert streams_of(out) == streams_of(source)
    with av.open(str(out)) as container:
        attached = container.streams.attachments[0]
        assert (attached.name, bytes(attached.data)) == (font[0], font[2])
        assert (container.streams.video[0].width, container.streams.video[0].height) == (128, 96)
    assert not work_folder(out).exists()  # the work in progress is gone once the output is whole


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_chapters_metadata_aspect_ratio_and_dispositions_are_kept(tmp_path, doubler, suffix):
    """The container's title and chapters, the picture's sample aspect ratio (anamorphic video) and the
    audio's dispositions (a commentary track, the default one) reach the output unchanged. MP4 keeps
    its chapter titles in a text track of its own, which is not refused as a stream MP4 cannot hold."""
    clip = clips.Clip(
        frames=6,
        audio="aac",
        title="A short film",
        chapters=[(0, 120, "Opening"), (120, 240, "End")],
        sample_aspect_ratio=Fraction(4, 3),
        audio_disposition="comment",
    )
    source = clips.make(tmp_path / f"in{suffix}", clip)
    out = tmp_path / f"out{suffix}"
    upscale_video(doubler, source, out, scale=2)
    expected = [(Fraction(0), Fraction(12, 100), "Opening"), (Fraction(12, 100), Fraction(24, 100), "End")]
    assert clips.chapters(out) == clips.chapters(source) == expected
    with av.open(str(source)) as before, av.open(str(out)) as after:
        assert after.metadata.get("title") == before.metadata.get("title") == "A short film"
        assert [s.disposition for s in after.streams] == [s.disposition for s in before.streams]
        assert after.streams.audio[0].disposition & av.stream.Disposition.comment
        aspect = [c.streams.video[0].sample_aspect_ratio for c in (before, after)]
        assert aspect == [Fraction(4, 3)] * 2


COLOUR_CASES = [(matrix, rng, depth) for matrix in (5, 1, 9) for rng in (1, 2) for depth in (8, 10)]


@pytest.mark.parametrize(
    "matrix, color_range, depth",
    COLOUR_CASES,
    ids=[
        f"{['', 'bt709', '', '', '', 'bt601', '', '', '', 'bt2020'][m]}-{'limited' if r == 1 else 'full'}-{d}bit"
        for m, r, d in COLOUR_CASES
    ],
)
def test_colour_round_trip_through_an_identity_model_is_within_one_code_value(
    tmp_path, identity, matrix, color_range, depth
):
    """BT.601/BT.709/BT.2020, limited and full range, 8 and 10 bit: YCbCr -> RGB (the source's
    matrix and range) -> identity model -> YCbCr -> lossless FFV1 gives back the source's samples
    within 1 code value, and the output carries the source's tags. A wrong matrix or range moves
    saturated colours by tens of code values."""
    pix_fmt = "yuv420p" if depth == 8 else "yuv420p10le"
    tags = {"colorspace": matrix, "color_range": color_range, "color_primaries": matrix, "color_trc": 1}
    source = clips.make(tmp_path / "in.mkv", clips.Clip(frames=3, codec="ffv1", pix_fmt=pix_fmt, tags=tags))
    upscale_video(identity, source, tmp_path / "out.mkv", codec="ffv1")
    before, after = planes(source), planes(tmp_path / "out.mkv")
    assert len(before) == len(after) == 3
    for a, b in zip(before, after):
        for plane_a, plane_b in zip(a, b):
            assert np.abs(plane_a - plane_b).max() <= 1
    with av.open(str(tmp_path / "out.mkv")) as container:
        ctx = container.streams.video[0].codec_context
        assert (ctx.colorspace, ctx.color_range, ctx.color_primaries, ctx.format.name) == (
            matrix,
            color_range,
            matrix,
            pix_fmt,
        )


@pytest.mark.parametrize("codec, pix_fmt", [("libx264", "yuv420p"), ("libx265", "yuv420p10le")])
def test_x264_and_x265_lossless_modes_round_trip_too(tmp_path, identity, codec, pix_fmt):
    source = clips.make(
        tmp_path / "in.mkv", clips.Clip(frames=3, codec="ffv1", pix_fmt=pix_fmt, tags={"colorspace": 1})
    )
    upscale_video(identity, source, tmp_path / "out.mkv", codec=codec, lossless=True)
    for a, b in zip(planes(source), planes(tmp_path / "out.mkv")):
        assert max(int(np.abs(x - y).max()) for x, y in zip(a, b)) <= 1


HDR10_PARAMS = "master-display=G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,50):max-cll=1000,400"


def hdr_metadata(path: Path) -> dict[str, bytes]:
    """The HDR10 side data of a video's first frame, as its decoder gives it."""
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        wanted = ("MASTERING_DISPLAY_METADATA", "CONTENT_LIGHT_LEVEL")
        return {d.type.name: bytes(d) for d in frame.side_data if d.type.name in wanted}


def test_ten_bit_hevc_with_hdr10_tags_stays_ten_bit_and_hdr(tmp_path, doubler, caplog):
    """A 10-bit HEVC source with BT.2020 primaries and matrix, the PQ transfer and HDR10's static
    metadata (mastering display, content light level): the frames travel as 16-bit RGB (read_frames
    gives uint16), the output is 10-bit HEVC (the default for deep sources) with the same tags and
    the same metadata, as its decoder reads it back; an encoder with no place for the metadata says so."""
    tags = {"colorspace": 9, "color_range": 1, "color_primaries": 9, "color_trc": 16}
    options = {"x265-params": f"log-level=error:{HDR10_PARAMS}"}
    clip = clips.Clip(frames=4, codec="libx265", pix_fmt="yuv420p10le", tags=tags, options=options)
    source = clips.make(tmp_path / "hdr.mp4", clip)
    frames = list(read_frames(source))
    assert len(frames) == 4 and frames[0].pixels.dtype == np.uint16 and frames[0].pixels.shape == (48, 64, 3)
    assert frames[1].time == pytest.approx(0.04)
    upscale_video(doubler, source, tmp_path / "out.mp4", scale=2)
    with av.open(str(tmp_path / "out.mp4")) as container:
        ctx = container.streams.video[0].codec_context
        assert (ctx.name, ctx.format.name, ctx.width) == ("hevc", "yuv420p10le", 128)
        assert (ctx.colorspace, ctx.color_primaries, ctx.color_trc, ctx.color_range) == (9, 9, 16, 1)
    assert clips.frame_times(tmp_path / "out.mp4") == clips.frame_times(source)
    metadata = hdr_metadata(source)
    assert len(metadata) == 2 and hdr_metadata(tmp_path / "out.mp4") == metadata
    upscale_video(doubler, source, tmp_path / "out.mkv", scale=2, codec="libx264")
    assert "HDR10 metadata (mastering display 0.005..1000 cd/m², MaxCLL 1000, MaxFALL 400)" in caplog.text
    assert hdr_metadata(tmp_path / "out.mkv") == {}


def test_svt_av1_carries_hdr10_metadata_too(tmp_path, identity):
    """SVT-AV1 takes the same metadata in its own syntax; AV1 stores chromaticities in 1/65536 steps,
    so they come back within that step."""
    from sdk.video import hdr

    tags = {"colorspace": 9, "color_range": 1, "color_primaries": 9, "color_trc": 16}
    options = {"x265-params": f"log-level=error:{HDR10_PARAMS}"}
    clip = clips.Clip(frames=2, codec="libx265", pix_fmt="yuv420p10le", tags=tags, options=options)
    source = clips.make(tmp_path / "hdr.mkv", clip)
    upscale_video(identity, source, tmp_path / "out.mkv", codec="libsvtav1", preset="12")
    before, after = (hdr.parse(tuple(hdr_metadata(p).items())) for p in (source, tmp_path / "out.mkv"))
    assert after.display and before.display and (after.max_cll, after.max_fall) == (1000, 400)
    for name in ("red", "green", "blue", "white"):
        got, want = (np.array(getattr(d, name), float) for d in (after.display, before.display))
        assert np.allclose(got, want, atol=2e-5)
    assert after.display.max_luminance == 1000 and float(after.display.min_luminance) == pytest.approx(0.005, abs=1e-4)


def test_hdr10_side_data_that_cannot_be_read_is_named_in_a_warning_not_dropped_silently(caplog):
    """A truncated content light level (4 of its 8 bytes) or a mastering display without its
    luminance is left out with a warning that says which and why; what can be read is still written."""
    import struct
    from types import SimpleNamespace

    from sdk.video import encoder, hdr

    primaries = [34000, 50000, 16000, 50000, 13250, 50000, 34500, 50000, 7500, 50000, 3000, 50000]
    display = struct.pack("<22i", *primaries, 15635, 50000, 16450, 50000, 50, 10000, 1000, 1, 1, 1)
    source = SimpleNamespace(
        path="hdr.mkv", hdr_side_data=((hdr.MASTERING, display), (hdr.LIGHT_LEVEL, b"\xe8\x03\0\0"))
    )
    found = hdr.parse(source.hdr_side_data)
    assert found.display and found.display.max_luminance == 1000 and found.max_cll is None
    assert found.unread == ("the content light level (truncated: 4 of 8 bytes)",)
    written = encoder._hdr_options(source, "libx265")["x265-params"]
    assert written.startswith("master-display=G(") and "max-cll" not in written
    assert (
        "hdr.mkv: HDR10 metadata left out, the output goes without it: the content light level (truncated"
        in caplog.text
    )
    no_luminance = display[:80] + struct.pack("<2i", 1, 0)  # has_primaries, not has_luminance
    found = hdr.parse(((hdr.MASTERING, no_luminance),))
    assert not found and found.unread == (
        "the mastering display (incomplete: it gives the primaries or the luminance, not both)",
    )


def test_a_rotated_phone_video_keeps_its_rotation(tmp_path, doubler):
    source = clips.make(tmp_path / "phone.mp4", clips.Clip(frames=4, rotation=90, audio="aac"))
    upscale_video(doubler, source, tmp_path / "out.mp4", scale=2)
    with av.open(str(tmp_path / "out.mp4")) as container:
        assert next(container.decode(video=0)).rotation == 90
    assert clips.frame_times(tmp_path / "out.mp4") == clips.frame_times(source)
    assert clips.packets(tmp_path / "out.mp4", "audio") == clips.packets(source, "audio")


def test_bt601_full_range_is_read_as_full_range(tmp_path, identity):
    """A full-range BT.601 source (as phones and JPEG-derived video are): the RGB frames use the full
    range (a limited-range reading would lift black to 16 and compress white), and the output is
    tagged full range."""
    tags = {"colorspace": 5, "color_range": 2}
    source = clips.make(tmp_path / "in.mkv", clips.Clip(frames=2, codec="ffv1", tags=tags))
    pixels = next(iter(read_frames(source))).pixels.astype(float) / 255
    assert np.abs(pixels - clips.picture(0)).max() < 4 / 255
    upscale_video(identity, source, tmp_path / "out.mp4")
    with av.open(str(tmp_path / "out.mp4")) as container:
        assert container.streams.video[0].codec_context.color_range == 2


def test_a_stream_the_container_cannot_hold_is_refused_before_any_work(tmp_path, doubler):
    source = clips.make(tmp_path / "in.mkv", clips.Clip(frames=3, subtitles=SUBTITLES))
    out = tmp_path / "out.mp4"
    with pytest.raises(sdk.InputError, match=r"cannot hold stream #1 subtitle srt \(deu\): write \.mkv instead"):
        upscale_video(doubler, source, out, scale=2)
    assert not out.exists() and not work_folder(out).exists()
    summary = upscale_video(doubler, source, out, scale=2, drop_streams=True)
    assert summary.dropped and [s[0] for s in streams_of(out)] == ["video"]


def _subtitle_bitmap(seed: int) -> np.ndarray:
    """12 x 64 pixel values 1..3 (opaque, so the decoder crops nothing): whole-line runs (the longest
    run code) top and bottom, and between them runs of every code length, shifted per row."""
    bitmap = np.ones((12, clips.WIDTH), dtype=np.uint8)
    for row in range(1, 11):
        runs = [(2, 3), (3, 5 + row % 3), (1, 20 - row), (2, clips.WIDTH)]
        x = (row + seed) % 4
        for colour, length in runs:
            bitmap[row, x : x + length] = colour
            x += length
    return bitmap


BITMAPS = [(0, 200, _subtitle_bitmap(0)), (240, 160, _subtitle_bitmap(1))]  # (start, duration) in ms


def test_bitmap_subtitles_are_copied_packet_for_packet_and_refused_where_they_cannot_go(tmp_path, doubler):
    """DVD subtitles (run-length coded bitmaps; tests/spu.py writes them, as no encoder PyAV drives
    does): FFmpeg's decoder reads the source's pictures back as written, the output holds the same
    packets at the same times with the same palette header, and an output container that cannot hold
    them (WebM) is refused before any work, naming Matroska."""
    source = clips.make(tmp_path / "in.mkv", clips.Clip(frames=12, keyint=4, bitmap_subtitles=BITMAPS))
    with av.open(str(source)) as container:
        stream = container.streams.subtitles[0]
        shown = [stream.decode2(packet) for packet in container.demux(stream) if packet.size]
    for subtitle, (_, duration, bitmap) in zip(shown, BITMAPS, strict=True):
        rect = subtitle.rects[0]
        assert (rect.x, rect.y, rect.width, rect.height) == (*clips.BITMAP_AT, 64, 12)
        assert np.array_equal(np.frombuffer(bytes(rect.planes[0]), np.uint8).reshape(12, 64), bitmap)
        assert abs(subtitle.end_display_time - duration) < 12  # the format's clock ticks every 11.4 ms
    out = tmp_path / "out.mkv"
    upscale_video(doubler, source, out, scale=2, segment_seconds=0.1)
    assert clips.packets(out, "subtitles") == clips.packets(source, "subtitles")
    assert len(clips.packets(out, "subtitles")) == len(BITMAPS)
    with av.open(str(source)) as before, av.open(str(out)) as after:
        header = [c.streams.subtitles[0].codec_context.extradata for c in (before, after)]
        assert header[0] == header[1] and b"palette: 000000, ffffff, 808080, ffe000" in header[0]
        assert after.streams.subtitles[0].codec_context.name == "dvdsub"
    webm = tmp_path / "out.webm"
    with pytest.raises(sdk.InputError, match=r"cannot hold stream #1 subtitle dvdsub \(eng\): write \.mkv instead"):
        upscale_video(doubler, source, webm, scale=2)
    assert not webm.exists() and not work_folder(webm).exists()


def test_blu_ray_pgs_subtitles_are_copied_packet_for_packet_and_refused_by_mp4_and_webm(tmp_path, doubler):
    """PGS (Blu-ray bitmap) subtitles: tests/pgs.py writes their segments; FFmpeg's decoder reads the
    source's pictures back as written, the Matroska output holds the same packets at the same times,
    and MP4 and WebM, which cannot hold them, are refused before any work with a container named."""
    subtitles = [(0, 200, _subtitle_bitmap(0)), (240, 160, _subtitle_bitmap(1))]
    source = clips.make(tmp_path / "in.mkv", clips.Clip(frames=12, keyint=4, pgs_subtitles=subtitles))
    with av.open(str(source)) as container:
        stream = container.streams.subtitles[0]
        assert stream.codec_context.name == "pgssub"
        shown = [s for p in container.demux(stream) if p.size for s in [stream.decode2(p)] if s and s.rects]
    for subtitle, (_, _, bitmap) in zip(shown, subtitles, strict=True):
        rect = subtitle.rects[0]
        assert (rect.x, rect.y, rect.width, rect.height) == (*clips.BITMAP_AT, 64, 12)
        assert np.array_equal(np.frombuffer(bytes(rect.planes[0]), np.uint8).reshape(12, -1)[:, :64], bitmap)
    out = tmp_path / "out.mkv"
    upscale_video(doubler, source, out, scale=2, segment_seconds=0.1)
    copied = clips.packets(out, "subtitles")
    assert copied == clips.packets(source, "subtitles") and len(copied) >= 2 * len(subtitles)
    for suffix in ("mp4", "webm"):
        target = tmp_path / f"out.{suffix}"
        container = f"the output container \\({suffix}\\)"
        with pytest.raises(
            sdk.InputError, match=container + r" cannot hold stream #1 subtitle pgssub \(jpn\): write \.mkv"
        ):
            upscale_video(doubler, source, target, scale=2)
        assert not target.exists() and not work_folder(target).exists()


def test_what_is_not_a_video_gets_a_clear_error(tmp_path, doubler, photo):
    from PIL import Image

    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all\n" * 20)
    Image.fromarray(photo).save(tmp_path / "still.png")
    (tmp_path / "still.mkv").write_bytes((tmp_path / "still.png").read_bytes())
    audio_only = tmp_path / "audio.mka"
    with av.open(str(audio_only), "w") as out:
        stream = out.add_stream("aac", rate=48000)
        clips._write_audio(av, out, stream, Fraction(1, 10))
    for path, message in [
        (text, "not a video FFmpeg can read|holds no video stream"),
        (tmp_path / "still.mkv", "holds no video stream"),
        (audio_only, "holds no video stream"),
        (tmp_path / "missing.mkv", "does not exist"),
    ]:
        with pytest.raises(sdk.InputError, match=message):
            upscale_video(doubler, path, tmp_path / "out.mkv", scale=2)
    assert not (tmp_path / "out.mkv").exists()


def test_the_cli_calls_a_damaged_file_named_as_a_video_a_video(tmp_path, capsys):
    """Bytes no demuxer reads, in a file named .mkv: the error is the video job's (what FFmpeg found),
    not the image job's advice to convert it to PNG; nothing is written."""
    from sdk import cli

    bad = tmp_path / "clip.mkv"
    bad.write_bytes(bytes(range(256)) * 20)
    args = ["upscale", str(bad), "-o", str(tmp_path / "out.mkv"), "--model", "srcnn3", "--scale", "2"]
    assert cli.main([*args, "--backend", "ort-cpu"]) == 1
    err = capsys.readouterr().err
    assert "not a video FFmpeg can read" in err and "Pillow" not in err
    assert not (tmp_path / "out.mkv").exists()


def test_a_truncated_file_gives_the_frames_before_the_damage_with_a_warning(tmp_path, doubler, caplog):
    source = clips.make(tmp_path / "in.mkv", clips.Clip(frames=12, keyint=4))
    data = source.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) * 2 // 3])
    summary = upscale_video(doubler, cut, tmp_path / "out.mkv", scale=2)
    times = clips.frame_times(tmp_path / "out.mkv")
    assert 0 < len(times) < 12 and times == clips.frame_times(source)[: len(times)]
    assert summary.frames == len(times)
    assert "damaged near" in summary.damage and "File ended prematurely" in summary.damage
    assert summary.damage in caplog.text
    mp4 = clips.make(tmp_path / "in.mp4", clips.Clip(frames=12, keyint=4))
    (tmp_path / "cut.mp4").write_bytes(mp4.read_bytes()[: mp4.stat().st_size * 2 // 3])  # no index (moov)
    with pytest.raises(sdk.InputError, match="finds no streams in it; is it whole"):
        upscale_video(doubler, tmp_path / "cut.mp4", tmp_path / "out.mp4", scale=2)
    assert not (tmp_path / "out.mp4").exists()


@pytest.mark.parametrize("where, offset, length", [("container", -12, 40), ("picture", 8, 30)])
def test_damage_in_the_middle_is_named_and_the_rest_upscaled(tmp_path, doubler, caplog, where, offset, length):
    """Garbage in the middle of a Matroska file, in its structure (the demuxer skips what it cannot
    parse, without raising) or in a picture's bytes (the parser and decoder reject it): the job
    upscales the frames it can read, each at its own time, and says where the damage is."""
    source = clips.make(tmp_path / "in.mkv", clips.Clip(frames=12, keyint=4))
    with av.open(str(source)) as container:
        positions = [p.pos for p in container.demux(video=0) if p.size]
    data = bytearray(source.read_bytes())
    start = positions[6] + offset
    data[start : start + length] = bytes(b ^ 0x5A for b in data[start : start + length])
    bad = tmp_path / "bad.mkv"
    bad.write_bytes(bytes(data))
    summary = upscale_video(doubler, bad, tmp_path / "out.mkv", scale=2)
    times = clips.frame_times(tmp_path / "out.mkv")
    assert 0 < len(times) < 12 and set(times) < set(clips.frame_times(source))
    assert summary.frames == len(times) and "damaged near 0:00:00" in summary.damage
    assert summary.damage in caplog.text
    assert upscale_video(doubler, source, tmp_path / "whole.mkv", scale=2).damage is None


def _damage_first_picture(source: Path, target: Path, length: int) -> Path:
    """A copy of ``source`` with ``length`` bytes of its first picture's packet flipped, from its start
    (the NAL unit's length field) on."""
    with av.open(str(source)) as container:
        payload = bytes(next(p for p in container.demux(video=0) if p.size))
    data = bytearray(source.read_bytes())
    start = data.find(payload)
    data[start : start + length] = bytes(b ^ 0x5A for b in data[start : start + length])
    target.write_bytes(bytes(data))
    return target


def test_a_damaged_first_picture_is_skipped_to_the_first_that_decodes(tmp_path, doubler, caplog):
    """As FFmpeg does: the first picture, which the decoder rejects, is skipped; the frames that depend
    on it (up to the next keyframe) are lost and counted, the rest upscaled at their own times, and the
    warning and summary.damage name where. Only a video in which nothing decodes is refused."""
    source = clips.make(tmp_path / "in.mkv", clips.Clip(frames=12, keyint=4))
    bad = _damage_first_picture(source, tmp_path / "bad.mkv", 40)
    summary = upscale_video(doubler, bad, tmp_path / "out.mkv", scale=2)
    assert clips.frame_times(tmp_path / "out.mkv") == clips.frame_times(source)[4:]
    assert summary.frames == 8 and summary.lost == [
        "4 damaged frame(s) left out at 0:00:00.000, 0:00:00.040, 0:00:00.080, 0:00:00.120"
    ]
    assert summary.damage.startswith("the file is damaged near 0:00:00.000 (Invalid NAL unit size")
    assert summary.damage in caplog.text
    whole = _damage_first_picture(source, tmp_path / "none.mkv", source.stat().st_size)
    with pytest.raises(sdk.InputError, match="has no frame that can be decoded"):
        upscale_video(doubler, whole, tmp_path / "none-out.mkv", scale=2)
    assert not (tmp_path / "none-out.mkv").exists()


def test_without_pyav_a_video_gets_an_error_naming_the_extra(tmp_path, doubler, monkeypatch, capsys):
    from sdk import cli

    source = clips.make(tmp_path / "in.mkv", clips.Clip(frames=2))
    monkeypatch.setitem(__import__("sys").modules, "av", None)  # as if PyAV were not installed
    with pytest.raises(sdk.InputError, match=r"video needs PyAV.*pip install 'deploy-sdk\[video\]'"):
        upscale_video(doubler, source, tmp_path / "out.mkv", scale=2)
    args = ["upscale", str(source), "-o", str(tmp_path / "out.mkv"), "--model", "srcnn3", "--scale", "2"]
    assert cli.main([*args, "--backend", "ort-cpu"]) == 1
    assert "pip install 'deploy-sdk[video]'" in capsys.readouterr().err
    assert not (tmp_path / "out.mkv").exists()


def test_an_untagged_source_follows_ffmpegs_defaults_in_one_warning(tmp_path, identity, caplog):
    """No colour tags: BT.601 below 720 lines, BT.709 from 720, limited range, chroma sited left,
    said once; the output is tagged with what was used."""
    from sdk.video import colorimetry, source

    small = clips.make(tmp_path / "small.mkv", clips.Clip(frames=2, codec="ffv1"))
    upscale_video(identity, small, tmp_path / "out.mkv")
    warnings = [r for r in caplog.records if "no colour tags" in r.getMessage()]
    assert len(warnings) == 1 and "matrix BT.601 (48 lines), limited range" in warnings[0].getMessage()
    with av.open(str(tmp_path / "out.mkv")) as container:
        ctx = container.streams.video[0].codec_context
        assert (ctx.colorspace, ctx.color_range) == (colorimetry.BT601, colorimetry.LIMITED)
    tall = clips.make(tmp_path / "tall.mkv", clips.Clip(frames=1, width=16, height=720, codec="ffv1"))
    assert source.probe(tall).colorimetry.matrix == colorimetry.BT709


def test_sizes_4_2_0_cannot_store_and_results_too_large_are_refused(tmp_path, identity, doubler):
    odd = clips.make(tmp_path / "odd.mkv", clips.Clip(frames=2, width=63, height=47, codec="ffv1", pix_fmt="yuv444p"))
    with pytest.raises(sdk.InputError, match="63x47.*divisible.*--pix-fmt yuv444p"):
        upscale_video(identity, odd, tmp_path / "out.mkv", pix_fmt="yuv420p")
    upscale_video(identity, odd, tmp_path / "out.mkv")  # the source's own 4:4:4 is kept, and fits
    small = clips.make(tmp_path / "small.mkv", clips.Clip(frames=2))
    with pytest.raises(sdk.InputError, match="cannot encode a 19200x14400"):
        upscale_video(doubler, small, tmp_path / "big.mkv", scale=300)
    assert not (tmp_path / "big.mkv").exists()


def test_the_cli_upscales_a_video_and_a_folder_of_videos_and_images(tmp_path, runtime_model, photo, capsys):
    from PIL import Image

    from sdk import cli

    folder = tmp_path / "in"
    folder.mkdir()
    clips.make(folder / "a.mkv", clips.Clip(frames=3))
    Image.fromarray(photo).save(folder / "b.png")
    clips.make(folder / "c.bin", clips.Clip(frames=2), container="matroska")  # a video by content, whatever its name
    args = ["--model", runtime_model, "--scale", "2", "--backend", "ort-cpu", "--crf", "30", "--preset", "veryfast"]
    assert cli.main(["upscale", str(folder / "a.mkv"), "-o", str(tmp_path / "one.mp4"), *args]) == 0
    assert len(clips.frame_times(tmp_path / "one.mp4")) == 3
    assert cli.main(["upscale", str(folder), "-o", str(tmp_path / "out"), *args]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.mkv", "b.png", "c.bin.mkv"]
    assert "upscaled" in capsys.readouterr().err
    assert cli.main(["upscale", str(folder / "a.mkv"), "-o", str(tmp_path / "x.mkv"), *args, "--codec", "nope"]) == 1
    assert "no such encoder" in capsys.readouterr().err


def test_images_beside_videos_get_an_engine_with_all_cores(tmp_path, runtime_model, photo, monkeypatch):
    """The videos' engine runs one single-threaded call per core (sdk.video.engine); the images of
    the same command, which make one call at a time, get an engine opened with all the cores."""
    from PIL import Image

    import sdk.predictor
    from sdk import cli

    opened = []

    class Recorded(sdk.predictor.Predictor):
        def __init__(self, *args, **options):
            super().__init__(*args, **options)
            opened.append((options, self))

    monkeypatch.setattr(sdk.predictor, "Predictor", Recorded)
    monkeypatch.setattr("sdk.video.engine.engine_calls", lambda: 2)
    folder = tmp_path / "in"
    folder.mkdir()
    clips.make(folder / "a.mkv", clips.Clip(frames=3))
    Image.fromarray(photo).save(folder / "b.png")
    args = ["--model", runtime_model, "--scale", "2", "--backend", "ort-cpu", "--preset", "veryfast"]
    assert cli.main(["upscale", str(folder), "-o", str(tmp_path / "out"), *args]) == 0
    assert [p.concurrent_calls for _, p in opened] == [2, 1]
    assert "intra_op_num_threads" in opened[0][0] and "intra_op_num_threads" not in opened[1][0]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.mkv", "b.png"]


def test_the_cli_bar_shows_frames_done_of_the_total_the_rate_and_the_time_left(
    tmp_path, runtime_model, capsys, monkeypatch
):
    """The text the CLI prints: rich writes a bar's last state when stderr is a file or a pipe, here
    the whole clip done; and, on a clock the test turns, the rate and the time left of a resumed job,
    whose frames done before count in "done" but not in this run's rate."""
    import io
    import re

    from rich.console import Console

    from sdk import cli
    from sdk.video.commands import _Bar

    monkeypatch.setenv("COLUMNS", "160")
    source = clips.make(tmp_path / "clip.mkv", clips.Clip(frames=12))
    args = ["--model", runtime_model, "--scale", "2", "--backend", "ort-cpu"]
    assert cli.main(["upscale", str(source), "-o", str(tmp_path / "out.mkv"), *args]) == 0
    err = capsys.readouterr().err
    assert re.search(r"clip\.mkv .*12/12 frames, \d+\.\d\d fps, 0:00:00 left", err), err

    now = [100.0]
    text = io.StringIO()
    with _Bar("resumed.mkv", console=Console(file=text, width=160), clock=lambda: now[0]) as bar:
        bar.update(4, 12)  # an earlier run finished 4 frames
        assert bar.rate_text() == ""
        now[0] += 2.0
        bar.update(5, 12)
        assert bar.rate_text() == ", 0.50 fps, 0:00:14 left"  # 1 frame in 2 s; 7 frames to go
        now[0] += 2.0
        bar.update(8, 12)
        assert bar.rate_text() == ", 1.00 fps, 0:00:04 left"
    assert re.search(r"resumed\.mkv .*8/12 frames, 1\.00 fps, 0:00:04 left", text.getvalue()), text.getvalue()
    with _Bar("long.mkv", console=Console(file=io.StringIO()), clock=lambda: now[0]) as bar:
        bar.update(0, 100_000)
        now[0] += 4.0
        bar.update(10, 100_000)
        assert bar.rate_text() == ", 2.50 fps, 11:06:36 left"  # 99,990 frames at 2.5 fps


SLOW_JOB = """
import sys, time
import sdk
from sdk.jobs import stop_on_signals
from sdk.video import upscale_video
model, source, output, delay = sys.argv[1:]
with stop_on_signals(), sdk.Predictor(model, backend="ort-cpu") as p:
    upscale_video(p, source, output, scale=2, segment_seconds=0.1, progress=lambda *a: time.sleep(float(delay)))
"""


def _wait_for(path: Path, process, seconds: float = 60) -> None:
    import time

    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.mark.slow
def test_kill_9_midway_then_resume_gives_the_uninterrupted_result(tmp_path, runtime_model, doubler):
    """A job killed with SIGKILL after its first segment resumes without redoing it, and the result is
    frame for frame (count, timestamps, pixels) and packet for packet (audio) the uninterrupted run's."""
    import signal
    import subprocess
    import sys

    source = clips.make(tmp_path / "in.mkv", clips.Clip(frames=12, keyint=4, durations=VFR, audio="aac"))
    whole = tmp_path / "whole.mkv"
    upscale_video(doubler, source, whole, scale=2, segment_seconds=0.1)
    out = tmp_path / "out.mkv"
    job = subprocess.Popen([sys.executable, "-c", SLOW_JOB, runtime_model, str(source), str(out), "0.3"])
    first = work_folder(out) / "00000.packets"
    _wait_for(first, job)
    job.send_signal(signal.SIGKILL)
    job.wait(timeout=30)
    assert not out.exists() and first.exists()
    seen = []
    summary = upscale_video(doubler, source, out, scale=2, segment_seconds=0.1, progress=lambda *a: seen.append(a))
    assert summary.resumed_segments >= 1 and summary.upscaled <= 8 and seen[0][0] >= 4
    assert summary.upscaled == 12 - seen[0][0]  # only what the killed run had not finished
    assert clips.frame_times(out) == clips.frame_times(whole) == clips.frame_times(source)
    assert clips.packets(out, "audio") == clips.packets(whole, "audio") == clips.packets(source, "audio")
    assert clips.packets(out, "video") == clips.packets(whole, "video")
    assert not work_folder(out).exists()


def test_a_signal_while_a_segment_file_is_being_opened_leaves_no_part_file(tmp_path, monkeypatch):
    """The window CI once hit: SIGTERM right after a segment finished lands while the next one's part
    file is being created (inside PacketWriter, before the writer holds it); the file still goes."""
    from types import SimpleNamespace

    from sdk.jobs import Interrupted
    from sdk.video import job as video_job
    from sdk.video.segments import Segment, Workspace

    class CutOffWriter:
        def __init__(self, path, *_):
            path.write_bytes(b"half a header")
            raise Interrupted(15)

    monkeypatch.setattr(video_job.encoder, "open_encoder", lambda *_: SimpleNamespace(extradata=None))
    monkeypatch.setattr(video_job, "PacketWriter", CutOffWriter)
    space = Workspace(tmp_path / "out.mkv", {"job": 1}).open()
    job = SimpleNamespace(plan=None, source=SimpleNamespace(time_base=Fraction(1, 1000)))
    with pytest.raises(Interrupted), video_job._SegmentWriter(job, space) as writer:
        writer.begin(Segment(1, 10, 20, 10))
    assert not list(space.folder.glob(".*.part"))


@pytest.mark.slow
@pytest.mark.parametrize("name, code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_signal_stops_the_cli_with_a_summary_and_the_same_command_goes_on(tmp_path, runtime_model, name, code):
    """SIGINT (Ctrl-C) and SIGTERM (a pre-empted machine) stop a video as they stop an image folder:
    a summary, exit 130 or 143, no output and no segment in progress left; the same command then
    keeps the finished segments."""
    import signal
    import subprocess
    import sys

    source = clips.make(tmp_path / "in.mkv", clips.Clip(frames=60, keyint=10, width=160, height=120))
    out = tmp_path / "out.mkv"
    command = [sys.executable, "-m", "sdk", "upscale", str(source), "-o", str(out), "--model", runtime_model]
    command += ["--scale", "2", "--backend", "ort-cpu", "--segment-seconds", "0.3"]
    job = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    _wait_for(work_folder(out) / "00000.packets", job)
    job.send_signal(getattr(signal, name))
    _, err = job.communicate(timeout=60)
    if job.returncode == 0:
        pytest.skip(f"the job finished before {name} arrived (a very fast machine)")
    assert job.returncode == code and f"interrupted by {name}: run the same command again" in err
    assert not out.exists() and not list(work_folder(out).glob(".*.part"))
    if name == "SIGTERM":
        return  # the resume is the same either way: shown once
    done = subprocess.run(command, stderr=subprocess.PIPE, text=True, timeout=300)
    assert done.returncode == 0 and "segment(s) kept from an earlier run" in done.stderr
    assert clips.frame_times(out) == clips.frame_times(source)
