"""Output keys can never escape the output prefix, whatever the input key (issue #7, "Abuse").

`handler.aws.keys.output_key` maps an uploaded object's key to the keys of its cutout and mask. The
input key is anyone's text: these tests throw arbitrary Unicode at it, weighted towards the
fragments that make paths climb (`..`, `/`, `\\`, fullwidth dots and solidus, two-dot leaders,
percent-encoding, NUL, control characters, RTL override, lone surrogates, over-long keys), and
check that every key either maps under the output prefix or is refused cleanly (InvalidParameter,
a permanent, counted skip), never anything else.

Collisions, by design and documented in docs/s3-jobs.md: keys that differ only in their
extension ("a.jpg", "a.png"), in leading slashes ("/a.jpg", "a.jpg"), or in the INPUT_PREFIX
("uploads/a.jpg", "a.jpg", when a key outside the prefix is processed at all) share outputs.
Keys under the input prefix with the same extension never collide (asserted below).
"""

from __future__ import annotations

import posixpath
import unicodedata
from urllib.parse import unquote

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from handler.aws.keys import climbs_out
from handler.aws.output_keys import MAX_KEY_BYTES, OUTPUT_FOLDERS, output_key
from handler.aws.settings import FunctionSettings
from handler.core.errors import InvalidParameter
from handler.core.image.formats import OutputKind

INPUT_PREFIX = "uploads/"
OUTPUT_PREFIXES = ("", "results/", "out/put/")

# The pieces of path tricks, mixed into arbitrary text.
TRICKS = (
    "..", "../", "/..", "/", "//", "\\", "..\\", ".", "./", " ", "... ", ".. ",
    "\x00", "\x01", "\x1f", "\x7f", "\x85", "\u202e", "\u200b", "\ufeff",
    "\uff0e", "\uff0e\uff0e", "\uff0f", "\uff3c", "\u2024", "\u2025", "\u2026", "\ufe52", "\u3002",
    "%2e", "%2E%2E", "%2f", "%2F", "%5c", "%252e%252e%252f", "%", "%zz", "+",
    "\ud800", "\udfff", "\U0001f600", "é", "e\u0301",
    INPUT_PREFIX,
)  # fmt: skip
fragments = st.one_of(st.sampled_from(TRICKS), st.text(max_size=8))
tricky_keys = st.one_of(
    st.lists(fragments, max_size=12).map("".join),
    # Past S3's 1024-byte limit once mapped (up to 4 bytes a character).
    st.text(min_size=200, max_size=1100),
    st.builds(lambda name: INPUT_PREFIX + name, st.text(min_size=900, max_size=1100, alphabet="a/.")),
)
PROPERTY_SETTINGS = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _function(output_prefix: str) -> FunctionSettings:
    return FunctionSettings(
        output_bucket="results", output_prefix=output_prefix, input_bucket="uploads", input_prefix=INPUT_PREFIX
    )


def _as_a_consumer_may_see_it(key: str) -> str:
    """The key after the normalisations that tools downstream of S3 may apply, all at once."""
    text = key
    for _ in range(4):
        text = unquote(text, errors="replace")
    text = unicodedata.normalize("NFKC", text).replace("\\", "/")
    return posixpath.normpath(text)


