"""What an operator can tune about a server, in one frozen record (the CLI and create_app share it)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..errors import InputError


@dataclass(frozen=True)
class ServeSettings:
    """How ``sdk serve`` and :func:`sdk.serve.create_app` run a model: batching, back-pressure, the
    limits on what one request may ask, the window size, access, and threads.

    Each field has the CLI option of the same name (``--max-batch`` for ``max_batch``); the comment
    beside a field says what it bounds. Every value is checked when the record is made: a bad one
    raises :class:`sdk.InputError` naming the field. The record is frozen: :meth:`replace` gives a
    changed copy.

    >>> ServeSettings(max_batch=4, token="a-long-random-string").replace(tile=128)
    """

    # Batching: tiles per engine call, and how long the engine waits for more while a request that
    # is about to submit is still decoding (it never waits when nobody is coming).
    max_batch: int = 8
    max_delay_ms: float = 5.0
    # Back-pressure: requests admitted at once (decoding, queued, running, encoding); past it, 503.
    max_queue: int = 64
    # Hostile requests (docs/serving-limits.md): result pixels (read from the header and the scale,
    # before decoding: they bound the input too), the largest scale (None: the model's fixed one, or
    # limits.RUNTIME_MAX_SCALE for a runtime-scale model), body bytes, a /v2 request's JSON part (bytes,
    # and levels of nesting: a request needs 3, plus a tensor's rank for JSON data), its images and its
    # tensor elements.
    max_pixels: int = 8192 * 8192
    max_scale: int | None = None
    max_body_bytes: int = 64 * 1024 * 1024
    max_json_bytes: int = 16 * 1024 * 1024
    max_json_depth: int = 32
    max_images: int = 16
    max_elements: int = 2**24
    timeout_s: float = 60.0
    # Slow clients (sdk.serve.connections, admission.read_body): open connections (fewer where the
    # open-file limit is lower), seconds to send the headers, seconds for the body plus one per
    # min_body_rate bytes, bytes of bodies being read at once, and seconds an idle keep-alive stays.
    max_connections: int = 4096
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    min_body_rate: int = 2**20
    max_reading_bytes: int = 512 * 2**20
    keep_alive_s: float = 5.0
    # Images are cut into windows of one size (tile x tile input pixels plus the model's margin of
    # context, from sdk.tiling) so that images of different sizes share engine calls; an image that
    # fits in one window runs whole, exactly as Predictor runs it.
    tile: int = 256
    # Bearer token; None means no authentication (only sensible on the loopback).
    token: str | None = None
    # Threads for decoding, pre/post-processing and encoding (beside the engine's thread).
    workers: int = 4

    def __post_init__(self) -> None:
        wholes = ("max_batch", "max_queue", "max_pixels", "max_body_bytes", "max_json_bytes", "max_json_depth")
        more = (
            "max_images",
            "max_elements",
            "max_connections",
            "min_body_rate",
            "max_reading_bytes",
            "tile",
            "workers",
        )
        for name in (*wholes, *more, "max_scale"):
            value = getattr(self, name)
            if value is None and name == "max_scale":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name}={value!r} must be a positive whole number")
        for name in ("max_delay_ms", "timeout_s", "header_timeout_s", "body_timeout_s", "keep_alive_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
                raise InputError(f"{name}={value!r} must be a number >= 0")
        if self.token is not None and not self.token:
            raise InputError("token must not be empty; pass a long random string, or no token at all")

    def replace(self, **changes: Any) -> ServeSettings:
        """A copy with ``changes`` (field name -> value), checked as a new record is; an unknown name
        raises :class:`sdk.InputError` listing the known ones."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise InputError(
                f"unknown server setting(s) {sorted(unknown)}; known: {[f.name for f in dataclasses.fields(self)]}"
            )
        return dataclasses.replace(self, **changes)
