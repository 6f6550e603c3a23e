"""GeoTIFFs too large to hold in memory, read window by window as the detector asks for them.

The detector (detection.raster_pair) takes any `RasterLike`: an array, or an object that
returns arrays for row/column slices. `WindowedRaster.array` is such an object, so memory is
bounded by the detector's tiles and its whole-grid score and mask, not by the image.
"""

from __future__ import annotations

import warnings
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window

from detection.errors import InvalidRasterError
from detection.io.planar import StoredRaster, read_geotiff_planar
from detection.io.raster import (
    Raster,
    ReadLimits,
    _band_roles,
    _check_declared_size,
    _crs_string,
    _describe_refused_content,
    _refuse_unknown_format,
    read_raster,
)

#: Decoded size up to which a GeoTIFF is read window by window (the detector then keeps a
#: float16 score and a bool mask of the whole grid: 3 bytes a pixel).
MAX_WINDOWED_BYTES = 16 * 1024**3
#: Rows decoded at a time when a strided (sampling) read spans the image.
STRIP_ROWS = 512
#: Smallest GDAL block cache a read is given (see `WindowedArray.read`).
MIN_BLOCK_CACHE_BYTES = 64 * 1024**2


@dataclass(frozen=True, eq=False)
class WindowedArray:
    """The pixels of a GeoTIFF as a lazy (rows, cols, bands) float32 array.

    Indexing with two slices (steps allowed) reads just that part of the file; invalid
    pixels hold 0, as in `Raster.array`.
    """

    path: Path
    shape: tuple[int, int, int]
    floating: bool
    declared_nodata: bool

    @property
    def dtype(self) -> Any:
        return np.dtype(np.float32)

    @property
    def has_nodata(self) -> bool:
        """Whether any pixel can be nodata (a declared nodata value, or NaN/inf samples)."""
        return self.floating or self.declared_nodata

    def __getitem__(self, key: Any) -> np.ndarray:
        return self.read(key)[0]

    def read(self, key: Any) -> tuple[np.ndarray, np.ndarray]:
        """(pixels, nodata) of `key`: float32 (rows, cols, bands) and bool (rows, cols)."""
        rows, cols = (part.indices(size) for part, size in zip(key, self.shape, strict=False))
        try:
            with self._block_cache(rows, cols), rasterio.open(self.path, driver="GTiff") as src:
                parts = [
                    self._read_block(src, rows, cols, top, bottom) for top, bottom in _strips(rows)
                ]
        except RasterioError as error:
            raise InvalidRasterError(
                f"{self.path.name} could not be decoded ({error}); the file is truncated or "
                "corrupt: copy the complete file again"
            ) from error
        if not parts:
            return (
                np.zeros((0, len(range(*cols)), self.shape[2]), dtype=np.float32),
                np.zeros((0, len(range(*cols))), dtype=bool),
            )
        pixels = np.concatenate([p for p, _ in parts]) if len(parts) > 1 else parts[0][0]
        nodata = np.concatenate([n for _, n in parts]) if len(parts) > 1 else parts[0][1]
        return pixels, nodata

    def _block_cache(
        self, rows: tuple[int, int, int], cols: tuple[int, int, int]
    ) -> AbstractContextManager[object]:
        """GDAL's block cache for a sampling read: the blocks under a strip, twice over
        (sized at float32, at least the stored samples' width).

        A strided read decodes every block it spans once, so a larger cache only holds
        memory: at GDAL's default (5 % of RAM) a sampling read of a 20000² image held 1.2 GB
        of blocks until it closed the file. The cache size is process-wide, so a plain
        window (the detector's tiles, read side by side on threads, a few blocks each) leaves
        it alone.
        """
        if rows[2] == 1 and cols[2] == 1:
            return nullcontext()
        width = max(cols[1] - cols[0], 1)
        strip = STRIP_ROWS * width * self.shape[2] * np.dtype(np.float32).itemsize
        return rasterio.Env(GDAL_CACHEMAX=max(MIN_BLOCK_CACHE_BYTES, 2 * strip))

    def _read_block(
        self,
        src: rasterio.DatasetReader,
        rows: tuple[int, int, int],
        cols: tuple[int, int, int],
        top: int,
        bottom: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        col_start, col_stop, col_step = cols
        col_stop = max(col_stop, col_start)
        window = Window(col_start, top, col_stop - col_start, bottom - top)
        take = (slice(None, None, rows[2]), slice(None, None, col_step))
        stored = src.read(window=window)[:, take[0], take[1]]
        pixels = np.moveaxis(stored, 0, -1).astype(np.float32, order="C")
        if self.floating:
            nodata = ~np.isfinite(pixels).all(axis=2)
        else:
            nodata = np.zeros(pixels.shape[:2], dtype=bool)
        if self.declared_nodata:
            masks = src.read_masks(window=window)[:, take[0], take[1]]
            nodata |= (masks == 0).any(axis=0)
        if nodata.any():
            pixels[nodata] = 0.0
        return pixels, nodata


def _strips(rows: tuple[int, int, int]) -> list[tuple[int, int]]:
    """Row spans to decode for rows start:stop:step; each span starts on a sampled row."""
    start, stop, step = rows
    if stop <= start:
        return []
    if step == 1:
        return [(start, stop)]
    per_strip = max(1, STRIP_ROWS // step)
    spans = []
    for first in range(start, stop, per_strip * step):
        last = min(first + (per_strip - 1) * step, stop - 1)
        spans.append((first, last + 1))
    return spans


@dataclass(frozen=True, eq=False)
class NodataWindows:
    """Lazy (rows, cols) bool: True where `pixels` has no data."""

    pixels: WindowedArray

    @property
    def shape(self) -> tuple[int, ...]:
        return self.pixels.shape[:2]

    @property
    def dtype(self) -> Any:
        return np.dtype(bool)

    def __getitem__(self, key: Any) -> np.ndarray:
        return self.pixels.read(key)[1]


@dataclass(frozen=True, eq=False)
class WindowedRaster:
    """A large GeoTIFF opened for windowed reading; the lazy counterpart of `Raster`.

    Attributes
    ----------
    array : WindowedArray
        The pixels, read on indexing.
    nodata : NodataWindows or None
        Lazy nodata mask; None when no pixel can be nodata (integer samples, no nodata value).
    transform, crs, band_roles, source_dtype
        As in `Raster`.
    """

    array: WindowedArray
    nodata: NodataWindows | None
    transform: Affine | None
    crs: str | None
    band_roles: tuple[str | None, ...]
    source_dtype: str

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of the raster."""
        return self.array.shape[0], self.array.shape[1]


def open_raster(
    path: str | Path,
    *,
    limits: ReadLimits | None = None,
    windowed: bool | None = None,
    planar: bool = False,
) -> Raster | StoredRaster | WindowedRaster:
    """`read_raster` for what fits its in-memory limit; a larger GeoTIFF is opened for
    window-by-window reading instead, up to `MAX_WINDOWED_BYTES` of decoded samples.

    `windowed=True` opens any GeoTIFF window by window (e.g. the cloud mask of a windowed
    image), `False` always reads whole. `planar=True` keeps a GeoTIFF read whole as stored
    (a `StoredRaster`: half the memory of float32 for 16-bit data, converted per window).

    Raises
    ------
    InvalidRasterError
        As `read_raster`; for a large GeoTIFF, a declared size over `MAX_WINDOWED_BYTES` or
        a likely decompression bomb (checked before any pixel is decoded).
    """
    path = Path(path)
    limits = limits or ReadLimits()
    if windowed is False or _refuse_unknown_format(path) != "GTiff" or not path.is_file():
        return read_raster(path, limits=limits)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            src = rasterio.open(path, driver="GTiff")
    except RasterioError as error:
        raise InvalidRasterError(_describe_refused_content(path, "GTiff")) from error
    with src:
        itemsize = max(np.dtype(dtype).itemsize for dtype in src.dtypes)
        fits = src.width * src.height * src.count * itemsize <= limits.max_decoded_bytes
        if fits and not windowed:
            if planar:
                return read_geotiff_planar(path, limits=limits)
            return read_raster(path, limits=limits)
        _check_declared_size(path, src, _windowed_limits(limits))
        pixels = WindowedArray(
            path=path,
            shape=(src.height, src.width, src.count),
            floating=np.issubdtype(np.dtype(src.dtypes[0]), np.floating),
            declared_nodata=src.nodata is not None,
        )
        georeferenced = src.crs is not None or src.transform != Affine.identity()
        return WindowedRaster(
            array=pixels,
            nodata=NodataWindows(pixels) if pixels.has_nodata else None,
            transform=src.transform if georeferenced else None,
            crs=_crs_string(src),
            band_roles=_band_roles(src),
            source_dtype=str(src.dtypes[0]),
        )


def _windowed_limits(limits: ReadLimits) -> ReadLimits:
    return ReadLimits(
        max_decoded_bytes=max(MAX_WINDOWED_BYTES, limits.max_decoded_bytes),
        max_compression_ratio=limits.max_compression_ratio,
        ratio_floor_bytes=limits.ratio_floor_bytes,
    )


@dataclass(frozen=True, eq=False)
class ValidWindows:
    """Lazy (rows, cols) bool: the image has data and the cloud mask (if any) is 0."""

    image: WindowedRaster
    cloud: WindowedArray | None

    @property
    def shape(self) -> tuple[int, ...]:
        return self.image.shape

    @property
    def dtype(self) -> Any:
        return np.dtype(bool)

    def __getitem__(self, key: Any) -> np.ndarray:
        rows, cols = (len(range(*p.indices(s))) for p, s in zip(key, self.shape, strict=True))
        valid = np.ones((rows, cols), dtype=bool)
        if self.image.nodata is not None:
            valid &= ~self.image.nodata[key]
        if self.cloud is not None:
            valid &= self.cloud[key][:, :, 0] == 0
        return valid
