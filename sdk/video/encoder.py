"""The encoder for the upscaled picture: chosen by container and bit depth, checked before any work.

Defaults: libvpx-vp9 for WebM; otherwise libx264 for 8-bit sources and libx265 for deeper ones, each
at a constant quality (CRF) high enough that the upscaler's detail survives. The output keeps the
source's chroma subsampling and bit depth where the encoder can store them. ``lossless`` asks any of
these encoders for its lossless mode; ``ffv1`` is lossless by nature (for archiving).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..errors import InputError
from . import hdr, libav
from .colorimetry import BT709, LIMITED, Colorimetry
from .source import VideoSource

# Constant-quality defaults: visually transparent for each encoder's scale (x264 18, x265 20; VP9's
# scale is 0..63).
DEFAULT_CRF = {"libx264": 18, "libx265": 20, "libvpx-vp9": 24, "libsvtav1": 28}
# How each encoder is asked for lossless output.
LOSSLESS = {
    "libx264": {"qp": "0"},
    "libx265": {"x265-params": "lossless=1"},
    "libvpx-vp9": {"lossless": "1"},
    "libsvtav1": {"svtav1-params": "lossless=1"},
}
CONTAINERS = {".mkv": "matroska", ".mp4": "mp4", ".mov": "mov", ".webm": "webm", ".m4v": "mp4"}
_X265_LOG = {"x265-params": "log-level=error"}

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncoderSettings:
    """What the user asks of the encoder (the CLI's --codec, --crf, --preset, --pix-fmt, --encoder-option,
    --lossless); None leaves the choice to the defaults above."""

    codec: str | None = None
    crf: float | None = None
    preset: str | None = None
    pix_fmt: str | None = None
    options: Mapping[str, str] = field(default_factory=dict)
    lossless: bool = False

    def key(self) -> dict:
        """A plain record of the settings, for the job's identity."""
        return {
            "codec": self.codec,
            "crf": self.crf,
            "preset": self.preset,
            "pix_fmt": self.pix_fmt,
            "options": dict(sorted(self.options.items())),
            "lossless": self.lossless,
        }


@dataclass(frozen=True)
class EncoderPlan:
    """The encoder the job runs: codec, pixel format, options and the picture it makes."""

    codec: str
    pix_fmt: str
    options: dict
    width: int
    height: int
    depth: int
    subsampling: tuple[int, int] | None
    colorimetry: Colorimetry


def container_format(path) -> str:
    """FFmpeg's muxer name for an output path's extension, or an InputError naming the choices."""
    from pathlib import Path

    suffix = Path(path).suffix.lower()
    if suffix not in CONTAINERS:
        raise InputError(f"cannot tell the video container of {path}; end the output with {', '.join(CONTAINERS)}")
    return CONTAINERS[suffix]


def plan(settings: EncoderSettings, source: VideoSource, container: str, scale: int) -> EncoderPlan:
    """The encoder for ``source`` upscaled by ``scale`` into ``container``, opened once on a dummy
    stream so that every refusal (size, pixel format, options) comes before any work."""
    av = libav.import_av()
    codec = settings.codec or _default_codec(source, container)
    try:
        described = av.codec.Codec(codec, "w")
    except (av.FFmpegError, ValueError) as exc:
        raise InputError(f"--codec {codec}: FFmpeg has no such encoder ({libav.reason(exc)})") from exc
    if described.type != "video":
        raise InputError(f"--codec {codec} is a {described.type} encoder; name a video encoder such as libx264")
    formats = [f.name for f in described.video_formats or []]
    pix_fmt = settings.pix_fmt or _pixel_format(source, formats, codec)
    if formats and pix_fmt not in formats:
        raise InputError(f"--pix-fmt {pix_fmt}: {codec} cannot encode it; it takes {', '.join(formats)}")
    fmt = av.VideoFormat(pix_fmt)
    if fmt.is_rgb or not (libav.planar_yuv(fmt) or len(fmt.components) == 1):
        raise InputError(f"--pix-fmt {pix_fmt}: pass a planar YUV or grey format such as yuv420p, yuv444p10le or gray")
    width, height = source.width * scale, source.height * scale
    grey = len(fmt.components) == 1
    subsampling = None if grey else libav.subsampling_of(fmt)
    if subsampling and (width % subsampling[0] or height % subsampling[1]):
        raise InputError(
            f"the result is {width}x{height}, but {pix_fmt} stores chroma for blocks of {subsampling[0]}x{subsampling[1]} "
            f"pixels and needs sides divisible by them; use --pix-fmt {libav.planar_name(libav.depth_of(fmt), (1, 1))} "
            "(no chroma subsampling) or a scale that makes both sides even"
        )
    options: dict[str, str] = {}
    for key, value in _options(settings, codec, _hdr_options(source, codec)):
        # x265's and SVT-AV1's own parameters are one option of key=value pairs: join, never replace.
        options[key] = f"{options[key]}:{value}" if key.endswith("-params") and key in options else value
    tags = source.colorimetry
    if source.rgb:  # RGB pictures are stored as YCbCr: say which
        tags = Colorimetry(matrix=BT709, range=LIMITED, primaries=tags.primaries, transfer=tags.transfer)
    result = EncoderPlan(codec, pix_fmt, options, width, height, libav.depth_of(fmt), subsampling, tags)
    _try_open(result, source)
    return result


