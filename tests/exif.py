"""EXIF as a phone writes it, for the tests of what outputs carry: a GPS position and an orientation."""

from __future__ import annotations

from PIL import Image

ORIENTATION = 0x0112
GPS_IFD = 0x8825
GPS_LATITUDE = 2
LATITUDE = (48.0, 51.0, 29.0)


def phone_exif(orientation: int = 1) -> Image.Exif:
    exif = Image.Exif()
    if orientation != 1:
        exif[ORIENTATION] = orientation
    exif.get_ifd(GPS_IFD).update({1: "N", GPS_LATITUDE: LATITUDE, 3: "E", 4: (2.0, 17.0, 40.0)})
    return exif


def latitude(image: Image.Image) -> tuple[float, ...] | None:
    """The GPS latitude an output carries, None when it carries none."""
    return image.getexif().get_ifd(GPS_IFD).get(GPS_LATITUDE)
