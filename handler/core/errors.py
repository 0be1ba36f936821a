"""The error hierarchy.

Every failure a caller can cause is a `BackgroundRemovalError` with a stable `code` (what
clients and metrics key on) and an HTTP `status`. This module is the one place where an error
kind is tied to a status: the API layer reads `status`, the jobs layer reads `permanent`.
"""

from __future__ import annotations


class BackgroundRemovalError(Exception):
    """Base class: a failure with a stable, client-facing code."""

    code: str = "internal_error"
    status: int = 500
    # A permanent error will fail the same way on every retry (bad input, bad settings), so the
    # jobs entry point records it and moves on instead of asking Lambda to retry.
    permanent: bool = True

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def document(self) -> dict[str, dict[str, str]]:
        """The JSON body every HTTP answer of ours carries for this error."""
        return {"error": {"code": self.code, "message": self.message}}


class InvalidParameter(BackgroundRemovalError):
    code = "invalid_parameter"
    status = 400

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter


class MissingImage(BackgroundRemovalError):
    code = "missing_image"
    status = 400


class InvalidImage(BackgroundRemovalError):
    """Bytes that are not a decodable image: truncated, corrupt, or not an image at all."""

    code = "invalid_image"
    status = 400


class RouteNotFound(BackgroundRemovalError):
    """A path the API does not have."""

    code = "not_found"
    status = 404


class MethodNotAllowed(BackgroundRemovalError):
    """A path the API has, with a method it does not take; the answer names the ones it takes."""

    code = "method_not_allowed"
    status = 405

    def __init__(self, message: str, allowed: tuple[str, ...]) -> None:
        super().__init__(message)
        self.allowed = allowed


class NotAcceptable(BackgroundRemovalError):
    """An answer the request's Accept header does not take (several images need JSON)."""

    code = "not_acceptable"
    status = 406


class RequestTooLarge(BackgroundRemovalError):
    """A request body over what the transport takes (API Gateway's 10 MB, Lambda's 6 MB payload)."""

    code = "request_too_large"
    status = 413


class LengthRequired(BackgroundRemovalError):
    """A body without a Content-Length (chunked), which API Gateway's Lambda proxy does not take."""

    code = "length_required"
    status = 411


class ResultNotFound(BackgroundRemovalError):
    """A result id that POST /uploads never gave out (or whose record has expired)."""

    code = "result_not_found"
    status = 404


class UploadNotReceived(BackgroundRemovalError):
    """A result id whose upload form expired with no photo uploaded through it."""

    code = "upload_not_received"
    status = 410


class UploadReplaced(BackgroundRemovalError):
    """A result whose photo was replaced, through its form, by another before it was processed: the
    result can no longer be made from the photo it was given, and is never made from another."""

    code = "upload_replaced"
    status = 409


class ProcessingFailed(BackgroundRemovalError):
    """An upload whose every attempt ended without a word (a crash, out of memory, a timeout): ours,
    not the photo's, so its event is kept in the failure queue for an operator to redrive."""

    code = "processing_failed"
    status = 500


class InvalidRequest(BackgroundRemovalError):
    """A request whose HTTP framing cannot be read (a Content-Length that is not a number)."""

    code = "invalid_request"
    status = 400


class SourceForbidden(BackgroundRemovalError):
    code = "source_forbidden"
    status = 403


class SourceNotFound(BackgroundRemovalError):
    code = "source_not_found"
    status = 404


class ImageTooLarge(BackgroundRemovalError):
    """The input has more bytes than MAX_INPUT_BYTES; the base of every input-size limit (all 413)."""

    code = "image_too_large"
    status = 413


class TooManyPixels(ImageTooLarge):
    """The header claims more pixels than MAX_INPUT_PIXELS (a decompression bomb, or simply too big)."""

    code = "too_many_pixels"


class TooManyFrames(ImageTooLarge):
    """An animation or multi-page file with more frames than MAX_INPUT_FRAMES."""

    code = "too_many_frames"


class TooComplex(ImageTooLarge):
    """A file whose structure would cost its decoder more than a photo's (too many JPEG scans,
    PNG chunks, GIF blocks, TIFF tags or strips, ...): handler.core.image.limits.StructureLimits."""

    code = "too_complex"


class OutputBeyondFormat(InvalidParameter):
    """An output larger than its format can hold (WebP 16383, JPEG 65500 pixels a side)."""

    def __init__(self, format_name: str, limit: int, size: tuple[int, int], fix: str) -> None:
        width, height = size
        super().__init__(
            "format",
            f"{format_name} images are at most {limit} pixels a side, and this output would be {width}x{height}: {fix}",
        )
        self.format_name = format_name
        self.limit = limit


class OutputTooLarge(BackgroundRemovalError):
    code = "output_too_large"
    status = 413


class UnsupportedMediaType(BackgroundRemovalError):
    """A recognised image format that this deployment does not decode, or a body type we refuse."""

    code = "unsupported_media_type"
    status = 415


class UnsupportedEvent(BackgroundRemovalError):
    """An event the jobs function does not know how to read (a wiring mistake, not bad input)."""

    code = "unsupported_event"
    status = 400


class ConfigurationError(BackgroundRemovalError):
    """Settings that cannot work; raised at start-up so a bad deployment fails loudly and early."""

    code = "configuration_error"
    status = 500


class ModelUnavailable(BackgroundRemovalError):
    """The model file is missing and may not be downloaded (offline) or could not be verified."""

    code = "model_unavailable"
    status = 503


class HubUnreachable(ModelUnavailable):
    """The model is not in the local cache and the hub cannot be reached to download it.

    Its own class because the local tools answer it with their fallback model; the functions never do.
    """


class OutputUnavailable(BackgroundRemovalError):
    """The output location is missing or may not be written: our configuration, never the input.

    Not permanent: once the bucket or its permissions are fixed, the retried object goes through
    (the jobs path hands it back to Lambda, which retries and then sends it to the failure
    destination, so no upload is lost).
    """

    code = "output_unavailable"
    status = 500
    permanent = False


class StorageUnavailable(BackgroundRemovalError):
    """S3 failed in a way a retry may fix (throttling, 5xx, timeouts, connection resets)."""

    code = "storage_unavailable"
    status = 503
    permanent = False
