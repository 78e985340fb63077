"""The image of a /v1 multipart form, read from a body already in memory, on a worker thread.

Starlette's own form reader runs on the event loop: a large upload's parsing there stalls every other
client (health checks included) for as long as it takes. The body has arrived whole by then (the
admission read it within its deadline and size), so python-multipart's parser runs on it in one
synchronous call, in the server's worker pool.
"""

from __future__ import annotations

from .errors import bad_request

# A form with an image needs one part; a page's form may add a few fields (scale, format).
MAX_PARTS = 16


class _Part:
    __slots__ = ("chunks", "header", "headers")

    def __init__(self) -> None:
        self.headers: dict[bytes, bytes] = {}
        self.header = [b"", b""]  # the header being read: name, value
        self.chunks: list[bytes] = []


def form_image(body: bytes, content_type: str) -> bytes:
    """The bytes of the form's part named 'image', else of its only file; a 400 that says what to send
    when the form is malformed or holds neither."""
    from python_multipart.exceptions import FormParserError
    from python_multipart.multipart import MultipartParser, parse_options_header

    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise bad_request("the multipart form has no boundary in its Content-Type; send it as multipart/form-data")
    parts: list[_Part] = []
    ended: list[bool] = []

    def begin() -> None:
        if len(parts) >= MAX_PARTS:
            raise bad_request(
                f"the multipart form has more than {MAX_PARTS} parts; send the image as the field 'image'"
            )
        parts.append(_Part())

    def header_field(data: bytes, start: int, end: int) -> None:
        parts[-1].header[0] += data[start:end]

    def header_value(data: bytes, start: int, end: int) -> None:
        parts[-1].header[1] += data[start:end]

    def header_end() -> None:
        part = parts[-1]
        part.headers[part.header[0].strip().lower()] = part.header[1].strip()
        part.header = [b"", b""]

    callbacks = {
        "on_part_begin": begin,
        "on_header_field": header_field,
        "on_header_value": header_value,
        "on_header_end": header_end,
        "on_part_data": lambda data, start, end: parts[-1].chunks.append(data[start:end]),
        "on_end": lambda: ended.append(True),
    }
    try:
        parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]  # a dict of the callbacks it names
        parser.write(body)
        parser.finalize()
    except (FormParserError, ValueError) as exc:  # python-multipart's errors all mean a malformed form
        raise bad_request(f"the multipart form cannot be read ({exc}); send the image as the field 'image'") from None
    if not ended:
        raise bad_request("the multipart form ends before its closing boundary; send the whole form")
    named: dict[bytes | None, _Part] = {}
    files: list[_Part] = []
    for part in parts:
        _, disposition = parse_options_header(part.headers.get(b"content-disposition"))
        named.setdefault(disposition.get(b"name"), part)
        if b"filename" in disposition:
            files.append(part)
    found = named.get(b"image")
    if found is None:
        if len(files) != 1:
            raise bad_request("the multipart form has no field 'image' (and not exactly one file)")
        found = files[0]
    return b"".join(found.chunks)
