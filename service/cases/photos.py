"""Field photos: untrusted JPEGs checked, their position and time read, every metadata stripped.

A photo is evidence others will see, so what is stored and served is a re-encoded copy made
from the pixels alone: EXIF (with its GPS position and maker notes), XMP, ICC profiles, IPTC
and comments never reach it. The orientation the phone recorded is applied to the pixels
first, so the copy looks the way it was taken. Position and time are read from the EXIF
before it is dropped and kept in the database instead.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, time, tzinfo
from typing import Any

from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from service.errors import InvalidInputError, PayloadTooLargeError, UnsupportedMediaTypeError

JPEG_QUALITY = 90
_EXIF_TIME = "%Y:%m:%d %H:%M:%S"


class InvalidPhotoError(InvalidInputError):
    """A photo that cannot be used as evidence (damaged, or not a photo at all)."""


@dataclass(frozen=True)
class ExifFacts:
    """What the photo's EXIF says about where and when; None where it says nothing usable."""

    lon: float | None = None
    lat: float | None = None
    taken_at: datetime | None = None  # timezone-aware
    taken_at_offset_known: bool = False  # False: a local camera time read in a chosen zone


@dataclass(frozen=True)
class CleanPhoto:
    """A photo re-encoded without any metadata, and the facts read from it beforehand."""

    jpeg: bytes
    width: int
    height: int
    facts: ExifFacts


def clean_photo(data: bytes, *, max_pixels: int, local_zone: tzinfo) -> CleanPhoto:
    """Check untrusted JPEG bytes, read position and time, and re-encode the pixels alone.

    `local_zone` interprets an EXIF time that carries no UTC offset. Raises
    UnsupportedMediaTypeError (not a JPEG), PayloadTooLargeError (more than `max_pixels`)
    or InvalidPhotoError (damaged).
    """
    image = _open(data)
    _check_size(image, max_pixels=max_pixels)
    facts = read_exif_facts(image, local_zone=local_zone)
    pixels = _decode_upright(image)
    buffer = io.BytesIO()
    pixels.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return CleanPhoto(buffer.getvalue(), pixels.width, pixels.height, facts)


def _open(data: bytes) -> Image.Image:
    if not data.startswith(b"\xff\xd8\xff"):
        raise UnsupportedMediaTypeError(
            "the photo is not a JPEG (it does not start with FF D8 FF): send the camera's JPEG"
        )
    try:
        with warnings.catch_warnings():
            # The bomb warning means a header asking for far more memory than a phone photo.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=["JPEG"])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise PayloadTooLargeError(
            f"the JPEG header declares an absurd size ({error}): refused before decoding"
        ) from error
    except UnidentifiedImageError as error:  # its message names an in-memory buffer
        raise InvalidPhotoError(
            "the JPEG header cannot be read: the file is damaged; take the photo again"
        ) from error
    except (OSError, SyntaxError, ValueError) as error:
        raise InvalidPhotoError(
            f"the JPEG header cannot be read ({error}): the file is damaged; take the photo again"
        ) from error


def _check_size(image: Image.Image, *, max_pixels: int) -> None:
    width, height = image.size
    if width * height > max_pixels:
        raise PayloadTooLargeError(
            f"the photo declares {width}×{height} pixels, more than the {max_pixels:,} allowed: "
            "send it at a lower resolution"
        )


def _decode_upright(image: Image.Image) -> Image.Image:
    """The pixels turned as the EXIF orientation says, in a new image that carries no info."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # Pillow only warns on a truncated or corrupt stream
            image.load()
            upright = ImageOps.exif_transpose(image)
    except Exception as error:  # Pillow raises many types on hostile data; all mean the same here
        raise InvalidPhotoError(
            f"the JPEG data is truncated or corrupt ({error}): send the whole file again"
        ) from error
    mode = upright.mode if upright.mode in ("RGB", "L") else "RGB"
    # A fresh image holding the pixels alone: Pillow copies `info` along with an image, and
    # would write the original's JPEG comment again when saving such a copy.
    clean = Image.new(mode, upright.size)
    clean.paste(upright if upright.mode == mode else upright.convert(mode))
    return clean


def read_exif_facts(image: Image.Image, *, local_zone: tzinfo) -> ExifFacts:
    """Position (WGS 84 degrees) and capture time from EXIF; malformed parts count as absent."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # corrupt EXIF: treated as no EXIF
            exif = image.getexif()
            gps = dict(exif.get_ifd(ExifTags.IFD.GPSInfo))
            details = dict(exif.get_ifd(ExifTags.IFD.Exif))
    except Exception:  # hostile EXIF raises many types; the photo itself may still be fine
        return ExifFacts()
    lon, lat = _gps_position(gps)
    taken_at, offset_known = _capture_time(details, gps, exif, local_zone=local_zone)
    return ExifFacts(lon, lat, taken_at, offset_known)


def _gps_position(gps: dict[int, Any]) -> tuple[float | None, float | None]:
    lat = _degrees(gps.get(ExifTags.GPS.GPSLatitude), gps.get(ExifTags.GPS.GPSLatitudeRef), "S")
    lon = _degrees(gps.get(ExifTags.GPS.GPSLongitude), gps.get(ExifTags.GPS.GPSLongitudeRef), "W")
    if lat is None or lon is None or abs(lat) > 90 or abs(lon) > 180:
        return None, None
    return lon, lat


def _degrees(value: Any, ref: Any, negative_ref: str) -> float | None:
    """Degrees, minutes, seconds (three rationals) and a hemisphere letter as signed degrees."""
    try:
        d, m, s = (float(part) for part in value)
        hemisphere = ref.decode("ascii") if isinstance(ref, bytes) else str(ref)
    except (TypeError, ValueError, ZeroDivisionError, UnicodeDecodeError):
        return None
    degrees = d + m / 60 + s / 3600
    if not math.isfinite(degrees) or hemisphere.strip("\x00 ").upper() not in ("N", "S", "E", "W"):
        return None
    return -degrees if hemisphere.strip("\x00 ").upper() == negative_ref else degrees


def _capture_time(
    details: dict[int, Any], gps: dict[int, Any], exif: Image.Exif, *, local_zone: tzinfo
) -> tuple[datetime | None, bool]:
    """The capture time: with its recorded offset, else GPS time (UTC), else local camera time."""
    local = _exif_time(details.get(ExifTags.Base.DateTimeOriginal)) or _exif_time(
        exif.get(ExifTags.Base.DateTime)
    )
    offset = _exif_offset(details.get(ExifTags.Base.OffsetTimeOriginal))
    if local is not None and offset is not None:
        return local.replace(tzinfo=offset), True
    satellite = _gps_time(gps)
    if satellite is not None:
        return satellite, True
    if local is not None:
        return local.replace(tzinfo=local_zone), False
    return None, False


def _exif_time(value: Any) -> datetime | None:
    try:
        return datetime.strptime(str(value).strip("\x00 "), _EXIF_TIME)
    except ValueError:
        return None


def _exif_offset(value: Any) -> tzinfo | None:
    try:
        return datetime.strptime(str(value).strip("\x00 "), "%z").tzinfo
    except ValueError:
        return None


def _gps_time(gps: dict[int, Any]) -> datetime | None:
    try:
        day = datetime.strptime(str(gps[ExifTags.GPS.GPSDateStamp]).strip("\x00 "), "%Y:%m:%d")
        hours, minutes, seconds = (float(part) for part in gps[ExifTags.GPS.GPSTimeStamp])
        clock = time(int(hours), int(minutes), int(seconds), tzinfo=UTC)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    return datetime.combine(day.date(), clock)
