"""The API entry point: POST /remove (cutout), POST /mask, remove.bg's POST /v1.0/removebg and
GET /v1.0/account (handler/aws/removebg_api.py), and the upload flow for large photos and slow
models: POST /uploads (handler/aws/uploads.py) and GET /results/{id} (handler/aws/results.py). For
API Gateway HTTP API (v2), REST API (v1) and Function URL events.

Thin by design: parse the request, call `render.process`, shape the response. Errors become JSON
`{"error": {"code", "message"}}` with the status their class declares (handler.core.errors);
remove.bg's routes answer in remove.bg's shape and statuses instead (handler/aws/removebg.py).
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Sequence
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.api_gateway import ApiGatewayResolver
from aws_lambda_powertools.utilities.typing import LambdaContext

from handler.aws import removebg, removebg_api, results, runtime, uploads
from handler.aws.headers import SECURITY_HEADERS
from handler.aws.observability import LOG_EVENT, count_error, logger, metrics, record_processed, tracer
from handler.aws.request import ImageRequest, parse_request
from handler.core.errors import (
    BackgroundRemovalError,
    MethodNotAllowed,
    NotAcceptable,
    OutputTooLarge,
    RouteNotFound,
    SourceForbidden,
)
from handler.core.image.formats import OutputKind
from handler.core.image.options import parse_options
from handler.core.render import Rendered, Result, process

# Lambda's synchronous response limit is 6 MB for the whole JSON envelope; the image travels in
# base64 (4/3 of its size). Headers and the envelope stay far below the reserve kept here.
LAMBDA_RESPONSE_LIMIT = 6 * 1024 * 1024
ENVELOPE_RESERVE = 16 * 1024
API_RESULTS_PREFIX = "api/"
# Every route and the methods it takes: a known path with another method is 405, not 404.
ROUTES: dict[str, tuple[str, ...]] = {
    "/remove": ("POST",),
    "/mask": ("POST",),
    removebg.PATH: ("POST",),
    removebg.ACCOUNT_PATH: ("GET",),
    "/uploads": ("POST",),
}
RESULTS_ROUTE = f"{uploads.RESULTS_PATH}<result_id>"

# Load the model during the init phase, once per execution environment.
runtime.current()


def _error_response(error: BackgroundRemovalError) -> Response[Any]:
    count_error(error.code)
    logger.info("request refused", extra={"error_code": error.code, "status": error.status})
    headers = {"Allow": ", ".join(error.allowed)} if isinstance(error, MethodNotAllowed) else None
    return _json(error.status, error.document(), headers)


def _unexpected_error(error: Exception) -> Response[Any]:
    # A genuine bug: the details go to the logs only, never into the response body.
    logger.exception("unexpected error")
    count_error("internal_error")
    return _json(500, {"error": {"code": "internal_error", "message": "an unexpected error occurred"}})


def _json(status: int, document: dict[str, Any], headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(
        status_code=status,
        content_type="application/json",
        body=json.dumps(document, separators=(",", ":")),
        headers={**SECURITY_HEADERS, **(headers or {})},
    )


def _answer(answer: uploads.JsonAnswer) -> Response[Any]:
    return _json(answer.status, answer.document, answer.headers)


def _respond(app: ApiGatewayResolver, kind: OutputKind) -> Response[Any]:
    current = runtime.current()
    request = parse_request(app.current_event)
    options = parse_options(request.options, kind)
    kinds = options.outputs or (kind,)
    if len(kinds) > 1 and not request.wants_json:
        # Refused before any work: several images travel only as fields of one JSON document.
        raise NotAcceptable(f"outputs={','.join(kinds)} answers in JSON only; send Accept: application/json")
    data = _image_bytes(request, current)
    result = process(data, kinds, options, current.model, current.settings.limits)
    record_processed(result.megapixels, result.inference_ms, result.total_ms)
    rendered = result.outputs[kind]
    extras = [result.outputs[other] for other in kinds if other != kind]
    headers = {**SECURITY_HEADERS, **_result_headers(result, rendered)}
    if request.wants_json:
        # The route's own output is `image`, as without `outputs`; each other one goes by its kind.
        images: dict[str, Rendered] = {"image": rendered, **{extra.kind: extra for extra in extras}}
        encoded = {field: base64.b64encode(image.data).decode() for field, image in images.items()}
        body = json.dumps({**encoded, **_result_fields(result, rendered)})
        if _fits_inline(body):
            return Response(200, content_type="application/json", body=body, headers=headers)
    elif _fits_inline(rendered.data):
        return Response(200, content_type=rendered.content_type, body=rendered.data, headers=headers)
    return _hand_over_stored(rendered, result, app, current, extras, links_as_json=request.wants_json)


def _image_bytes(request: ImageRequest, current: runtime.Runtime) -> bytes:
    if request.source is None:
        assert request.data is not None  # parse_request guarantees one of the two
        return request.data
    source = request.source
    if not current.settings.function.may_read_source(source.bucket, source.key):
        # Before any S3 call: a key outside the allowed locations is refused whether or not it exists.
        raise SourceForbidden(
            f"s3://{source.bucket}/{source.key} is not in a location this service reads `source` from "
            "(SOURCE_BUCKETS, SOURCE_PREFIX)"
        )
    return current.storage.read(source.bucket, source.key, max_bytes=current.settings.limits.max_bytes).data


def _hand_over_stored(
    rendered: Rendered,
    result: Result,
    app: ApiGatewayResolver,
    current: runtime.Runtime,
    extras: Sequence[Rendered] = (),
    *,
    links_as_json: bool = False,
) -> Response[Any]:
    """Too big to return inline: store it and answer with a presigned link (303), or 413 if we cannot.

    `extras` (the mask beside a cutout) are stored too; their links are `<kind>_url` in the body.
    A client that asked for JSON (`links_as_json`) gets the same document as a 200 instead: HTTP
    clients follow a 303 on their own (requests, fetch, curl -L) and would hand it the cutout's bytes
    where it expects JSON, and never the mask's link.
    """
    function = current.settings.function
    if function.output_bucket is None:
        images = (rendered, *extras)
        names = " and ".join(image.kind for image in images)
        size = sum(len(image.data) for image in images)
        verb, pronoun = ("are", "them") if extras else ("is", "it")
        raise OutputTooLarge(
            f"the {names} {verb} {size:,} bytes, more than a Lambda response can carry, "
            f"and no OUTPUT_BUCKET is configured to hand {pronoun} over; "
            "ask for format=webp or a smaller max_size"
        )
    request_id = getattr(app.lambda_context, "aws_request_id", None) or uuid.uuid4().hex
    now = time.time()
    expiry = function.link_expiry(now, now)  # never past the api/ objects' lifecycle expiry
    url, *extra_urls = (
        _store(image, f"{API_RESULTS_PREFIX}{request_id}", current, expiry) for image in (rendered, *extras)
    )
    links = {f"{extra.kind}_url": extra_url for extra, extra_url in zip(extras, extra_urls, strict=True)}
    expires_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + expiry))
    document = {"url": url, **links, "expires_in": expiry, "expires_at": expires_at, **_result_fields(result, rendered)}
    if links_as_json:
        return _json(200, document, headers=_result_headers(result, rendered))
    return _json(303, document, headers={"Location": url, **_result_headers(result, rendered)})


def _store(rendered: Rendered, folder: str, current: runtime.Runtime, expiry: int) -> str:
    """Write `rendered` to the output bucket under `folder` and return its presigned link."""
    function = current.settings.function
    assert function.output_bucket is not None  # checked by the caller, before any write
    key = f"{function.output_prefix}{folder}/{rendered.kind}.{rendered.extension}"
    current.storage.write(
        function.output_bucket,
        key,
        rendered.data,
        content_type=rendered.content_type,
        metadata={"model": current.model_name, "model-sha256": current.model_sha256},
    )
    return current.storage.presigned_get_url(function.output_bucket, key, expiry)


def _fits_inline(body: str | bytes) -> bool:
    """Whether `body` fits a Lambda response as it travels: text as is, binary in base64 (4/3)."""
    sent = len(body) if isinstance(body, str) else 4 * ((len(body) + 2) // 3)
    return sent + ENVELOPE_RESERVE <= LAMBDA_RESPONSE_LIMIT


def _result_headers(result: Result, rendered: Rendered) -> dict[str, str]:
    """remove.bg's header names, which existing clients already read."""
    headers = {"X-Width": str(rendered.width), "X-Height": str(rendered.height)}
    if result.box is not None:
        headers.update(
            {
                "X-Foreground-Left": str(result.box.left),
                "X-Foreground-Top": str(result.box.top),
                "X-Foreground-Width": str(result.box.width),
                "X-Foreground-Height": str(result.box.height),
            }
        )
    return headers


