"""Fuzz target: a fuzzer-built multipart/form-data body → `handler.aws.form_data.parse_form`.

The body is built from the fuzzer's bytes as parts (header lines and payloads around a boundary),
so mutations reach the parser's states rather than failing at the first boundary. Any outcome
but a parsed form or a `BackgroundRemovalError` is a finding, and so is a form of more parts or a
text field of more bytes than the bounds allow.
"""

from __future__ import annotations

import atheris
from common import run  # also puts the repository on sys.path

with atheris.instrument_imports(include=["handler", "multipart"]):
    import multipart

    from handler.aws.form_data import MAX_FIELD_BYTES, MAX_PARTS, parse_form
    from handler.aws.request import IMAGE_FIELDS
    from handler.core.errors import BackgroundRemovalError

BOUNDARIES = ["b0undary", "----WebKitFormBoundary7MA4YWxkTrZu0gW", "x", ""]
HEADERS = [
    'Content-Disposition: form-data; name="image"; filename="a.jpg"',
    'Content-Disposition: form-data; name="format"',
    "Content-Type: image/jpeg",
    "Content-Length: 3",
    "Content-Transfer-Encoding: base64",
]
parsed_parts = 0
_create_segment = multipart.PushMultipartParser._create_segment


def _counting_create_segment(self: multipart.PushMultipartParser, headerlist: object) -> object:
    global parsed_parts
    parsed_parts += 1
    return _create_segment(self, headerlist)


multipart.PushMultipartParser._create_segment = _counting_create_segment


def body_from(data: bytes) -> tuple[str, bytes]:
    fdp = atheris.FuzzedDataProvider(data)
    boundary = fdp.PickValueInList(BOUNDARIES) if fdp.ConsumeBool() else fdp.ConsumeUnicodeNoSurrogates(12)
    content_type = f"multipart/form-data; boundary={boundary}" + fdp.ConsumeUnicodeNoSurrogates(
        fdp.ConsumeIntInRange(0, 8)
    )
    parts = []
    for _ in range(fdp.ConsumeIntInRange(0, 80)):
        lines = [
            fdp.PickValueInList(HEADERS) if fdp.ConsumeBool() else fdp.ConsumeUnicodeNoSurrogates(40)
            for _ in range(fdp.ConsumeIntInRange(0, 10))
        ]
        head = "\r\n".join(lines).encode("utf-8", errors="surrogateescape")
        payload = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64)) * fdp.ConsumeIntInRange(1, 400)
        parts.append(f"--{boundary}\r\n".encode() + head + b"\r\n\r\n" + payload + b"\r\n")
    tail = f"--{boundary}--\r\n".encode() if fdp.ConsumeBool() else b""
    return content_type, b"".join(parts) + tail + fdp.ConsumeBytes(fdp.remaining_bytes())


def test_one_input(data: bytes) -> None:
    global parsed_parts
    content_type, body = body_from(data)
    parsed_parts = 0
    try:
        form = parse_form(content_type, body, IMAGE_FIELDS)
    except BackgroundRemovalError:
        assert parsed_parts <= MAX_PARTS
        return
    assert parsed_parts <= MAX_PARTS
    assert all(len(value.encode("utf-8")) <= 3 * MAX_FIELD_BYTES for value in form.text.values())


def seeds() -> list[bytes]:
    return [bytes([1, 0, 0, 2, 1, 0, 1, 1, 0, 3, 1, 1]) + b"\xff\xd8\xff" * 8, b"\x00" * 64, bytes(range(256))]


if __name__ == "__main__":
    run("forms", test_one_input, seeds())
