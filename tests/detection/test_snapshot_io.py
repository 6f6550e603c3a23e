"""Hardened snapshot decoding: every bad input is refused with a reason before it costs memory."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image

from detection.io.snapshot import InvalidSnapshotError, decode_snapshot

SIZE = (320, 240)


def encode(image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=options.pop("format", "JPEG"), **options)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def frame() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (SIZE[1], SIZE[0], 3), dtype=np.uint8))


def with_declared_size(data: bytes, width: int, height: int) -> bytes:
    """Rewrite the SOF0 header's size fields, as a hostile or broken encoder might."""
    start = data.index(b"\xff\xc0")
    return data[: start + 5] + struct.pack(">HH", height, width) + data[start + 9 :]


def test_a_good_jpeg_decodes_at_a_quarter_of_its_resolution(frame: Image.Image) -> None:
    decoded = decode_snapshot(encode(frame), expected_size=SIZE, reduce=4)
    assert decoded.image.shape == (60, 80, 3)
    assert decoded.full_size == SIZE
    assert decoded.scale == 4.0


def reasons() -> list[tuple[str, object]]:
    return [
        ("truncated", lambda f: encode(f)[:-600]),
        ("not_jpeg", lambda f: encode(f, format="PNG")),
        ("not_jpeg", lambda f: encode(f, format="TIFF")),
        ("too_large", lambda f: with_declared_size(encode(f), 50000, 50000)),
        ("grayscale", lambda f: encode(f.convert("L"))),
        ("cmyk", lambda f: encode(f.convert("CMYK"))),
        ("wrong_size", lambda f: encode(f.resize((640, 480)))),
        (
            "malformed_exif",
            lambda f: encode(f, exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff\x01\x02"),
        ),
    ]


@pytest.mark.parametrize(("reason", "make"), reasons(), ids=[r for r, _ in reasons()])
def test_bad_snapshots_are_refused_with_a_reason(
    frame: Image.Image, reason: str, make: object
) -> None:
    data = make(frame)  # type: ignore[operator]
    with pytest.raises(InvalidSnapshotError) as error:
        decode_snapshot(data, expected_size=SIZE)
    assert error.value.reason == reason
    assert len(str(error.value)) > 30  # says what is wrong and what to do
