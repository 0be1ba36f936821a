"""remove.bg's routes in the API function: `POST /v1.0/removebg` and `GET /v1.0/account`.

The glue between an API Gateway event and the pipeline for these routes only: the request is read
by handler.aws.removebg_request, mapped by handler.aws.removebg, processed by `render.process` like
any other, and every answer is remove.bg's: its headers on a result, its JSON shape for clients
that ask for JSON, its statuses and `{"errors": [...]}` shape for every refusal.

Credits, here: remove.bg meters credits per account; this service meters nothing itself. Behind
the REST API with API keys (RemoveBgApiKeys=ENABLED) each request counts once against its key's
usage-plan quota (daily in template.yaml), so a key's "credits" are the requests it has left in
the quota's period, and every request is charged 1 (a key in a plan without a quota has
unlimited credits). Without keys (the HTTP API, the local server) nothing is metered: every
request is charged 0 and the account reports `UNLIMITED_CREDITS`, a number (remove.bg's schema
has numbers only, and JSON has no infinity; clients subtract X-Credits-Charged from it).
"""

from __future__ import annotations

import base64
import calendar
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import ApiGatewayResolver

from handler.aws import image_url, runtime
from handler.aws.headers import SECURITY_HEADERS
from handler.aws.observability import count_error, logger, record_processed
from handler.aws.removebg import CONTENT_TYPES, RemoveBgRequest, parse, zip_of
from handler.aws.removebg_errors import ResultTooLarge, UnknownForeground, error_document, removebg_error
from handler.aws.removebg_request import parse_event
from handler.core.errors import BackgroundRemovalError, MethodNotAllowed
from handler.core.image.formats import OutputFormat, OutputKind
from handler.core.render import Rendered, Result, process

# What the account reports where nothing is metered: the largest 32-bit signed integer, which
# reads as "no limit" and survives clients that keep the balance in an int.
UNLIMITED_CREDITS = 2**31 - 1
DAY_SECONDS = 24 * 3600


class UsageUnavailable(BackgroundRemovalError):
    """The key's usage figures could not be read (API Gateway's GetUsage failed): no guess instead."""

    code = "usage_unavailable"
    status = 503
    permanent = False


@dataclass(frozen=True)
class Quota:
    """What an API key has left of its usage plan's quota, as remove.bg's rate-limit headers tell it."""

    limit: int
    remaining: int
    # When the quota's period starts again (API Gateway's periods start at midnight UTC).
    resets_at: int

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.resets_at),
        }


# A key whose usage plan has no quota: nothing to count down.
NO_QUOTA = "no quota"


def respond(app: ApiGatewayResolver, current: runtime.Runtime, fits: Callable[[str | bytes], bool]) -> Response[Any]:
    """POST /v1.0/removebg; `fits(body)`: whether that body fits a Lambda response as it travels."""
    return _answering(lambda: _respond(app, current, fits))


def account(app: ApiGatewayResolver, current: runtime.Runtime) -> Response[Any]:
    """GET /v1.0/account: remove.bg's credit balance, from the key's quota (or unlimited)."""
    return _answering(lambda: _account(app, current))


def _answering(answer: Callable[[], Response[Any]]) -> Response[Any]:
    try:
        return answer()
    except BackgroundRemovalError as error:
        return error_response(error)
    except Exception:  # noqa: BLE001 - any bug becomes remove.bg's 500 shape; the traceback goes to the logs
        logger.exception("unexpected error")
        return error_response(BackgroundRemovalError("an unexpected error occurred"))


def error_response(error: BackgroundRemovalError) -> Response[Any]:
    status = removebg_error(error).status
    count_error(error.code)
    logger.info("request refused", extra={"error_code": error.code, "status": status})
    headers = dict(SECURITY_HEADERS)
    if isinstance(error, MethodNotAllowed):
        headers["Allow"] = ", ".join(error.allowed)
    body = json.dumps(error_document(error), separators=(",", ":"))
    return Response(status, content_type="application/json", body=body, headers=headers)


def _respond(app: ApiGatewayResolver, current: runtime.Runtime, fits: Callable[[str | bytes], bool]) -> Response[Any]:
    source = parse_event(app.current_event)
    request = parse(source.fields)
    limits = current.settings.limits
    data = source.data if source.url is None else image_url.fetch(source.url, limits.max_bytes)
    assert data is not None  # parse_event guarantees a source
    kinds: list[OutputKind] = ["cutout", "mask"] if request.output == "zip" else [request.kind]
    # The zip's colour image is a JPEG: its size limit holds too, checked before any decoding.
    also: tuple[OutputFormat, ...] = ("jpeg",) if request.output == "zip" else ()
    result = process(data, kinds, request.options, current.model, limits, also_encoded_as=also)
    record_processed(result.megapixels, result.inference_ms, result.total_ms)
    if result.box is None:
        raise UnknownForeground()
    rendered = _final(request.output, request.kind, result)
    foreground = _foreground(request, result, rendered)
    key_id = _metered_key(app, current)
    headers = {
        **SECURITY_HEADERS,
        # One request of the key's quota where keys are metered; nothing otherwise.
        "X-Credits-Charged": "1" if key_id else "0",
        "X-Width": str(rendered.width),
        "X-Height": str(rendered.height),
        **{f"X-Foreground-{name.title()}": str(value) for name, value in foreground.items()},
    }
    if request.x_type is not None:
        headers["X-Type"] = request.x_type
    quota = _quota(key_id, current)
    if isinstance(quota, Quota):
        headers.update(quota.headers())
    if source.wants_json:
        fields = {f"foreground_{name}": value for name, value in foreground.items()}
        body: str | bytes = json.dumps({"data": {"result_b64": base64.b64encode(rendered.data).decode(), **fields}})
        content_type = "application/json"
    else:
        body, content_type = rendered.data, rendered.content_type
    if not fits(body):
        # No link instead, for JSON and image clients alike: remove.bg's clients read result_b64 or
        # the image bytes, and one that followed a redirect to the stored result would hand JSON
        # code the PNG, or lose the X-* headers it reads (docs/removebg.md, "Large results").
        raise ResultTooLarge(
            f"the result is {len(rendered.data):,} bytes, more than one response can carry (Lambda's 6 MB, "
            "with the image in base64); ask for a smaller size (size=preview, medium or hd), or send the "
            "photo through POST /uploads, whose results come back as links"
        )
    return Response(200, content_type=content_type, body=body, headers=headers)


