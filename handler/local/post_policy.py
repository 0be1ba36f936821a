"""S3's part in a browser-form upload (POST Object), played in front of the embedded S3.

moto stores a form POST without looking at its policy, so on its own the local run would accept
any upload a presigned POST did not allow: too large, another Content-Type, another key. This
WSGI gate checks each form POST the way S3 does before moto sees it (Amazon S3 API Reference,
"Browser-Based Uploads Using POST", "Creating a POST Policy"):

- a POST to a bucket is a form upload only as `multipart/form-data` (the media type in any case,
  as MIME types are); anything else is S3's 412 PreconditionFailed ("Bucket POST must be of the
  enclosure-type multipart/form-data"), before moto sees it;
- the form is read as S3 reads it, part by part up to the `file` field: S3 ignores every field
  after the file ("make sure the file field is the last field in the form", POST Object), so
  they take no part in the checks and moto is handed the form without them;
- the policy's SigV4 signature, from the credential's access key and the local secret;
- its expiration;
- every condition (exact match, `eq`, `starts-with`, `content-length-range` against the file);
- every form field but `policy`, `x-amz-signature`, `file` and `x-ignore-*` named by a condition.

A refusal is S3's answer: 403 AccessDenied for a condition or expiry, 403 SignatureDoesNotMatch,
400 EntityTooLarge / EntityTooSmall for the size range, 400 MalformedPOSTRequest for a body that
is not a well-formed form. moto answers a form POST without CORS headers; S3 adds them when the
bucket's CORS rules allow the page's origin, and so does the gate, to refusals too (so a page can
read why). Requests of moto's other services (it serves them all on this port: the emulator's SQS
queues) and S3's other POSTs (`?delete`, multipart uploads) pass through.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
import json
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from xml.sax.saxutils import escape

from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import NEED_DATA, Data, Epilogue, Field, File, MultipartDecoder

Wsgi = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
FILE_FIELD = "file"
_EXEMPT_FIELDS = {"policy", "x-amz-signature", FILE_FIELD}
_FORM_TYPE = "multipart/form-data"


class Refused(Exception):
    def __init__(self, status: int, code: str, message: str, condition: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.condition = condition

    def document(self) -> bytes:
        condition = f"<Condition>{escape(self.condition)}</Condition>" if self.condition else ""
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{escape(self.code)}</Code><Message>{escape(self.message)}</Message>{condition}</Error>"
        ).encode()


@dataclass
class Part:
    """One part of a form as it was sent: its field name, its headers and its bytes."""

    name: str
    headers: list[tuple[str, str]]
    data: bytearray = field(default_factory=bytearray)


def read_form(body: bytes, content_type: str) -> list[Part]:
    """The parts of a bucket POST as S3 reads them: up to and including the `file` field; any part
    after it is ignored. Refused unless the body is a multipart/form-data form."""
    media_type, options = parse_options_header(content_type)
    if media_type.lower() != _FORM_TYPE:
        raise Refused(
            412,
            "PreconditionFailed",
            "At least one of the pre-conditions you specified did not hold",
            condition="Bucket POST must be of the enclosure-type multipart/form-data",
        )
    malformed = Refused(
        400, "MalformedPOSTRequest", "The body of your POST request is not well-formed multipart/form-data."
    )
    boundary = options.get("boundary")
    if not boundary:
        raise malformed
    decoder = MultipartDecoder(boundary.encode("latin-1"))
    decoder.receive_data(body)
    decoder.receive_data(None)
    parts: list[Part] = []
    try:
        while not isinstance(event := decoder.next_event(), Epilogue):
            if event is NEED_DATA:
                raise malformed  # the body ended inside the form
            if isinstance(event, Field | File):
                if parts and parts[-1].name.lower() == FILE_FIELD:
                    break  # the file is complete: S3 reads no further
                parts.append(Part(event.name, list(event.headers.items())))
            elif isinstance(event, Data):
                parts[-1].data += event.data
    except ValueError as error:
        raise malformed from error
    return parts


def encode_form(parts: Iterable[Part], boundary: str) -> bytes:
    """`parts` as a multipart/form-data body again, with their own headers."""
    delimiter = f"--{boundary}".encode("latin-1")
    chunks = []
    for part in parts:
        headers = "".join(f"{name}: {value}\r\n" for name, value in part.headers).encode()
        chunks.append(delimiter + b"\r\n" + headers + b"\r\n" + bytes(part.data) + b"\r\n")
    return b"".join(chunks) + delimiter + b"--\r\n"


def check_form(
    bucket: str, fields: Mapping[str, str], file_size: int, secrets: Mapping[str, str], now: datetime
) -> None:
    """Raise Refused unless S3 would store this form upload; `fields` by lower-cased name."""
    policy_b64 = fields.get("policy")
    if policy_b64 is None:
        raise Refused(403, "AccessDenied", "Bucket POST must contain a field named 'policy'")
    _check_signature(policy_b64, fields, secrets)
    try:
        policy = json.loads(base64.b64decode(policy_b64, validate=True))
        expiration = datetime.fromisoformat(str(policy["expiration"]).replace("Z", "+00:00"))
        conditions = list(policy["conditions"])
    except (ValueError, KeyError, TypeError, binascii.Error) as error:
        raise Refused(400, "InvalidPolicyDocument", f"Invalid Policy: {error}") from error
    if expiration <= now:
        raise Refused(403, "AccessDenied", "Invalid according to Policy: Policy expired.")
    values = {**fields, "bucket": bucket}
    covered: set[str] = set()
    for condition in conditions:
        covered |= _check_condition(condition, values, file_size)
    for name in fields:
        if name not in _EXEMPT_FIELDS and not name.startswith("x-ignore-") and name not in covered:
            raise Refused(403, "AccessDenied", f"Invalid according to Policy: Extra input fields: {name}")


def _check_signature(policy_b64: str, fields: Mapping[str, str], secrets: Mapping[str, str]) -> None:
    if fields.get("x-amz-algorithm") != "AWS4-HMAC-SHA256":
        raise Refused(400, "InvalidRequest", "only AWS4-HMAC-SHA256 form uploads are served here")
    parts = fields.get("x-amz-credential", "").split("/")
    if len(parts) != 5 or parts[3:] != ["s3", "aws4_request"]:
        raise Refused(400, "AuthorizationQueryParametersError", "malformed x-amz-credential")
    access_key, date, region = parts[0], parts[1], parts[2]
    secret = secrets.get(access_key)
    if secret is None:
        raise Refused(403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.")
    key = f"AWS4{secret}".encode()
    for part in (date, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    expected = hmac.new(key, policy_b64.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, fields.get("x-amz-signature", "")):
        raise Refused(403, "SignatureDoesNotMatch", "The request signature we calculated does not match")


def _check_condition(condition: Any, values: Mapping[str, str], file_size: int) -> set[str]:
    """Check one condition; return the field names it covers."""
    if isinstance(condition, dict):
        covered: set[str] = set()
        for name, expected in condition.items():
            _require(values.get(name.lower()) == expected, ["eq", f"${name}", expected])
            covered.add(name.lower())
        return covered
    if isinstance(condition, list) and condition and condition[0] == "content-length-range":
        low, high = int(condition[1]), int(condition[2])
        if file_size > high:
            raise Refused(400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size")
        if file_size < low:
            raise Refused(400, "EntityTooSmall", "Your proposed upload is smaller than the minimum allowed size")
        return set()
    if isinstance(condition, list) and len(condition) == 3 and condition[0] in ("eq", "starts-with"):
        operator, reference, expected = condition
        name = str(reference).removeprefix("$").lower()
        value = values.get(name)
        ok = value == expected if operator == "eq" else value is not None and value.startswith(str(expected))
        _require(ok, condition)
        return {name}
    raise Refused(400, "InvalidPolicyDocument", f"Invalid Policy: unknown condition {condition!r}")


def _require(ok: bool, condition: Any) -> None:
    if not ok:
        raise Refused(
            403, "AccessDenied", f"Invalid according to Policy: Policy Condition failed: {json.dumps(condition)}"
        )


def bucket_post(environ: Mapping[str, Any]) -> str | None:
    """The bucket of an S3 POST Object request (a POST to a bucket itself, no subresource), else None.

    moto serves every service on this port: a request signed for another one, or carrying a JSON
    protocol target, is not S3's; a POST to a key or with a query (`?delete`, `?uploads`) is
    another S3 operation.
    """
    if environ.get("REQUEST_METHOD") != "POST" or environ.get("QUERY_STRING") or environ.get("HTTP_X_AMZ_TARGET"):
        return None
    authorization = environ.get("HTTP_AUTHORIZATION", "")
    if authorization and "/s3/aws4_request" not in authorization:
        return None
    bucket, _, rest = str(environ.get("PATH_INFO", "/")).strip("/").partition("/")
    return bucket if bucket and not rest else None


class PostPolicyGate:
    """WSGI middleware: form POSTs are checked (check_form) before the wrapped S3 sees them."""

    def __init__(self, app: Wsgi, secrets: Mapping[str, str]) -> None:
        self._app = app
        self._secrets = dict(secrets)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        bucket = bucket_post(environ)
        if bucket is None:
            return self._app(environ, start_response)
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        content_type = str(environ.get("CONTENT_TYPE", ""))
        origin = environ.get("HTTP_ORIGIN")
        allowed = origin is not None and _bucket_allows(bucket, "POST", origin)
        cors = [("Access-Control-Allow-Origin", origin)] if allowed and origin is not None else []
        try:
            parts = read_form(body, content_type)
            fields: dict[str, str] = {}
            for part in parts:
                fields.setdefault(part.name.lower(), part.data.decode("utf-8", "replace"))
            uploads = [part for part in parts if part.name.lower() == FILE_FIELD]
            if not uploads:
                raise Refused(400, "InvalidArgument", "POST requires exactly one file upload per request.")
            check_form(bucket, fields, len(uploads[0].data), self._secrets, datetime.now(UTC))
        except Refused as refused:
            document = refused.document()
            start_response(
                f"{refused.status} {HTTPStatus(refused.status).phrase}",
                [("Content-Type", "application/xml"), ("Content-Length", str(len(document))), *cors],
            )
            return [document]
        # moto gets the form as S3 read it: what came after the file is not part of the upload.
        boundary = parse_options_header(content_type)[1]["boundary"]
        body = encode_form(parts, boundary)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ["CONTENT_TYPE"] = f"{_FORM_TYPE}; boundary={boundary}"
        if not cors:
            return self._app(environ, start_response)

        def with_cors(status: str, headers: list[tuple[str, str]], *args: Any) -> Any:
            # moto leaves CORS off a form POST's answer; S3 sends it when the bucket's rules allow.
            return start_response(status, [*headers, *cors], *args)

        return self._app(environ, with_cors)


def _bucket_allows(bucket: str, method: str, origin: str) -> bool:
    """Whether the bucket's CORS rules (moto's record of them, in this process) let `origin` use `method`."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.exceptions import MissingBucket
    from moto.s3.models import s3_backends
    from moto.s3.utils import cors_matches_origin

    try:
        rules = s3_backends[DEFAULT_ACCOUNT_ID]["aws"].get_bucket(bucket).cors
    except MissingBucket:
        return False
    return any(method in rule.allowed_methods and cors_matches_origin(origin, rule.allowed_origins) for rule in rules)


class LocalS3Server:
    """moto's S3 in server mode behind the POST policy gate, on its own thread, with CORS from the
    buckets' rules only (as S3)."""

    def __init__(self, host: str, port: int, secrets: Mapping[str, str]) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        def backend(service: Any) -> Any:
            created = create_backend_app(service)
            # moto's server puts permissive CORS (flask-cors) on every answer, so any page could
            # upload whatever the buckets' CORS rules say. S3 answers from the bucket's rules alone:
            # without them a page's preflight fails, here as when deployed.
            for functions in created.after_request_funcs.values():
                functions[:] = [function for function in functions if function.__name__ != "cors_after_request"]
            return created

        app = PostPolicyGate(DomainDispatcherApplication(backend), secrets)
        self._server = make_server(host, port, app, threaded=True, request_handler=MotoRequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-s3", daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://{self._server.host}:{self._server.port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(10)
        self._server.server_close()
