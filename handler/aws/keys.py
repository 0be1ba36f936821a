"""Keys that could climb out of a prefix, and keys that have no UTF-8 form.

S3 keys are opaque strings: S3 itself never resolves `..`. But the keys this service writes are
read by people and tools that do (`aws s3 sync` to a disk, a CDN, a Windows client), and a key
that is harmless to S3 can become `../` after one of the usual normalisations. So a key is judged
by every form such a consumer may see: as sent, percent-decoded, NFKC-folded (U+FF0E FULLWIDTH FULL
STOP is '.', U+2025 TWO DOT LEADER is '..', U+FF0F FULLWIDTH SOLIDUS is '/'), with '\\' as a
separator, and with the trailing dots and spaces that Windows drops from a name removed.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import unquote

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
    return any(_climbs(segment) for form in _forms(key) for segment in form.replace("\\", "/").split("/"))


def is_encodable(key: str) -> bool:
    """False for text that has no UTF-8 form (lone surrogates, which JSON's '\\ud800' can carry)."""
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
