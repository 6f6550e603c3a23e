"""GeoTIFFs decoded whole but kept as stored: band planes in the file's own sample type.

A `Raster` holds float32 pixel-interleaved samples: twice the memory of uint16 data and a
full-image conversion before any work starts. The detector reads its input window by
window anyway (`detection.rs_tiles.RasterLike`), so `PlanarArray` converts each window as
it is asked for, and `StoredRaster` is the `Raster` counterpart that carries it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning, RasterioError

from detection.errors import InvalidRasterError
from detection.io.raster import (
    ReadLimits,
    _band_roles,
    _check_declared_size,
    _crs_string,
    _describe_refused_content,
)


@dataclass(frozen=True, eq=False)
class PlanarArray:
    """Samples as (bands, rows, cols) in their stored type, seen as a lazy (rows, cols,
    bands) float32 array; no-data pixels already hold 0, as in `Raster.array`."""

    stored: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        bands, rows, cols = self.stored.shape
        return rows, cols, bands

    @property
    def dtype(self) -> Any:
        return np.dtype(np.float32)

    @property
    def integer(self) -> bool:
        """Whether the samples are integers (always finite: no NaN/inf check needed)."""
        return bool(np.issubdtype(self.stored.dtype, np.integer))

    def __getitem__(self, key: Any) -> np.ndarray:
        rows, cols = key
        return np.moveaxis(self.stored[:, rows, cols], 0, -1).astype(np.float32, order="C")

    def planes(self, key: tuple[slice, slice]) -> np.ndarray:
        """The window `key` as contiguous float32 band planes (bands, rows, cols), a copy."""
        rows, cols = key
        return np.array(self.stored[:, rows, cols], dtype=np.float32, order="C", copy=True)


@dataclass(frozen=True, eq=False)
class StoredRaster:
    """A GeoTIFF read whole into a `PlanarArray`; otherwise as `Raster`."""

    array: PlanarArray
    nodata: np.ndarray
    transform: Affine | None
    crs: str | None
    band_roles: tuple[str | None, ...]
    source_dtype: str

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of the raster."""
        return self.array.shape[0], self.array.shape[1]


def read_geotiff_planar(path: Path, *, limits: ReadLimits) -> StoredRaster:
    """Read a GeoTIFF whole, keeping its samples as stored (see `read_raster` for the checks).

    Raises
    ------
    InvalidRasterError
        Not a readable GeoTIFF, declared size over `limits`, truncated or corrupt content.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            src = rasterio.open(path, driver="GTiff")
    except RasterioError as error:
        raise InvalidRasterError(_describe_refused_content(path, "GTiff")) from error
    with src:
        _check_declared_size(path, src, limits)
        try:
            stored = src.read()
            declared = src.read_masks() == 0 if src.nodata is not None else None
        except RasterioError as error:
            raise InvalidRasterError(
                f"{path.name} could not be decoded ({error}); the file is truncated or "
                "corrupt: copy the complete file again"
            ) from error
        nodata = np.zeros(stored.shape[1:], dtype=bool)
        if not np.issubdtype(stored.dtype, np.integer):
            nodata = ~np.isfinite(stored).all(axis=0)
        if declared is not None:
            nodata |= declared.any(axis=0)
        if nodata.any():
            stored[:, nodata] = 0
        georeferenced = src.crs is not None or src.transform != Affine.identity()
        return StoredRaster(
            array=PlanarArray(stored),
            nodata=nodata,
            transform=src.transform if georeferenced else None,
            crs=_crs_string(src),
            band_roles=_band_roles(src),
            source_dtype=str(src.dtypes[0]),
        )