def _default_codec(source: VideoSource, container: str) -> str:
    if container == "webm":
        return "libvpx-vp9"
    return "libx265" if source.depth > 8 else "libx264"


def _pixel_format(source: VideoSource, formats: list[str], codec: str) -> str:
    """The source's own depth and subsampling where the encoder takes them, else the nearest it does."""
    depth = 8 if source.depth <= 8 else 10 if source.depth <= 10 else 12
    if source.subsampling is None:
        wanted = ["gray" if depth == 8 else f"gray{depth}le"]
    else:
        wanted = [libav.planar_name(depth, source.subsampling)]
    # Nearest first: the same depth in 4:2:0, then 10 bits for deeper sources, then 8-bit 4:2:0.
    wanted += [libav.planar_name(depth, (2, 2)), libav.planar_name(min(depth, 10), (2, 2)), "yuv420p"]
    for name in wanted:
        if not formats or name in formats:
            return name
    planar = [f for f in formats if f.startswith("yuv") and "p" in f[3:]]
    if not planar:
        raise InputError(f"--codec {codec} takes no planar YUV format; choose another encoder")
    return planar[0]


def _hdr_options(source: VideoSource, codec: str) -> dict[str, str]:
    """HDR10's static metadata in the encoder's own parameters, or a warning that it cannot carry it."""
    found = hdr.parse(source.hdr_side_data)
    for what in found.unread:
        log.warning("%s: HDR10 metadata left out, the output goes without it: %s", source.path, what)
    if not found:
        return {}
    written = hdr.encoder_options(found, codec)
    if written is None:
        log.warning(
            "%s carries HDR10 metadata (%s) that %s cannot write; use --codec libx265 or libsvtav1 to keep it",
            source.path,
            hdr.describe(found),
            codec,
        )
        return {}
    return written


def _options(settings: EncoderSettings, codec: str, metadata: Mapping[str, str]):
    av = libav.import_av()
    private = {o.name for o in av.codec.CodecContext.create(codec, "w").supported_options.private}
    if settings.lossless:
        if codec == "ffv1":
            pass  # lossless by nature
        elif codec in LOSSLESS:
            yield from LOSSLESS[codec].items()
        else:
            raise InputError(f"--lossless: the SDK knows no lossless mode of {codec}; use ffv1, libx264 or libx265")
    elif "crf" in private:
        crf = settings.crf if settings.crf is not None else DEFAULT_CRF.get(codec)
        if crf is not None:
            yield "crf", f"{crf:g}"
        if codec == "libvpx-vp9":
            yield "b", "0"  # VP9's constant-quality mode needs the bit rate at zero
    elif settings.crf is not None:
        raise InputError(f"--crf: {codec} has no constant-quality (CRF) mode; use --encoder-option instead")
    if settings.preset is not None:
        if "preset" not in private:
            raise InputError(f"--preset: {codec} has no presets; use --encoder-option instead")
        yield "preset", settings.preset
    if codec == "libx265":
        yield from _X265_LOG.items()  # x265 prints its settings on stderr otherwise
    yield from metadata.items()
    yield from settings.options.items()  # last: the user's own word wins


def configure(ctx, plan: EncoderPlan, source: VideoSource) -> None:
    """Set an encoder (a codec context, opened or not yet) to ``plan``: size, format, time base, colour
    tags, aspect ratio, options. Global headers: the extradata goes once into the container."""
    av = libav.import_av()
    ctx.width, ctx.height = plan.width, plan.height
    ctx.pix_fmt = plan.pix_fmt
    ctx.time_base = source.time_base
    if source.frame_rate:
        ctx.framerate = source.frame_rate  # rate control and level choice; timestamps still rule
    tags = plan.colorimetry
    ctx.colorspace, ctx.color_range = tags.matrix, tags.range
    ctx.color_primaries, ctx.color_trc = tags.primaries, tags.transfer
    if source.sample_aspect_ratio:
        ctx.sample_aspect_ratio = source.sample_aspect_ratio
    options = dict(plan.options)
    if plan.subsampling and plan.subsampling != (1, 1):
        options["chroma_sample_location"] = tags.chroma_location
    ctx.options = options
    ctx.flags |= av.codec.context.Flags.global_header
    ctx.thread_count = 0  # as many as the encoder likes


def open_encoder(plan: EncoderPlan, source: VideoSource):
    """A standalone, opened encoder for ``plan`` (its packets are kept by sdk.video.packets)."""
    av = libav.import_av()
    ctx = av.codec.CodecContext.create(plan.codec, "w")
    configure(ctx, plan, source)
    ctx.open()
    return ctx


def _try_open(plan: EncoderPlan, source: VideoSource) -> None:
    """Open the encoder once with the job's settings: FFmpeg's own refusals, before any work."""
    av = libav.import_av()
    try:
        open_encoder(plan, source)
    except (av.FFmpegError, ValueError, OSError) as exc:
        hint = ""
        if max(plan.width, plan.height) > 8192:
            hint = " (x264 and x265 stop at about 16k pixels a side: use a smaller scale)"
        raise InputError(
            f"{plan.codec} cannot encode a {plan.width}x{plan.height} {plan.pix_fmt} picture with options "
            f"{plan.options or 'none'}: {libav.reason(exc)}{hint}"
        ) from exc