@PROPERTY_SETTINGS
@given(key=tricky_keys, prefix=st.sampled_from(OUTPUT_PREFIXES), kind=st.sampled_from(sorted(OUTPUT_FOLDERS)))
@example(key="uploads/../../escape/photo.jpg", prefix="results/", kind="cutout")
@example(key="uploads/\uff0e\uff0e\uff0f\uff0e\uff0e\uff0fescape.jpg", prefix="results/", kind="cutout")
@example(key="uploads/\u2025/\u2025/escape.jpg", prefix="results/", kind="mask")
@example(key="uploads/%2e%2e/%2E%2E/escape.jpg", prefix="results/", kind="cutout")
@example(key="uploads/%252e%252e/escape.jpg", prefix="results/", kind="cutout")
@example(key="uploads/..\\..\\escape.jpg", prefix="results/", kind="cutout")
@example(key="uploads/.. /... /escape.jpg", prefix="results/", kind="cutout")
@example(key="uploads/\ud800.jpg", prefix="", kind="cutout")
@example(key="uploads/" + "é" * 600 + ".jpg", prefix="results/", kind="cutout")
def test_output_key_stays_under_the_output_prefix_or_is_refused(key: str, prefix: str, kind: OutputKind) -> None:
    function = _function(prefix)
    try:
        result = output_key(key, kind, "png", function)
    except InvalidParameter as error:
        # A clean refusal: the jobs path logs and counts it, and does not retry.
        assert error.permanent and error.code == "invalid_parameter"
        return
    folder = f"{prefix}{OUTPUT_FOLDERS[kind]}/"
    assert result.startswith(folder)
    assert len(result.encode("utf-8")) <= MAX_KEY_BYTES
    assert result.endswith(".png")
    # No '..' segment in any normal form, and normalising cannot leave the folder either.
    assert not climbs_out(result)
    assert (_as_a_consumer_may_see_it(result) + "/").startswith(_as_a_consumer_may_see_it(folder) + "/")
    assert _as_a_consumer_may_see_it(result) != _as_a_consumer_may_see_it(folder)


@PROPERTY_SETTINGS
@given(first=tricky_keys, second=tricky_keys)
def test_keys_under_the_input_prefix_with_one_extension_never_share_outputs(first: str, second: str) -> None:
    function = _function("results/")
    # Same prefix, no leading slash, same extension: the documented collisions are ruled out.
    first, second = (f"{INPUT_PREFIX}{key.lstrip('/')}x.jpg" for key in (first, second))
    if first == second:
        return
    try:
        outputs = {output_key(key, "cutout", "png", function) for key in (first, second)}
    except InvalidParameter:
        return
    assert len(outputs) == 2


@pytest.mark.parametrize(
    "key",
    [
        "..", "../x", "a/../b", "a/..", "..\\x", "a\\..\\b", "\uff0e\uff0e/x", "a/\uff0e\uff0e\uff0fb",
        "\u2025/x", "a/\u2026/b", "%2e%2e/x", "%2E%2E%2Fx", "%252e%252e/x", ".. /x", "a/... /b", " .. ",
    ],
)  # fmt: skip
def test_climbing_segments_in_any_normal_form_are_found(key: str) -> None:
    assert climbs_out(key)


@pytest.mark.parametrize(
    "key",
    ["a/b.jpg", "a..b/c", "..a/b", "a../b", "./a", "a/./b", "a//b", ".hidden/x", "100%20 off/x", "\u2024/x", "%/x"],
)
def test_ordinary_keys_do_not_climb(key: str) -> None:
    assert not climbs_out(key)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("uploads/a/b.jpg", "results/cutouts/a/b.png"),
        ("uploads///a.jpg", "results/cutouts/a.png"),
        ("uploads/\u202egpj.exe", "results/cutouts/\u202egpj.png"),  # the extension is ours, whatever it looks like
        ("uploads/a\x00b.jpg", "results/cutouts/a\x00b.png"),  # S3 stored it, so S3 takes it back
    ],
)
def test_odd_but_harmless_keys_are_mirrored(key: str, expected: str) -> None:
    assert output_key(key, "cutout", "png", _function("results/")) == expected


@pytest.mark.parametrize("prefix", ["../", "a/../", "\uff0e\uff0e/"])
def test_output_prefix_itself_cannot_climb(prefix: str) -> None:
    from handler.core.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="OUTPUT_PREFIX"):
        FunctionSettings.from_env({"OUTPUT_PREFIX": prefix})


@PROPERTY_SETTINGS
@given(key=tricky_keys)
def test_climbing_check_takes_any_text(key: str) -> None:
    # Lone surrogates, broken percent-escapes and all: the check answers, it never raises.
    assert climbs_out(key) in (True, False)
    assert climbs_out(f"{key}/../x")
