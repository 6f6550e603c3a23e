"""Field photo cleaning without a database: facts read from EXIF, everything else dropped."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from PIL import ExifTags, Image
from PIL.TiffImagePlugin import IFDRational

from service.cases.photos import InvalidPhotoError, clean_photo
from service.errors import PayloadTooLargeError, UnsupportedMediaTypeError
from tests.service.cases.photo_files import LAT, LON, SECRETS, field_photo, segments

SHANGHAI = ZoneInfo("Asia/Shanghai")


def _clean(data: bytes, max_pixels: int = 10**7):  # type: ignore[no-untyped-def]
    return clean_photo(data, max_pixels=max_pixels, local_zone=SHANGHAI)


def _jpeg(exif: Image.Exif, mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (16, 16)).save(buffer, "JPEG", exif=exif)
    return buffer.getvalue()


def test_position_and_time_are_read_and_every_segment_but_jfif_dropped() -> None:
    photo = _clean(field_photo())
    assert (photo.facts.lon, photo.facts.lat) == pytest.approx((LON, LAT))
    assert photo.facts.taken_at == datetime(2024, 6, 2, 2, 30, tzinfo=UTC)
    assert photo.facts.taken_at_offset_known
    assert [m for m in segments(photo.jpeg) if 0xE0 <= m <= 0xEF or m == 0xFE] == [0xE0]
    assert not any(secret in photo.jpeg for secret in SECRETS)


def test_southern_and_western_positions_are_negative_and_gps_time_is_utc() -> None:
    exif = Image.Exif()
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "S"
    gps[ExifTags.GPS.GPSLatitude] = (IFDRational(33), IFDRational(52), IFDRational(0))
    gps[ExifTags.GPS.GPSLongitudeRef] = "W"
    gps[ExifTags.GPS.GPSLongitude] = (IFDRational(70), IFDRational(30), IFDRational(0))
    gps[ExifTags.GPS.GPSDateStamp] = "2024:01:05"
    gps[ExifTags.GPS.GPSTimeStamp] = (IFDRational(23), IFDRational(59), IFDRational(30))
    facts = _clean(_jpeg(exif)).facts
    assert (facts.lon, facts.lat) == pytest.approx((-70.5, -(33 + 52 / 60)))
    assert facts.taken_at == datetime(2024, 1, 5, 23, 59, 30, tzinfo=UTC)


def test_an_impossible_gps_position_counts_as_none() -> None:
    exif = Image.Exif()
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (IFDRational(130), IFDRational(0), IFDRational(0))
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = (IFDRational(120), IFDRational(0), IFDRational(0))
    facts = _clean(_jpeg(exif)).facts
    assert (facts.lon, facts.lat, facts.taken_at) == (None, None, None)


def test_a_grayscale_photo_stays_grayscale_and_cmyk_becomes_rgb() -> None:
    assert Image.open(io.BytesIO(_clean(_jpeg(Image.Exif(), "L")).jpeg)).mode == "L"
    assert Image.open(io.BytesIO(_clean(_jpeg(Image.Exif(), "CMYK")).jpeg)).mode == "RGB"


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 32, UnsupportedMediaTypeError),
        (field_photo()[:300], InvalidPhotoError),
        (field_photo(size=(4000, 4000), orientation=1), PayloadTooLargeError),
    ],
)
def test_unusable_bytes_raise_a_specific_error(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        _clean(data, max_pixels=10_000_000)
