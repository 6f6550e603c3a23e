"""Hardened decoding of untrusted camera snapshot JPEGs, at reduced resolution via DCT scaling."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError

from detection.errors import InvalidRasterError

#: The largest camera we support is 8K (7680×4320); anything bigger is refused before decoding.
MAX_SNAPSHOT_PIXELS = 7680 * 4320

_SIGNATURES = {
    b"\x89PNG\r\n\x1a\n": "a PNG",
    b"II*\x00": "a TIFF",
    b"MM\x00*": "a TIFF",
    b"GIF8": "a GIF",
    b"BM": "a BMP",
    b"RIFF": "a RIFF (WebP?)",
}


class InvalidSnapshotError(InvalidRasterError):
    """A snapshot that cannot be used; ``reason`` is a short code to record on the snapshot."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class DecodedSnapshot:
    """A decoded snapshot at working resolution.

    Attributes
    ----------
    image : ndarray of shape (rows, cols, 3), uint8
        RGB at reduced resolution.
    full_size : tuple of int
        (width, height) of the full-resolution JPEG, pixels.
    scale : float
        Full-resolution pixels per working pixel (the same along rows and columns).
    """

    image: NDArray[np.uint8]
    full_size: tuple[int, int]
    scale: float


def _sniff(data: bytes) -> None:
    if data[:3] == b"\xff\xd8\xff":
        return
    for signature, name in _SIGNATURES.items():
        if data.startswith(signature):
            raise InvalidSnapshotError(
                "not_jpeg", f"the snapshot is {name} file, not a JPEG: send the camera's JPEG"
            )
    raise InvalidSnapshotError(
        "not_jpeg", "the snapshot does not start with a JPEG marker (FF D8 FF): send a JPEG"
    )


def _open(data: bytes) -> Image.Image:
    try:
        with warnings.catch_warnings():
            # A bomb warning means the header asks for far more memory than a camera would;
            # Pillow reads EXIF while opening and only warns when it is corrupt.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            warnings.simplefilter("error", UserWarning)
            return Image.open(io.BytesIO(data), formats=["JPEG"])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidSnapshotError(
            "too_large", f"the JPEG header declares an absurd size ({exc}): refused before decode"
        ) from exc
    except UserWarning as exc:
        reason = "malformed_exif" if "EXIF" in str(exc) else "corrupt"
        raise InvalidSnapshotError(
            reason, f"the JPEG's header is malformed ({exc}): fix the camera's encoder"
        ) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InvalidSnapshotError(
            "corrupt", f"the JPEG header cannot be read ({exc}): the file is damaged"
        ) from exc


def _check_header(
    image: Image.Image, *, expected_size: tuple[int, int] | None, max_pixels: int
) -> None:
    width, height = image.size
    if width * height > max_pixels:
        raise InvalidSnapshotError(
            "too_large",
            f"the JPEG declares {width}×{height} pixels, more than the {max_pixels:,} any "
            "supported camera delivers: refused before decode",
        )
    if expected_size is not None and (width, height) != tuple(expected_size):
        raise InvalidSnapshotError(
            "wrong_size",
            f"the snapshot is {width}×{height} but this preset is calibrated for "
            f"{expected_size[0]}×{expected_size[1]}: check the camera's stream settings or "
            "recalibrate the preset",
        )
    if image.mode == "CMYK":
        raise InvalidSnapshotError(
            "cmyk", "the JPEG is CMYK (a print file, not a camera frame): send an RGB JPEG"
        )
    if image.mode in {"L", "LA", "I", "I;16", "1"}:
        raise InvalidSnapshotError(
            "grayscale",
            f"the JPEG has a single {image.mode!r} channel; cameras send colour JPEGs "
            "(also in IR mode): check the encoder settings",
        )
    if image.mode != "RGB":
        raise InvalidSnapshotError("mode", f"unsupported JPEG colour mode {image.mode!r}")
    try:
        with warnings.catch_warnings():
            # Pillow only warns about corrupt EXIF ("Corrupt EXIF data"); here it is an error.
            warnings.simplefilter("error")
            image.getexif()
    except Exception as exc:  # Pillow raises many types on hostile EXIF; all mean the same here
        raise InvalidSnapshotError(
            "malformed_exif", f"the JPEG's EXIF block is malformed ({exc!r}): fix the encoder"
        ) from exc


def decode_snapshot(
    data: bytes,
    *,
    expected_size: tuple[int, int] | None = None,
    reduce: int = 4,
    max_pixels: int = MAX_SNAPSHOT_PIXELS,
) -> DecodedSnapshot:
    """Decode untrusted JPEG bytes at ``1/reduce`` resolution after checking the header.

    Parameters
    ----------
    data : bytes
        The JPEG file as received.
    expected_size : tuple of int, optional
        (width, height) the preset is calibrated for; a different size is refused.
    reduce : {1, 2, 4, 8}
        Decode at this fraction of the full resolution (JPEG DCT scaling, much faster).
    max_pixels : int
        Refuse headers declaring more pixels than this.

    Returns
    -------
    DecodedSnapshot
        RGB uint8 at reduced resolution with its scale to full resolution.

    Raises
    ------
    InvalidSnapshotError
        With ``reason`` one of not_jpeg, corrupt, too_large, wrong_size, cmyk, grayscale, mode,
        malformed_exif, truncated.
    """
    if reduce not in {1, 2, 4, 8}:
        raise ValueError(f"reduce must be 1, 2, 4 or 8 (JPEG DCT scaling); got {reduce}")
    _sniff(data)
    image = _open(data)
    _check_header(image, expected_size=expected_size, max_pixels=max_pixels)
    width, height = image.size
    image.draft("RGB", (width // reduce, height // reduce))
    try:
        image.load()
        array = np.asarray(image)
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidSnapshotError(
            "truncated", f"the JPEG data is truncated or corrupt ({exc}): resend the snapshot"
        ) from exc
    return DecodedSnapshot(image=array, full_size=(width, height), scale=width / array.shape[1])
