"""multipart/form-data with limits (handler.aws.form_data): hostile forms are refused at the first
part, header line or byte past a bound, whatever follows. Work is counted in parts parsed."""

from __future__ import annotations

import multipart
import pytest

from handler.aws.form_data import MAX_FIELD_BYTES, MAX_HEADER_LINE, MAX_HEADERS, MAX_PARTS, parse_form
from handler.aws.request import IMAGE_FIELDS, _from_multipart
from handler.core.errors import InvalidParameter, RequestTooLarge
from tests.counting import count_calls
from tests.forms import multipart_body

BOUNDARY = "b0undary"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
IMAGE = b"\xff\xd8\xff not parsed as an image here \r\n--not-the-boundary\r\n"


def _part(head: str, payload: bytes = b"") -> bytes:
    return f"--{BOUNDARY}\r\n{head}\r\n\r\n".encode() + payload + b"\r\n"


def _form(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def empty_parts(count: int, boundary: str = "b") -> bytes:
    """The issue's body: `count` parts with no name and nothing in them (9 bytes each)."""
    return f"--{boundary}\r\n\r\n\r\n".encode() * count + f"--{boundary}--\r\n".encode()


@pytest.fixture
def parts_parsed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the parts whose headers the parser finished (its documented per-part hook)."""
    return count_calls(monkeypatch, multipart.PushMultipartParser, "_create_segment")


def test_the_issues_body_of_250k_empty_parts_is_refused_at_its_first_part(parts_parsed: list[int]) -> None:
    body = empty_parts(250_000)
    assert 2_000_000 < len(body) < 2_400_000  # the 2.25 MB of the report

    with pytest.raises(InvalidParameter, match="Content-Disposition") as refused:
        parse_form("multipart/form-data; boundary=b", body, IMAGE_FIELDS)

    # a part without the header that names its field is no form field: refused as it ends
    assert refused.value.status == 400 and refused.value.parameter == "body"
    assert parts_parsed == [1]


def test_250k_named_empty_parts_are_refused_at_the_first_part_past_the_bound(parts_parsed: list[int]) -> None:
    part = _part('Content-Disposition: form-data; name="x"')
    body = part * 250_000 + f"--{BOUNDARY}--\r\n".encode()

    with pytest.raises(InvalidParameter, match=f"at most {MAX_PARTS} parts") as refused:
        parse_form(CONTENT_TYPE, body, IMAGE_FIELDS)

    assert refused.value.status == 400 and refused.value.parameter == "body"
    assert len(parts_parsed) == MAX_PARTS  # the next part is refused as it begins


def test_a_form_at_the_part_bound_is_read(parts_parsed: list[int]) -> None:
    fields = {f"f{index}": "x" for index in range(MAX_PARTS - 1)}
    body = multipart_body({**fields, "image": IMAGE}, BOUNDARY)

    form = parse_form(CONTENT_TYPE, body, IMAGE_FIELDS)

    assert form.large == {"image": [IMAGE]} and form.text == fields
    assert len(parts_parsed) == MAX_PARTS


def test_a_header_line_past_its_bound_is_refused() -> None:
    long_name = "n" * MAX_HEADER_LINE
    with pytest.raises(InvalidParameter, match="limits"):
        parse_form(CONTENT_TYPE, _form(_part(f'Content-Disposition: form-data; name="{long_name}"')), IMAGE_FIELDS)


def test_a_header_line_that_never_ends_is_refused_without_reading_the_rest() -> None:
    # No CRLF at all after the boundary: the parser stops once the line passes its bound
    body = f"--{BOUNDARY}\r\nX-Pad: ".encode() + b"a" * (4 * 1024 * 1024)
    with pytest.raises(InvalidParameter, match="limits"):
        parse_form(CONTENT_TYPE, body, IMAGE_FIELDS)


def test_too_many_header_lines_in_a_part_are_refused() -> None:
    head = 'Content-Disposition: form-data; name="format"' + "".join(
        f"\r\nX-{index}: y" for index in range(MAX_HEADERS)
    )
    with pytest.raises(InvalidParameter, match="limits"):
        parse_form(CONTENT_TYPE, _form(_part(head, b"png")), IMAGE_FIELDS)


def test_a_text_field_past_its_bound_is_413_and_an_image_field_is_not_bounded() -> None:
    large = b"a" * (MAX_FIELD_BYTES + 1)
    with pytest.raises(RequestTooLarge, match="'format'") as refused:
        parse_form(CONTENT_TYPE, multipart_body({"format": large.decode()}, BOUNDARY), IMAGE_FIELDS)
    assert refused.value.status == 413

    image = b"\x00" * (4 * 1024 * 1024)
    assert parse_form(CONTENT_TYPE, multipart_body({"image": image}, BOUNDARY), IMAGE_FIELDS).large == {
        "image": [image]
    }
    at_bound = "a" * MAX_FIELD_BYTES
    assert parse_form(CONTENT_TYPE, multipart_body({"format": at_bound}, BOUNDARY), IMAGE_FIELDS).text == {
        "format": at_bound
    }


@pytest.mark.parametrize(
    "body",
    [
        b'--b0undary\r\nContent-Disposition: form-data; name="a"\r\n\r\nx',  # no closing boundary
        b"no boundary anywhere",
        _form(_part('Content-Disposition: attachment; name="a"', b"x")),  # not form-data
        _form(_part("Content-Disposition form-data", b"x")),  # no colon
        _form(b'--b0undary\r\nContent-Disposition: form-data; name="\xff\xfe"\r\n\r\nx\r\n'),  # not UTF-8
    ],
    ids=["unterminated", "no-boundary", "not-form-data", "header-without-colon", "undecodable-header"],
)
def test_malformed_forms_are_400_naming_the_body(body: bytes) -> None:
    with pytest.raises(InvalidParameter) as refused:
        parse_form(CONTENT_TYPE, body, IMAGE_FIELDS)
    assert refused.value.parameter == "body"


@pytest.mark.parametrize(
    "content_type", ["multipart/form-data", "multipart/form-data; boundary=", "multipart/form-data; charset=x"]
)
def test_a_content_type_without_a_boundary_is_400(content_type: str) -> None:
    with pytest.raises(InvalidParameter, match="boundary"):
        parse_form(content_type, multipart_body({"image": IMAGE}, BOUNDARY), IMAGE_FIELDS)


def test_the_request_takes_one_image_and_text_fields_as_browsers_send_them() -> None:
    body = _form(
        _part('Content-Disposition: form-data; name="format"', b"webp"),
        _part('Content-Disposition: form-data; name="image"; filename="a b.jpg"\r\nContent-Type: image/jpeg', IMAGE),
        _part('Content-Disposition: form-data; name="note"', "caf\u00e9 \xff".encode("latin-1")),
    )

    image, fields = _from_multipart(f'multipart/form-data; boundary="{BOUNDARY}"', body)

    assert image == IMAGE
    assert fields == {"format": "webp", "note": "caf\ufffd \ufffd"}  # undecodable bytes replaced


def test_two_images_are_refused_naming_the_second_field() -> None:
    body = _form(
        _part('Content-Disposition: form-data; name="image"; filename="a.jpg"', IMAGE),
        _part('Content-Disposition: form-data; name="file"; filename="b.jpg"', IMAGE),
    )

    with pytest.raises(InvalidParameter) as refused:
        _from_multipart(CONTENT_TYPE, body)
    assert refused.value.parameter == "file"


def test_a_large_text_field_a_route_names_is_read_as_text() -> None:
    # remove.bg's clients may send the image base64-encoded in the form field image_file_b64
    b64 = "QUJD" * (MAX_FIELD_BYTES // 2)
    image, fields = _from_multipart(
        CONTENT_TYPE, multipart_body({"image_file_b64": b64}, BOUNDARY), (*IMAGE_FIELDS, "image_file_b64")
    )

    assert image is None and fields == {"image_file_b64": b64}
