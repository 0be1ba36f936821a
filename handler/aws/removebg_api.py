"""`POST /v1.0/removebg` in the API function: remove.bg's request in, remove.bg's response out.

The glue between an API Gateway event and the pipeline for this route only: the request is read
by handler.aws.removebg_request, mapped by handler.aws.removebg, processed by `render.process` like any
other, and every error of ours is rendered in remove.bg's `{"errors": [...]}` shape. The parts
that are the API's own (handing a too-large result over through S3, the response size limit)
are passed in by handler.api.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import ApiGatewayResolver

from handler.aws import image_url, runtime
from handler.aws.headers import SECURITY_HEADERS
from handler.aws.observability import count_error, logger, record_processed
from handler.aws.removebg import CONTENT_TYPES, UnknownForeground, error_document, parse, zip_of
from handler.aws.removebg_request import parse_event
from handler.core.errors import BackgroundRemovalError, MethodNotAllowed
from handler.core.image.formats import OutputKind
from handler.core.render import Rendered, Result, process

StoreLarge = Callable[[Rendered, Result, ApiGatewayResolver, runtime.Runtime], Response[Any]]


def respond(
    app: ApiGatewayResolver, current: runtime.Runtime, store_large: StoreLarge, fits: Callable[[str | bytes], bool]
) -> Response[Any]:
    """The route's answer; `fits(body)`: whether that body fits a Lambda response as it travels."""
    try:
        return _respond(app, current, store_large, fits)
    except BackgroundRemovalError as error:
        return error_response(error)
    except Exception:  # noqa: BLE001 - any bug becomes remove.bg's 500 shape; the traceback goes to the logs
        # A genuine bug: the details go to the logs only.
        logger.exception("unexpected error")
        return error_response(BackgroundRemovalError("an unexpected error occurred"))


def error_response(error: BackgroundRemovalError) -> Response[Any]:
    count_error(error.code)
    logger.info("request refused", extra={"error_code": error.code, "status": error.status})
    headers = dict(SECURITY_HEADERS)
    if isinstance(error, MethodNotAllowed):
        headers["Allow"] = ", ".join(error.allowed)
    body = json.dumps(error_document(error), separators=(",", ":"))
    return Response(error.status, content_type="application/json", body=body, headers=headers)


def _respond(
    app: ApiGatewayResolver, current: runtime.Runtime, store_large: StoreLarge, fits: Callable[[str | bytes], bool]
) -> Response[Any]:
    source = parse_event(app.current_event)
    request = parse(source.fields)
    limits = current.settings.limits
    data = source.data if source.url is None else image_url.fetch(source.url, limits.max_bytes)
    assert data is not None  # parse_event guarantees a source
    kinds: list[OutputKind] = ["cutout", "mask"] if request.output == "zip" else [request.kind]
    result = process(data, kinds, request.options, current.model, limits)
    record_processed(result.megapixels, result.inference_ms, result.total_ms)
    if result.box is None:
        raise UnknownForeground()
    rendered = _final(request.output, request.kind, result)
    headers = {**SECURITY_HEADERS, **_headers(rendered, result)}
    if source.wants_json:
        body = json.dumps({"data": {"result_b64": base64.b64encode(rendered.data).decode(), **_foreground(result)}})
        if fits(body):
            return Response(200, content_type="application/json", body=body, headers=headers)
    elif fits(rendered.data):
        return Response(200, content_type=rendered.content_type, body=rendered.data, headers=headers)
    return store_large(rendered, result, app, current)


def _final(output: str, kind: OutputKind, result: Result) -> Rendered:
    if output != "zip":
        return result.outputs[kind]
    cutout, mask = result.outputs["cutout"], result.outputs["mask"]
    data = zip_of(cutout.data, mask.data)
    # The cutout, in remove.bg's compact spelling (a colour JPEG beside an alpha PNG).
    return Rendered("cutout", data, CONTENT_TYPES["zip"], "zip", cutout.width, cutout.height)


def _headers(rendered: Rendered, result: Result) -> dict[str, str]:
    """remove.bg's result headers: the result's size and the subject's box (in input pixels)."""
    box = result.box
    assert box is not None
    return {
        "X-Width": str(rendered.width),
        "X-Height": str(rendered.height),
        "X-Foreground-Left": str(box.left),
        "X-Foreground-Top": str(box.top),
        "X-Foreground-Width": str(box.width),
        "X-Foreground-Height": str(box.height),
    }


def _foreground(result: Result) -> dict[str, Any]:
    box = result.box
    assert box is not None
    return {
        "foreground_top": box.top,
        "foreground_left": box.left,
        "foreground_width": box.width,
        "foreground_height": box.height,
    }
