"""remove.bg's errors: our errors in its statuses, codes and shape, and the ones only its route has.

Statuses, as remove.bg's reference lists them: 400 for every problem with the request or its image
(with remove.bg's error code where it has one: `missing_source`, `invalid_size`,
`failed_to_read_image`, `file_too_large`, ...), 402 when an API key's quota is spent and 403 for
authentication (both API Gateway's, template.yaml), 429 for rate limits (API Gateway's), 5xx for
failures of ours. Paths and methods keep 404/405.
"""

from __future__ import annotations

from dataclasses import dataclass

from handler.core.errors import (
    BackgroundRemovalError,
    InvalidParameter,
    MethodNotAllowed,
    OutputBeyondFormat,
    RouteNotFound,
    SourceForbidden,
    SourceNotFound,
)


class UnknownForeground(BackgroundRemovalError):
    """remove.bg's answer when it finds no subject: an all-transparent cutout is no result."""

    code = "unknown_foreground"
    status = 400

    def __init__(self) -> None:
        super().__init__("no foreground subject was found in the image")


class MultipleSources(InvalidParameter):
    """More than one of image_file, image_file_b64 and image_url."""

    def __init__(self, given: list[str]) -> None:
        super().__init__(given[1], f"give one image source, not {' and '.join(given)}")


class ResultTooLarge(BackgroundRemovalError):
    """A result that does not fit a Lambda response: remove.bg's clients take no link instead."""

    code = "result_too_large"
    status = 400


@dataclass(frozen=True)
class RemoveBgError:
    status: int
    code: str
    title: str


# remove.bg's code and title for our error codes, where its reference lists the same failure.
_CODES: dict[str, tuple[str, str]] = {
    "missing_image": ("missing_source", "No image given"),
    "invalid_image": ("failed_to_read_image", "There was an error reading the image"),
    "unsupported_media_type": ("invalid_file_type", "Invalid file type"),
    "image_too_large": ("file_too_large", "File too large"),
    "request_too_large": ("file_too_large", "File too large"),
    "too_many_pixels": ("resolution_too_high", "Image resolution too high"),
    "too_many_frames": ("too_many_frames", "Too many frames"),
    "result_too_large": ("result_too_large", "Result too large for one response"),
    "unknown_foreground": ("unknown_foreground", "Could not identify foreground in image"),
    "length_required": ("length_required", "Content-Length required"),
    "not_acceptable": ("not_acceptable", "Not acceptable"),
    "method_not_allowed": ("method_not_allowed", "Method not allowed"),
    "not_found": ("not_found", "Not found"),
    "storage_unavailable": ("storage_unavailable", "Service temporarily unavailable"),
    "model_unavailable": ("model_unavailable", "Service temporarily unavailable"),
    "internal_error": ("internal_error", "Internal error"),
}
# remove.bg's invalid_<parameter> codes, for the parameters its reference lists them for.
_PARAMETER_CODES: dict[str, tuple[str, str]] = {
    name: (f"invalid_{name}", f"Invalid {name} parameter given")
    for name in (
        "size",
        "format",
        "channels",
        "bg_color",
        "crop_margin",
        "roi",
        "scale",
        "position",
        "semitransparency",
    )
}
_PARAMETER_CODES["bg_image_url"] = ("invalid_bg_image_url", "Invalid bg_image_url parameter given")
_DOWNLOAD = ("failed_image_download", "Failed to download image from given image_url")


def removebg_error(error: BackgroundRemovalError) -> RemoveBgError:
    """Our error as remove.bg's: its status (every problem with the request or its image is 400;
    404/405 for paths and methods; ours for our own failures) and its code where it has one."""
    status = error.status
    if 400 <= status < 500 and not isinstance(error, (RouteNotFound, MethodNotAllowed)):
        status = 400
    if isinstance(error, MultipleSources):
        return RemoveBgError(status, "multiple_sources", "Multiple image sources given")
    if isinstance(error, InvalidParameter):
        if error.parameter == "image_url":
            return RemoveBgError(status, *_DOWNLOAD)
        code, title = _PARAMETER_CODES.get(error.parameter, ("invalid_parameter", "Invalid parameter"))
        return RemoveBgError(status, code, title)
    if isinstance(error, (SourceForbidden, SourceNotFound)):
        # The only source this route reads that is not in the request itself is image_url.
        return RemoveBgError(status, *_DOWNLOAD)
    code, title = _CODES.get(error.code, (error.code, error.code.replace("_", " ").capitalize()))
    return RemoveBgError(status, code, title)


def error_document(error: BackgroundRemovalError) -> dict[str, list[dict[str, str]]]:
    """Our error in remove.bg's shape: `{"errors": [{"title", "code", "detail"}]}`."""
    mapped = removebg_error(error)
    detail = error.message
    if isinstance(error, OutputBeyondFormat):
        # The project's own advice names max_size, which is not a remove.bg field.
        detail = (
            f"{error.format_name} images are at most {error.limit} pixels a side: ask for a smaller size "
            "(size=hd, medium or preview) or format=png"
        )
    return {"errors": [{"title": mapped.title, "code": mapped.code, "detail": detail}]}
