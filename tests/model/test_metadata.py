"""What an output tells about the photo it came from: the colour profile always, EXIF/XMP only when asked.

A cutout published on a shop page must not say where the photo was taken: by default no output
carries the input's EXIF (GPS) or XMP, in any format. `keep_metadata` copies both to cutouts, with
the orientation reset because the pixels are already upright. Masks never carry either.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageCms

from handler.core.image.formats import OutputKind
from handler.core.image.limits import ImageLimits
from handler.core.image.options import Margin, RenderOptions
from handler.core.model.session import BackgroundModel
from handler.core.render import process
from tests import graphs
from tests.exif import LATITUDE, ORIENTATION, latitude, phone_exif
from tests.graphs import GraphModel

STORED_SIZE = (60, 40)  # stored sideways: EXIF orientation 6 shows it 40 wide, 60 high
MAKE = "LeakyCam 3000"  # distinctive strings to look for in the output bytes
XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/" '
    b'tiff:Orientation="6"><dc:creator>Shop Photographer</dc:creator></rdf:Description></rdf:RDF></x:xmpmeta>'
)
EXIF_IFD = 0x8769
FORMATS = [
    RenderOptions(format="png"),
    RenderOptions(format="png", max_size=30),  # Pillow-composed image through our PNG writer
    RenderOptions(format="webp"),
    RenderOptions(format="jpeg", bg_color=(255, 255, 255)),
]


@pytest.fixture(scope="module")
def opaque(graph_model: GraphModel) -> BackgroundModel:
    """Everything is subject: a logit of 6 is alpha 254, so cutouts keep their pixels."""
    return graph_model(graphs.constant(6.0, size=64))


@pytest.fixture(scope="module")
def profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.fixture(scope="module")
def phone_photo(profile: bytes) -> bytes:
    """A JPEG as a phone writes it: GPS position, camera make, orientation 6, XMP and an ICC profile."""
    exif = phone_exif(6)
    exif[0x010F] = MAKE  # Make
    exif.get_ifd(EXIF_IFD).update({0xA002: STORED_SIZE[0], 0xA003: STORED_SIZE[1]})  # PixelX/YDimension
    pixels = np.random.default_rng(5).integers(0, 256, (STORED_SIZE[1], STORED_SIZE[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90, exif=exif, xmp=XMP, icc_profile=profile)
    data = buffer.getvalue()
    assert MAKE.encode() in data and b"xmpmeta" in data
    return data


def _output(data: bytes, kinds: list[OutputKind], options: RenderOptions, model: BackgroundModel) -> dict[str, bytes]:
    result = process(data, kinds, options, model, ImageLimits())
    return {kind: rendered.data for kind, rendered in result.outputs.items()}


@pytest.mark.parametrize("options", FORMATS, ids=lambda o: f"{o.format}{'-max_size' if o.max_size else ''}")
def test_outputs_carry_no_exif_or_xmp_by_default(
    opaque: BackgroundModel, phone_photo: bytes, profile: bytes, options: RenderOptions
) -> None:
    # WHEN cutting out a phone photo with the default options
    cutout = _output(phone_photo, ["cutout"], options, opaque)["cutout"]

    # THEN nothing of its EXIF or XMP is in the file, as any decoder reads it or as bytes
    image = Image.open(io.BytesIO(cutout))
    assert len(image.getexif()) == 0 and "exif" not in image.info and latitude(image) is None
    assert "xmp" not in image.info
    assert MAKE.encode() not in cutout and b"xmpmeta" not in cutout and b"Exif" not in cutout
    # but its colour profile is: without it the colours would shift
    assert image.info.get("icc_profile") == profile
    # and the pixels are upright (orientation applied before the metadata was dropped)
    assert image.size == (40, 60) or (options.max_size is not None and image.size == (20, 30))


@pytest.mark.parametrize("options", FORMATS, ids=lambda o: f"{o.format}{'-max_size' if o.max_size else ''}")
def test_keep_metadata_copies_exif_and_xmp_upright(
    opaque: BackgroundModel, phone_photo: bytes, profile: bytes, options: RenderOptions
) -> None:
    # WHEN the caller asks for the metadata
    kept = RenderOptions(**{**options.__dict__, "keep_metadata": True})
    cutout = _output(phone_photo, ["cutout"], kept, opaque)["cutout"]

    # THEN the GPS position and the camera are there
    image = Image.open(io.BytesIO(cutout))
    exif = image.getexif()
    assert exif.get(0x010F) == MAKE
    assert latitude(image) == LATITUDE
    # with the orientation reset, in EXIF and XMP: the pixels are already upright, and a viewer
    # that turned them again would show the cutout sideways
    assert image.size[0] < image.size[1]
    assert exif[ORIENTATION] == 1
    xmp = image.info["xmp"]
    xmp = xmp.encode() if isinstance(xmp, str) else xmp
    assert b"Shop Photographer" in xmp and b'tiff:Orientation="1"' in xmp
    # the original's pixel size is gone rather than wrong, and the profile is still there
    assert 0xA002 not in exif.get_ifd(EXIF_IFD)
    assert image.info.get("icc_profile") == profile


def test_keep_metadata_survives_cropping(opaque: BackgroundModel, phone_photo: bytes) -> None:
    options = RenderOptions(crop=True, margin=Margin(0), keep_metadata=True)

    cutout = _output(phone_photo, ["cutout"], options, opaque)["cutout"]

    assert Image.open(io.BytesIO(cutout)).getexif().get(0x010F) == MAKE


@pytest.mark.parametrize("keep_metadata", [False, True])
@pytest.mark.parametrize("fmt", ["png", "webp"])
def test_masks_carry_no_metadata_either_way(
    opaque: BackgroundModel, phone_photo: bytes, keep_metadata: bool, fmt: str
) -> None:
    # A mask is data derived from the photo, not the photo: no EXIF, no XMP, no colour profile.
    options = RenderOptions(format=fmt, keep_metadata=keep_metadata)  # type: ignore[arg-type]

    mask = _output(phone_photo, ["cutout", "mask"], options, opaque)["mask"]

    image = Image.open(io.BytesIO(mask))
    assert len(image.getexif()) == 0 and "xmp" not in image.info and "icc_profile" not in image.info
    assert MAKE.encode() not in mask and b"xmpmeta" not in mask


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")  # Pillow's own, when the decoder reads the orientation
def test_corrupt_exif_is_never_fatal(opaque: BackgroundModel) -> None:
    # GIVEN a JPEG whose EXIF block points past its end
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(buffer, "JPEG", exif=b"Exif\x00\x00MM\x00*\x00\x00\xff\xff\xff\xff")

    # WHEN the metadata is kept, THEN the cutout is made, with only the orientation we set
    cutout = _output(buffer.getvalue(), ["cutout"], RenderOptions(keep_metadata=True), opaque)["cutout"]

    assert dict(Image.open(io.BytesIO(cutout)).getexif()) == {ORIENTATION: 1}