def _result_fields(result: Result, rendered: Rendered) -> dict[str, Any]:
    box = result.box
    return {
        "content_type": rendered.content_type,
        "width": rendered.width,
        "height": rendered.height,
        "input": {"width": result.input_size[0], "height": result.input_size[1]},
        "foreground": None
        if box is None
        else {"left": box.left, "top": box.top, "width": box.width, "height": box.height},
    }


def _build(resolver: type[ApiGatewayResolver]) -> ApiGatewayResolver:
    app = resolver()

    @app.post("/remove")
    def remove_route() -> Response[Any]:
        return _respond(app, "cutout")

    @app.post("/mask")
    def mask_route() -> Response[Any]:
        return _respond(app, "mask")

    @app.post(removebg.PATH)
    def removebg_route() -> Response[Any]:
        # remove.bg's vocabulary and error shape, for its existing clients (handler/aws/removebg.py).
        return removebg_api.respond(app, runtime.current(), _fits_inline)

    @app.get(removebg.ACCOUNT_PATH)
    def removebg_account_route() -> Response[Any]:
        return removebg_api.account(app, runtime.current())

    @app.post("/uploads")
    def uploads_route() -> Response[Any]:
        return _answer(uploads.create(app.current_event, runtime.current()))

    @app.get(RESULTS_ROUTE)
    def results_route(result_id: str) -> Response[Any]:
        return _answer(results.answer(result_id, app.current_event, runtime.current()))

    @app.not_found
    def not_found(_error: Exception) -> Response[Any]:
        path = app.current_event.path
        allowed = ROUTES.get(path) or (("GET",) if path.startswith(uploads.RESULTS_PATH) else None)
        if allowed is not None and app.current_event.http_method not in allowed:
            error = MethodNotAllowed(f"{path} takes {' or '.join(allowed)} only", allowed)
            removebg_path = path in (removebg.PATH, removebg.ACCOUNT_PATH)
            return removebg_api.error_response(error) if removebg_path else _error_response(error)
        return _error_response(
            RouteNotFound(
                f"use POST /remove, POST /mask, POST {removebg.PATH}, GET {removebg.ACCOUNT_PATH}, POST /uploads "
                "or GET /results/{id}"
            )
        )

    app.exception_handler(BackgroundRemovalError)(_error_response)
    app.exception_handler(Exception)(_unexpected_error)
    return app


# HTTP API and Function URLs share payload format 2.0; REST API events are format 1.0.
http_app = _build(APIGatewayHttpResolver)
rest_app = _build(APIGatewayRestResolver)


@logger.inject_lambda_context(log_event=LOG_EVENT, correlation_id_path="requestContext.requestId")
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    app = rest_app if "httpMethod" in event else http_app
    return app.resolve(event, context)
