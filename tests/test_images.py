"""Photos as people have them: EXIF orientation, ICC profiles, alpha, bytes and file objects."""

import io

import numpy as np
import pytest
from PIL import Image, ImageCms

import sdk
from sdk.images import decode, save_atomic, to_rgb


def _exif(orientation: int, **tags) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    for tag, value in tags.items():
        exif[{"Make": 0x010F, "Model": 0x0110}[tag]] = value
    return exif


@pytest.fixture
def sideways(tmp_path, photo):
    """The photo stored as a phone stores a portrait shot: rotated, with orientation 6 in EXIF."""
    stored = np.ascontiguousarray(np.rot90(photo, 1))  # what the sensor wrote
    path = tmp_path / "phone.jpg"
    Image.fromarray(stored).save(path, quality=98, subsampling=0, exif=_exif(6, Make="Acme"))
    return path, stored


def test_exif_orientation_is_applied_on_read(sideways, photo):
    path, stored = sideways
    upright = to_rgb(path)
    assert upright.shape == photo.shape  # turned back the way every viewer shows it
    assert np.abs(upright.astype(int) - photo).mean() < 3  # JPEG noise only
    assert to_rgb(path, orient=False).shape == stored.shape


def test_orientation_tag_is_dropped_and_the_rest_of_exif_kept(sideways, tmp_path):
    path, _ = sideways
    decoded = decode(path)
    out = tmp_path / "out.jpg"
    save_atomic(decoded.pixels, out, source=decoded)
    exif = Image.open(out).getexif()
    assert 0x0112 not in exif and exif[0x010F] == "Acme"
    # Without orientation, the tag is kept, so viewers turn the output the way they turned the input.
    kept = decode(path, orient=False)
    save_atomic(kept.pixels, tmp_path / "raw.jpg", source=kept)
    assert Image.open(tmp_path / "raw.jpg").getexif()[0x0112] == 6


def test_predictor_and_cli_turn_photos_upright(sideways, runtime_model, photo, tmp_path):
    path, _ = sideways
    predictor = sdk.Predictor(runtime_model, backend="ort-cpu")
    assert predictor(path, scale=2).shape == (photo.shape[0] * 2, photo.shape[1] * 2, 3)
    assert predictor(path, scale=2, orient=False).shape == (photo.shape[1] * 2, photo.shape[0] * 2, 3)
    from sdk import cli

    assert (
        cli.main(["upscale", str(path), "-o", str(tmp_path / "o.png"), "--model", runtime_model, "--scale", "2"]) == 0
    )
    assert Image.open(tmp_path / "o.png").size == (photo.shape[1] * 2, photo.shape[0] * 2)


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp", ".tif"])
def test_icc_profile_is_kept(tmp_path, photo, runtime_model, suffix):
    rgb_icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    source = tmp_path / f"in{suffix}"
    Image.fromarray(photo).save(source, icc_profile=rgb_icc)
    from sdk import cli

    out = tmp_path / f"out{suffix}"
    assert cli.main(["upscale", str(source), "-o", str(out), "--model", runtime_model, "--scale", "2"]) == 0
    assert Image.open(out).info.get("icc_profile") == rgb_icc


def test_a_profile_that_is_not_rgb_is_not_copied_onto_rgb_pixels():
    # A CMYK profile (the colour space sits at bytes 16..20 of its header) cannot describe the RGB
    # result; one littleCMS cannot read is dropped rather than written onto the wrong pixels.
    fake_cmyk = bytes(16) + b"CMYK" + bytes(108)
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 0, 0))
    cmyk.info["icc_profile"] = fake_cmyk
    decoded = decode(cmyk)
    assert decoded.pixels.shape == (8, 8, 3) and decoded.icc_profile is None


def test_bytes_and_file_objects(tmp_path, photo, runtime_model):
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, format="PNG")
    data = buffer.getvalue()
    np.testing.assert_array_equal(to_rgb(data), photo)
    np.testing.assert_array_equal(to_rgb(io.BytesIO(data)), photo)
    np.testing.assert_array_equal(to_rgb(bytearray(data)), photo)
    predictor = sdk.Predictor(runtime_model, backend="ort-cpu")
    np.testing.assert_array_equal(predictor(data, scale=2), predictor(photo, scale=2))
    with pytest.raises(sdk.InputError, match="not an image"):
        to_rgb(b"not a picture")
    with pytest.raises(sdk.InputError, match="cannot read an image from int"):
        to_rgb(42)


