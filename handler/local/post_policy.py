"""S3's part in a browser-form upload (POST Object), played in front of the embedded S3.

moto stores a form POST without looking at its policy, so on its own the local run would accept
any upload a presigned POST did not allow: too large, another Content-Type, another key. This
WSGI gate checks each form POST the way S3 does before moto sees it (Amazon S3 API Reference,
"Browser-Based Uploads Using POST", "Creating a POST Policy"):

- the policy's SigV4 signature, from the credential's access key and the local secret;
- its expiration;
- every condition (exact match, `eq`, `starts-with`, `content-length-range` against the file);
- every form field but `policy`, `x-amz-signature`, `file` and `x-ignore-*` named by a condition.

A refusal is S3's answer: 403 AccessDenied for a condition or expiry, 403 SignatureDoesNotMatch,
400 EntityTooLarge / EntityTooSmall for the size range. moto answers a form POST without CORS
headers; S3 adds them when the bucket's CORS rules allow the page's origin, and so does the gate,
to refusals too (so a page can read why).
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
from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import escape

from werkzeug.formparser import parse_form_data

Wsgi = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
_EXEMPT_FIELDS = {"policy", "x-amz-signature", "file"}


class Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


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


class PostPolicyGate:
    """WSGI middleware: form POSTs are checked (check_form) before the wrapped S3 sees them."""

    def __init__(self, app: Wsgi, secrets: Mapping[str, str]) -> None:
        self._app = app
        self._secrets = dict(secrets)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        content_type = environ.get("CONTENT_TYPE", "")
        if environ.get("REQUEST_METHOD") != "POST" or not content_type.startswith("multipart/form-data"):
            return self._app(environ, start_response)
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        parsed = dict(environ, **{"wsgi.input": io.BytesIO(body)})
        _, form, files = parse_form_data(parsed)
        fields = {name.lower(): value for name, value in form.items()}
        upload = files.get("file")
        size = len(upload.read()) if upload is not None else 0
        bucket = environ.get("PATH_INFO", "/").strip("/").split("/", 1)[0]
        origin = environ.get("HTTP_ORIGIN")
        allowed = origin is not None and _bucket_allows(bucket, "POST", origin)
        cors = [("Access-Control-Allow-Origin", origin)] if allowed and origin is not None else []
        try:
            if upload is None:
                raise Refused(400, "InvalidArgument", "POST requires exactly one file upload per request.")
            check_form(bucket, fields, size, self._secrets, datetime.now(UTC))
        except Refused as refused:
            document = (
                '<?xml version="1.0" encoding="UTF-8"?>\n'
                f"<Error><Code>{escape(refused.code)}</Code><Message>{escape(refused.message)}</Message></Error>"
            ).encode()
            start_response(
                f"{refused.status} {'Forbidden' if refused.status == 403 else 'Bad Request'}",
                [("Content-Type", "application/xml"), ("Content-Length", str(len(document))), *cors],
            )
            return [document]
        environ["wsgi.input"] = io.BytesIO(body)
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