def _final(output: str, kind: OutputKind, result: Result) -> Rendered:
    if output != "zip":
        return result.outputs[kind]
    cutout, mask = result.outputs["cutout"], result.outputs["mask"]
    data = zip_of(cutout.data, mask.data)
    # The cutout, in remove.bg's compact spelling (a colour JPEG beside an alpha PNG).
    return Rendered("cutout", data, CONTENT_TYPES["zip"], "zip", cutout.width, cutout.height)


def _foreground(request: RemoveBgRequest, result: Result, rendered: Rendered) -> dict[str, int]:
    """The subject's box in the result's own pixels (remove.bg's X-Foreground-*, which "in case the
    input image resolution is higher than the limit" only are in input pixels): moved by the crop
    and scaled as the result was, so it fits the image it comes with."""
    box = result.box
    assert box is not None
    subject = (box.left, box.top, box.width, box.height)
    options = request.options
    left, top, right, bottom = (
        options.margin.region(subject, result.input_size) if options.crop else (0, 0, *result.input_size)
    )
    scale_x, scale_y = rendered.width / (right - left), rendered.height / (bottom - top)
    x, y = round((box.left - left) * scale_x), round((box.top - top) * scale_y)
    return {
        "top": y,
        "left": x,
        "width": max(1, min(round(box.width * scale_x), rendered.width - x)),
        "height": max(1, min(round(box.height * scale_y), rendered.height - y)),
    }


def _metered_key(app: ApiGatewayResolver, current: runtime.Runtime) -> str | None:
    """The API key's id on a request through the REST API with keys (RemoveBgApiKeys=ENABLED sets
    REMOVEBG_API_KEYS): API Gateway accepts a key only in a usage plan, which counts every request."""
    identity = (app.current_event.raw_event.get("requestContext") or {}).get("identity") or {}
    key_id = identity.get("apiKeyId")
    return key_id if isinstance(key_id, str) and key_id and current.usage_plans is not None else None


def _quota(key_id: str | None, current: runtime.Runtime) -> Quota | str | None:
    """A metered key's quota now; NO_QUOTA for a plan without one; None when it cannot be told."""
    if key_id is None or current.usage_plans is None:
        return None
    quota = current.usage_plans.quota_of(key_id)
    if quota is None:
        return NO_QUOTA
    if quota is False or quota.period not in ("DAY", "MONTH"):
        return None  # a WEEK's first day is not documented: no figures rather than wrong ones
    now = time.gmtime()
    first = time.strftime("%Y-%m-01" if quota.period == "MONTH" else "%Y-%m-%d", now)
    used = current.usage_plans.used(quota.plan_id, key_id, first, time.strftime("%Y-%m-%d", now))
    if used is None:
        return None
    if quota.period == "DAY":
        resets_at = calendar.timegm((now.tm_year, now.tm_mon, now.tm_mday, 0, 0, 0)) + DAY_SECONDS
    else:
        year, month = (now.tm_year + 1, 1) if now.tm_mon == 12 else (now.tm_year, now.tm_mon + 1)
        resets_at = calendar.timegm((year, month, 1, 0, 0, 0))
    return Quota(limit=quota.limit, remaining=max(0, quota.limit - used), resets_at=resets_at)


def _account(app: ApiGatewayResolver, current: runtime.Runtime) -> Response[Any]:
    key_id = _metered_key(app, current)
    headers = dict(SECURITY_HEADERS)
    quota = _quota(key_id, current)
    if key_id is None or quota == NO_QUOTA:
        balance, free_calls = UNLIMITED_CREDITS, UNLIMITED_CREDITS
    elif isinstance(quota, Quota):
        balance, free_calls = quota.remaining, 0  # every request counts against the quota
        headers.update(quota.headers())
    else:
        raise UsageUnavailable("this API key's usage figures could not be read from API Gateway; try again")
    attributes = {
        "credits": {"total": balance, "subscription": balance, "payg": 0, "enterprise": 0},
        # "sizes" is always "all" in remove.bg's answer (deprecated there, kept for its clients).
        "api": {"free_calls": free_calls, "sizes": "all"},
    }
    body = json.dumps({"data": {"attributes": attributes}}, separators=(",", ":"))
    return Response(200, content_type="application/json", body=body, headers=headers)