def test_alpha_travels_to_formats_that_have_it(tmp_path, photo):
    alpha = np.tile(np.linspace(0, 255, photo.shape[1]).astype(np.uint8), (photo.shape[0], 1))
    Image.fromarray(np.dstack([photo, alpha])).save(tmp_path / "a.png")
    decoded = decode(tmp_path / "a.png")
    assert decoded.pixels.shape == photo.shape and decoded.alpha.shape == alpha.shape
    big = np.repeat(np.repeat(decoded.pixels, 2, 0), 2, 1)
    save_atomic(big, tmp_path / "b.png", source=decoded)
    save_atomic(big, tmp_path / "b.jpg", source=decoded)
    written = Image.open(tmp_path / "b.png")
    assert written.mode == "RGBA" and written.size == (photo.shape[1] * 2, photo.shape[0] * 2)
    assert abs(int(np.asarray(written)[0, -1, 3]) - 255) <= 2 and np.asarray(written)[0, 0, 3] <= 2
    assert Image.open(tmp_path / "b.jpg").mode == "RGB"


def test_16_bit_grayscale_keeps_its_top_bits(tmp_path):
    ramp = np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    rgb = to_rgb(tmp_path / "g16.png")
    np.testing.assert_array_equal(rgb[..., 0], (ramp >> 8).astype(np.uint8))
    with pytest.raises(sdk.InputError, match="shift them up to 16 bits"):
        to_rgb(np.zeros((4, 4, 3), np.int16))


def test_output_format_follows_the_extension(tmp_path, photo):
    save_atomic(photo, tmp_path / "x.webp")
    save_atomic(photo, tmp_path / "x.JPEG")
    assert Image.open(tmp_path / "x.webp").format == "WEBP" and Image.open(tmp_path / "x.JPEG").format == "JPEG"
    with pytest.raises(sdk.InputError, match="image format"):
        save_atomic(photo, tmp_path / "x.unknown")


def test_16_bit_rgb_keeps_its_top_bits(tmp_path):
    import struct
    import zlib

    # Pillow cannot write 48-bit PNGs, so this one is assembled from its chunks.
    h, w = 4, 5
    rows = b"".join(b"\x00" + np.full((w, 3), [0x1234, 0xABCD, 0x00FF], ">u2").tobytes() for _ in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    (tmp_path / "rgb16.png").write_bytes(png)
    rgb = to_rgb(tmp_path / "rgb16.png")
    assert rgb.shape == (h, w, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0].tolist() == [0x12, 0xAB, 0x00]


def test_16_bit_arrays_keep_16_bits_through_the_pipeline(runtime_model, y_model, photo):
    """uint16 in, uint16 out, at the same place on the 8-bit scale as the uint8 picture (x257), and
    with the precision below 8 bits kept: the 16-bit result differs from the 8-bit one by less than
    a step of 8 bits, and is not a multiple of 257 (as a result cut to 8 bits would be)."""
    deep = photo.astype(np.uint16) * 257 + 100  # between two 8-bit levels
    for model in (runtime_model, y_model):
        with sdk.Predictor(model, backend="ort-cpu") as p:
            scale = None if p.scale else 2
            shallow = p(photo, scale=scale).astype(np.float64) * 257
            out = p(deep, scale=scale)
            tiled = p(deep, scale=scale, tile=16)
        assert out.dtype == np.uint16 and out.shape == shallow.shape
        assert np.abs(out - shallow).mean() < 257 and (out % 257 != 0).mean() > 0.5
        assert np.abs(tiled.astype(int) - out).max() <= 257  # tiles stitch the 16-bit picture too


def test_the_largest_side_a_format_holds_is_checked_in_one_place(tmp_path):
    """Files (sdk upscale) and the server's answers refuse by the same table, each naming its own fix."""
    from sdk.images import check_fits_format, check_writable_size

    check_writable_size(tmp_path / "wide.png", 10, 70000)
    with pytest.raises(sdk.InputError, match=r"wide\.jpg: a 70000x10 picture does not fit in JPEG .*65535.*\.png"):
        check_writable_size(tmp_path / "wide.jpg", 10, 70000)
    with pytest.raises(sdk.InputError, match=r"a 10x16384 result does not fit in WEBP .*16383.*; ask for png"):
        check_fits_format("WEBP", 16384, 10, "ask for png", "result")
    check_fits_format("WEBP", 16383, 16383, "ask for png")
    pytest.importorskip("starlette", reason="the server's check needs the serve extra")
    from sdk.serve import coding
    from sdk.serve.errors import HTTPError

    with pytest.raises(HTTPError) as refused:
        coding.check_size("webp", 16384, 10)
    assert refused.value.status == 422 and "format=png" in refused.value.message
