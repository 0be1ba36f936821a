"""Output keys derived from input keys, and keys that could climb out of a prefix.

S3 keys are opaque strings: S3 itself never resolves `..`. But the keys this service writes are
read by people and tools that do (`aws s3 sync` to a disk, a CDN, a Windows client), and a key
that is harmless to S3 can become `../` after one of the usual normalisations. So a key is judged
by every form such a consumer may see: as sent, percent-decoded, NFKC-folded (U+FF0E FULLWIDTH FULL
STOP is '.', U+2025 TWO DOT LEADER is '..', U+FF0F FULLWIDTH SOLIDUS is '/'), with '\\' as a
separator, and with the trailing dots and spaces that Windows drops from a name removed.
"""

from __future__ import annotations

import unicodedata
from typing import TYPE_CHECKING
from urllib.parse import unquote

from handler.core.errors import InvalidParameter

if TYPE_CHECKING:  # config imports this module
    from handler.aws.settings import FunctionSettings

# Where each kind of output goes, under OUTPUT_PREFIX; the rest of the key mirrors the source's.
OUTPUT_FOLDERS = {"cutout": "cutouts", "mask": "masks"}
# S3 refuses keys longer than this many bytes (UTF-8); a longer output key can never be written.
MAX_KEY_BYTES = 1024

# Percent-decoding is repeated (a consumer may decode twice: %252e%252e); a bound keeps a
# pathological key from costing more than a few passes.
_MAX_DECODE_PASSES = 4


def _forms(key: str) -> set[str]:
    forms = {key}
    decoded = key
    for _ in range(_MAX_DECODE_PASSES):
        decoded, before = unquote(decoded, errors="replace"), decoded
        if decoded == before:
            break
        forms.add(decoded)
    return forms | {unicodedata.normalize("NFKC", form) for form in forms}


def _climbs(segment: str) -> bool:
    # Windows drops trailing dots and spaces from a name, so '.. ' and '...' are '..' there.
    stripped = segment.strip()
    return len(stripped) >= 2 and set(stripped) == {"."}


def climbs_out(key: str) -> bool:
    """True when some normal form of `key` has a '..' segment (a '/' or '\\' separated one)."""
    return any(
        _climbs(segment) for form in _forms(key) for segment in form.replace("\\", "/").split("/")
    )


def is_encodable(key: str) -> bool:
    """False for text that has no UTF-8 form (lone surrogates, which JSON's '\\ud800' can carry)."""
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def output_key(source_key: str, kind: str, extension: str, function: FunctionSettings) -> str:
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
            "key", f"{source_key!r} has a '..' segment (in some normal form); its outputs could escape the output prefix"
        )
    segments = relative.split("/")
    segments[-1] = _with_extension(segments[-1], extension)
    key = f"{function.output_prefix}{OUTPUT_FOLDERS[kind]}/{'/'.join(segments)}"
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise InvalidParameter(
            "key", f"the output key for {source_key!r} would be longer than S3's {MAX_KEY_BYTES} bytes"
        )
    return key


def _with_extension(name: str, extension: str) -> str:
    stem, dot, _ = name.rpartition(".")
    return f"{stem if dot and stem else name}.{extension}"
