"""Phone-like field photos made with Pillow: GPS, capture time, maker note, XMP, ICC, comment.

The metadata carry marker strings (`SECRETS`) that must never reach a stored or served copy.
"""

from __future__ import annotations

import io
import random
from datetime import datetime

from PIL import ExifTags, Image, ImageCms
from PIL.TiffImagePlugin import IFDRational

MAKER_NOTE = b"MAKERNOTE-serial-4711-owner-zhang"
XMP_MARKER = b"XMP-secret-exif-copy"
COMMENT = b"COMMENT-secret-home-address"
SECRETS = (MAKER_NOTE, XMP_MARKER, COMMENT, b"PhoneCo-X1")
XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-'
    b'syntax-ns#"><rdf:Description>' + XMP_MARKER + b"</rdf:Description></rdf:RDF></x:xmpmeta>"
)
# 30°03'36" N, 120°03'00" E: inside the API world's township A1.
LAT_DMS, LON_DMS = (30, 3, 36), (120, 3, 0)
LAT, LON = 30.06, 120.05


def field_photo(
    *,
    size: tuple[int, int] = (64, 32),
    gps: bool = True,
    taken: datetime | None = datetime(2024, 6, 2, 10, 30),
    offset: str | None = "+08:00",
    orientation: int = 6,
    seed: int | None = None,
) -> bytes:
    """A JPEG whose left half is red and right half blue, with the metadata a phone writes.

    `orientation` 6 means "rotate 90° clockwise to view": seen upright, red is on top.
    `seed` adds a noise pixel so that photos differ in content (and in hash).
    """
    width, height = size
    image = Image.new("RGB", size, (255, 0, 0))
    image.paste((0, 0, 255), (width // 2, 0, width, height))
    if seed is not None:
        rng = random.Random(seed)
        image.putpixel((rng.randrange(width // 2), 0), (rng.randrange(256), 255, 0))
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "PhoneCo"
    exif[ExifTags.Base.Model] = "PhoneCo-X1"
    exif[ExifTags.Base.Orientation] = orientation
    details = exif.get_ifd(ExifTags.IFD.Exif)
    details[ExifTags.Base.MakerNote] = MAKER_NOTE
    if taken is not None:
        details[ExifTags.Base.DateTimeOriginal] = taken.strftime("%Y:%m:%d %H:%M:%S")
        if offset is not None:
            details[ExifTags.Base.OffsetTimeOriginal] = offset
    if gps:
        position = exif.get_ifd(ExifTags.IFD.GPSInfo)
        position[ExifTags.GPS.GPSLatitudeRef] = "N"
        position[ExifTags.GPS.GPSLatitude] = tuple(IFDRational(v) for v in LAT_DMS)
        position[ExifTags.GPS.GPSLongitudeRef] = "E"
        position[ExifTags.GPS.GPSLongitude] = tuple(IFDRational(v) for v in LON_DMS)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif, icc_profile=icc, comment=COMMENT, xmp=XMP)
    return buffer.getvalue()


def segments(jpeg: bytes) -> list[int]:
    """The markers of a JPEG's segments before the image data (0xE0 APP0 ... 0xFE COM)."""
    assert jpeg[:2] == b"\xff\xd8", "not a JPEG"
    found, at = [], 2
    while at + 4 <= len(jpeg) and jpeg[at] == 0xFF:
        marker = jpeg[at + 1]
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            break
        found.append(marker)
        at += 2 + int.from_bytes(jpeg[at + 2 : at + 4], "big")
    return found


def with_declared_size(jpeg: bytes, width: int, height: int) -> bytes:
    """The same JPEG with its frame header (SOF0) claiming another size: a pixel bomb."""
    at = jpeg.index(b"\xff\xc0")
    header = bytearray(jpeg)
    header[at + 5 : at + 7] = height.to_bytes(2, "big")
    header[at + 7 : at + 9] = width.to_bytes(2, "big")
    return bytes(header)
