"""Whatever options the entry points accept, the pipeline can do: a result or a coded refusal.

POST /uploads accepts an upload's options with `parse_options` and `render.check_request`, as
POST /remove does; the job then runs `render.process` with them on whatever photo arrives. So
for every option set those two accept, and photos at the edges (a panorama wider than WebP
allows, EXIF larger than a JPEG segment, CMYK, a single pixel), `process` must end in a result or
a `BackgroundRemovalError`, never anything else: a job never crashes on options it was given.
Derandomised with a bounded number of examples, as the API's property tests.
"""

from __future__ import annotations

import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from handler.core.errors import BackgroundRemovalError
from handler.core.image.formats import OutputKind
from handler.core.image.limits import ImageLimits
from handler.core.image.options import OPTION_NAMES, parse_options
from handler.core.model.session import BackgroundModel
from handler.core.render import check_request, process

pytestmark = pytest.mark.filterwarnings("ignore")

KINDS: tuple[OutputKind, ...] = ("cutout", "mask")  # what the jobs write for an upload


def _photo(size: tuple[int, int], fmt: str = "PNG", mode: str = "RGB", **params: object) -> bytes:
    image = Image.linear_gradient("L").resize(size).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def _orientation(value: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = value
    return exif.tobytes()


def _big_exif() -> bytes:
    exif = Image.Exif()
    exif[0x010E] = "x" * 70_000
    return exif.tobytes()


PHOTOS = {
    "small": _photo((48, 32)),
    "one-pixel": _photo((1, 1)),
    "panorama-past-webp": _photo((16_500, 8)),
    "big-exif": _photo((40, 30), exif=_big_exif()),
    "cmyk-jpeg": _photo((40, 30), "JPEG", "CMYK"),
    "sideways-jpeg": _photo((40, 30), "JPEG", exif=_orientation(6)),
}
VALUES = {
    "format": ["png", "webp", "jpeg", "JPG", "gif"],
    "bg_color": ["#fff", "81d4fa", "green", "rgb(1,2,3)", "hsl(120,100%,25%)", "#0008", "rgb(256,0,0)"],
    "crop": ["true", "false"],
    "margin": ["0", "20px", "5%", "100%", "99999"],
    "max_size": ["1", "7", "16383", "20000"],
    "refine": ["true", "false"],
    "keep_metadata": ["true", "false"],
    "resolution": ["320", "512", "1024"],
}
assert set(VALUES) <= OPTION_NAMES
option_sets = st.fixed_dictionaries(
    {"format": st.sampled_from(VALUES["format"])},
    optional={name: st.sampled_from(values) for name, values in VALUES.items() if name != "format"},
)
# The codes of the refusals a photo can meet in the pipeline (handler.core.errors).
ERROR_CODES = {"invalid_parameter", "invalid_image", "image_too_large", "too_many_pixels", "too_complex"}


def _accepted_result(model: BackgroundModel, raw: dict[str, str], photo: str) -> str:
    """`process` on options the entry points accept: "refused" at the door, else its outputs' kinds
    or the code it refused with; anything else raised is the failure this test looks for."""
    try:
        options = parse_options(raw, "cutout")
        check_request(("cutout",), options, model)
    except BackgroundRemovalError:
        return "refused"
    try:
        result = process(PHOTOS[photo], KINDS, options, model, ImageLimits())
    except BackgroundRemovalError as error:
        return error.code
    assert set(result.outputs) == set(KINDS)
    return "done"


@pytest.mark.parametrize(
    ("raw", "photo", "outcome"),
    [
        ({"format": "webp"}, "panorama-past-webp", "invalid_parameter"),
        ({"format": "webp", "max_size": "16383"}, "panorama-past-webp", "done"),
        ({"format": "jpeg", "bg_color": "white", "keep_metadata": "true"}, "big-exif", "done"),
        ({"format": "jpeg", "bg_color": "rgb(256,0,0)"}, "small", "refused"),
        ({"bg_color": "hsl(0,1000%,50%)", "format": "jpeg"}, "small", "refused"),
        ({"resolution": "512"}, "small", "refused"),
    ],
)
def test_the_edges_the_jobs_met_end_in_a_result_or_a_coded_refusal(
    u2netp: BackgroundModel, raw: dict[str, str], photo: str, outcome: str
) -> None:
    assert _accepted_result(u2netp, raw, photo) == outcome


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(raw=option_sets)
@pytest.mark.parametrize("photo", sorted(PHOTOS))
def test_options_the_entry_points_accept_never_crash_the_pipeline(
    u2netp: BackgroundModel, photo: str, raw: dict[str, str]
) -> None:
    # GIVEN options POST /uploads accepts (anything it refuses never reaches a job), WHEN the job
    # runs them on the photo, THEN it ends in outputs or a coded refusal
    assert _accepted_result(u2netp, raw, photo) in {"refused", "done", *ERROR_CODES}
