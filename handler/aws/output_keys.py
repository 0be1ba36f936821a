"""Where a source object's outputs go: `<OUTPUT_PREFIX><cutouts|masks>/<key relative to INPUT_PREFIX>`."""

from __future__ import annotations

from handler.aws.keys import climbs_out, is_encodable
from handler.aws.settings import FunctionSettings
from handler.core.errors import InvalidParameter
from handler.core.image.formats import FORMATS, OutputFormat, OutputKind

# Where each kind of output goes, under OUTPUT_PREFIX; the rest of the key mirrors the source's.
OUTPUT_FOLDERS: dict[OutputKind, str] = {"cutout": "cutouts", "mask": "masks"}
# S3 refuses keys longer than this many bytes (UTF-8); a longer output key can never be written.
MAX_KEY_BYTES = 1024


def output_key(source_key: str, kind: OutputKind, extension: str, function: FunctionSettings) -> str:
    """`<OUTPUT_PREFIX><cutouts|masks>/<key relative to INPUT_PREFIX, new extension>`.

    Refuses (permanently) keys whose output could not stay under the output prefix.
    """
    if not is_encodable(source_key):
        raise InvalidParameter("key", f"{source_key!r} is not valid Unicode (a lone surrogate)")
    relative = source_key
    if function.input_prefix and relative.startswith(function.input_prefix):
        relative = relative[len(function.input_prefix) :]
    relative = relative.lstrip("/")
    if not relative or relative.endswith("/"):
        raise InvalidParameter("key", f"{source_key!r} names a folder, not an image")
    if climbs_out(relative):
        raise InvalidParameter(
            "key",
            f"{source_key!r} has a '..' segment (in some normal form); its outputs could escape the output prefix",
        )
    segments = relative.split("/")
    segments[-1] = _with_extension(segments[-1], extension)
    key = f"{function.output_prefix}{OUTPUT_FOLDERS[kind]}/{'/'.join(segments)}"
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise InvalidParameter(
            "key", f"the output key for {source_key!r} would be longer than S3's {MAX_KEY_BYTES} bytes"
        )
    return key


def output_keys(
    source_key: str, function: FunctionSettings, output_format: OutputFormat | None = None
) -> dict[OutputKind, str]:
    """The key of each output the function writes for `source_key`, in OUTPUTS order, with the extension
    of `output_format` (an upload's own choice) or else of the function's OUTPUT_FORMAT."""
    extension = FORMATS[output_format or function.output_format].extension
    return {kind: output_key(source_key, kind, extension, function) for kind in function.outputs}


def is_under_output(bucket: str, key: str, function: FunctionSettings) -> bool:
    """Whether the object is in the output location (an output of this function, or where one would go)."""
    return bucket == function.output_bucket and key.startswith(function.output_prefix)


def _with_extension(name: str, extension: str) -> str:
    stem, dot, _ = name.rpartition(".")
    return f"{stem if dot and stem else name}.{extension}"
