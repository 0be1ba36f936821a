"""multipart/form-data, with limits, through `multipart`'s streaming parser (the one Bottle uses).

The body is untrusted: the standard library's MIME parser spends ~0.15 ms on every part, so 2 MB
of empty parts cost a minute before any answer. Here the parser stops at the first part past
MAX_PARTS, the first header line past MAX_HEADER_LINE, the first text field past
MAX_FIELD_BYTES: what a body costs is bounded by those, whatever its size. The fields that carry
an image (`large_fields`) are bounded by the body alone (API Gateway's 10 MB, Lambda's 6 MB).

Refusals name the body: a malformed or over-structured form is `400 invalid_parameter`, a text
field over its size `413 request_too_large`.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

import multipart

from handler.core.errors import InvalidParameter, RequestTooLarge

# Parts a form may have: an image and the options (this API's and remove.bg's are under 20).
MAX_PARTS = 64
# Bytes of one header line of a part (Content-Disposition with a long file name is ~300).
MAX_HEADER_LINE = 4096
# Header lines of one part (RFC 7578 names three: Content-Disposition, Content-Type, and the
# deprecated Content-Transfer-Encoding).
MAX_HEADERS = 8
# Bytes of a text field's value: options are a few characters, an image URL a few hundred.
MAX_FIELD_BYTES = 16 * 1024


@dataclass(frozen=True)
class Form:
    """The parts of a form by field name, in order; a name sent twice keeps its last value."""

    large: dict[str, list[bytes]] = field(default_factory=dict)  # every value of each large field
    text: dict[str, str] = field(default_factory=dict)


def parse_form(content_type: str, body: bytes, large_fields: Collection[str]) -> Form:
    """The form in `body`; `content_type` is the request's header, with its boundary."""
    _, parameters = multipart.parse_options_header(content_type)
    boundary = parameters.get("boundary")
    if not boundary:
        raise InvalidParameter("body", "multipart/form-data without a valid boundary")
    form = Form()
    try:
        parser = multipart.PushMultipartParser(
            boundary, max_header_size=MAX_HEADER_LINE, max_header_count=MAX_HEADERS, max_segment_count=MAX_PARTS
        )
        with parser:  # leaving it checks that the body ended with the closing boundary
            name, size = "", 0
            chunks: list[bytes] = []
            for event in parser.parse(body):
                if isinstance(event, multipart.MultipartSegment):
                    name, chunks, size = event.name or "", [], 0
                elif event is not None:
                    size += len(event)
                    if name not in large_fields and size > MAX_FIELD_BYTES:
                        raise RequestTooLarge(f"the form field {name!r} is over {MAX_FIELD_BYTES:,} bytes")
                    chunks.append(event)
                elif name in large_fields:
                    form.large.setdefault(name, []).append(b"".join(chunks))
                elif name:
                    form.text[name] = b"".join(chunks).decode("utf-8", errors="replace")
    except multipart.ParserLimitReached as error:
        raise InvalidParameter(
            "body",
            f"the form is over this API's limits ({error}): at most {MAX_PARTS} parts, "
            f"{MAX_HEADERS} header lines of {MAX_HEADER_LINE:,} bytes each",
        ) from error
    except ValueError as error:  # multipart's ParserError, and any header that fails to decode
        raise InvalidParameter("body", f"malformed multipart/form-data ({error})") from error
    return form
