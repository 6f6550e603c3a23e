"""Hardened reading of untrusted rasters and images into a `Raster`, and writing of change masks."""

from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image
from rasterio.enums import ColorInterp, Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.transform import Affine
from rasterio.warp import reproject

from detection.errors import InvalidRasterError
from detection.io.bands import band_role_from_name, band_role_from_wavelength

#: The only formats we let near untrusted bytes, chosen from the file name's suffix.
#: GDAL picks a driver from the content, so opening with exactly one driver is what stops
#: a VRT (XML that can point at any file on the server) from being read as "x.tif".
DRIVER_BY_SUFFIX: dict[str, str] = {
    ".tif": "GTiff",
    ".tiff": "GTiff",
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".bmp": "BMP",
    ".img": "ENVI",
    ".dat": "ENVI",
    ".bin": "ENVI",
}

#: Image formats decoded by Pillow rather than GDAL: GDAL's PNG driver returns a truncated
#: file's missing rows as zeros without an error, Pillow refuses it.
PILLOW_FORMAT_BY_DRIVER: dict[str, str] = {"PNG": "PNG", "JPEG": "JPEG", "BMP": "BMP"}

_ROLES_BY_PILLOW_MODE: dict[str, tuple[str | None, ...]] = {
    "RGB": ("red", "green", "blue"),
    "RGBA": ("red", "green", "blue", "alpha"),
    "LA": (None, "alpha"),
}

_ROLE_BY_COLORINTERP = {
    ColorInterp.red: "red",
    ColorInterp.green: "green",
    ColorInterp.blue: "blue",
    ColorInterp.alpha: "alpha",
}


@dataclass(frozen=True)
class ReadLimits:
    """What a single read may cost before any pixel is decoded.

    Attributes
    ----------
    max_decoded_bytes : int
        Upper bound on width × height × bands × bytes per sample, in bytes.
    max_compression_ratio : float
        Upper bound on decoded size / file size, checked only for rasters larger than
        `ratio_floor_bytes` (tiny masks of zeros compress legitimately by large factors).
    ratio_floor_bytes : int
        Decoded size in bytes below which the compression ratio is not checked.
    """

    max_decoded_bytes: int = 2 * 1024**3
    max_compression_ratio: float = 1000.0
    ratio_floor_bytes: int = 64 * 1024**2


@dataclass(frozen=True, eq=False)
class Raster:
    """A raster read from a file, with its georeferencing and per-pixel validity.

    Attributes
    ----------
    array : ndarray of shape (rows, cols, bands), float32
        Sample values as stored (no scaling); invalid pixels hold 0.
    nodata : ndarray of shape (rows, cols), bool
        True where any band is the declared nodata value, NaN or infinite.
    transform : Affine or None
        Pixel-to-map transform; None when the file is not georeferenced.
    crs : str or None
        The CRS as "EPSG:<code>" when it has one, else as WKT; None when absent.
    band_roles : tuple of str or None, length bands
        "blue", "green", "red", "nir", ... where the file says so, else None.
    source_dtype : str
        The data type stored in the file, e.g. "uint8", "uint16".
    """

    array: np.ndarray
    nodata: np.ndarray
    transform: Affine | None
    crs: str | None
    band_roles: tuple[str | None, ...]
    source_dtype: str

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of the raster."""
        return (int(self.array.shape[0]), int(self.array.shape[1]))


def _refuse_unknown_format(path: Path) -> str:
    driver = DRIVER_BY_SUFFIX.get(path.suffix.lower())
    if driver is None:
        allowed = ", ".join(sorted(DRIVER_BY_SUFFIX))
        raise InvalidRasterError(
            f"{path.name}: unsupported file type {path.suffix!r}; "
            f"convert it to GeoTIFF or use one of {allowed}"
        )
    return driver


def _describe_refused_content(path: Path, driver: str) -> str:
    head = path.read_bytes()[:512] if path.is_file() else b""
    if b"<VRTDataset" in head:
        return (
            f"{path.name} is a GDAL VRT (XML) file, not a {driver} file; "
            "VRTs can read other files on the server and are refused: send the pixels themselves"
        )
    return (
        f"{path.name} is not a readable {driver} file (wrong content for its "
        f"{path.suffix} suffix, or damaged); re-export it as {driver}"
    )


def _check_size(
    path: Path, width: int, height: int, count: int, itemsize: int, on_disk: int, limits: ReadLimits
) -> None:
    declared = width * height * count * itemsize
    size = f"{width} × {height} pixels × {count} bands × {itemsize} bytes"
    if declared > limits.max_decoded_bytes:
        raise InvalidRasterError(
            f"{path.name} declares {size} = {declared / 1024**3:.1f} GiB, more than the "
            f"{limits.max_decoded_bytes / 1024**3:.1f} GiB limit; cut it into tiles first"
        )
    on_disk = max(on_disk, 1)
    if declared > limits.ratio_floor_bytes and declared / on_disk > limits.max_compression_ratio:
        raise InvalidRasterError(
            f"{path.name} declares {size} in only {on_disk} bytes on disk "
            f"(ratio {declared / on_disk:.0f} > {limits.max_compression_ratio:.0f}): "
            "refused as a likely decompression bomb"
        )


def _check_declared_size(path: Path, src: rasterio.DatasetReader, limits: ReadLimits) -> None:
    itemsize = max(np.dtype(dtype).itemsize for dtype in src.dtypes)
    on_disk = sum(Path(name).stat().st_size for name in src.files)
    _check_size(path, src.width, src.height, src.count, itemsize, on_disk, limits)


def _check_raw_length(path: Path, src: rasterio.DatasetReader) -> None:
    # GDAL's raw drivers read past the end of a short file as zeros instead of failing.
    if src.driver != "ENVI":
        return
    itemsize = np.dtype(src.dtypes[0]).itemsize
    expected = src.width * src.height * src.count * itemsize
    actual = path.stat().st_size
    if actual < expected:
        raise InvalidRasterError(
            f"{path.name} is truncated: its header declares {expected} bytes of pixels "
            f"but the file holds {actual}; copy the complete file again"
        )


def _band_roles(src: rasterio.DatasetReader) -> tuple[str | None, ...]:
    roles: list[str | None] = []
    for index, description in enumerate(src.descriptions, start=1):
        role = band_role_from_name(description)
        if role is None:
            wavelength = src.tags(index).get("wavelength")
            if wavelength and src.tags(index).get("wavelength_units", "").lower().startswith(
                "micro"
            ):
                role = band_role_from_wavelength(float(wavelength))
        if role is None:
            role = _ROLE_BY_COLORINTERP.get(src.colorinterp[index - 1])
        roles.append(role)
    return tuple(roles)


def _crs_string(src: rasterio.DatasetReader) -> str | None:
    if src.crs is None:
        return None
    epsg = src.crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else str(src.crs.to_wkt())


def _read_pixels(path: Path, src: rasterio.DatasetReader) -> tuple[np.ndarray, np.ndarray]:
    try:
        stored = src.read()
        declared_nodata = src.read_masks() == 0 if src.nodata is not None else None
    except RasterioError as error:
        raise InvalidRasterError(
            f"{path.name} could not be decoded ({error}); the file is truncated or "
            "corrupt: copy the complete file again"
        ) from error
    # One conversion straight into pixel-interleaved order: no second full-size float32 copy.
    array = np.moveaxis(stored, 0, -1).astype(np.float32, order="C")
    if np.issubdtype(stored.dtype, np.integer):  # integer samples are always finite
        nodata = np.zeros(array.shape[:2], dtype=bool)
    else:
        nodata = ~np.isfinite(array).all(axis=2)
    del stored
    if declared_nodata is not None:
        nodata |= declared_nodata.any(axis=0)
    if nodata.any():
        array[nodata] = 0.0
    return array, nodata


def _read_with_pillow(path: Path, driver: str, limits: ReadLimits) -> Raster:
    try:
        image = Image.open(path, formats=[PILLOW_FORMAT_BY_DRIVER[driver]])
    except Image.DecompressionBombError as error:
        raise InvalidRasterError(
            f"{path.name} declares an image too large to decode safely ({error}); "
            "cut it into tiles first"
        ) from error
    except OSError as error:
        raise InvalidRasterError(_describe_refused_content(path, driver)) from error
    with image:
        count = len(image.getbands())
        itemsize = 2 if image.mode.startswith("I;16") else 4 if image.mode in ("I", "F") else 1
        width, height = image.size
        _check_size(path, width, height, count, itemsize, path.stat().st_size, limits)
        try:
            with warnings.catch_warnings():
                # Our own limit above is the one that applies.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                stored = np.asarray(image)
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            raise InvalidRasterError(
                f"{path.name} could not be decoded ({error}); the file is truncated or "
                "corrupt: copy the complete file again"
            ) from error
        roles = _ROLES_BY_PILLOW_MODE.get(image.mode, (None,) * count)
    array = stored.reshape(height, width, count).astype(np.float32)
    return Raster(
        array=array,
        nodata=np.zeros((height, width), dtype=bool),
        transform=None,
        crs=None,
        band_roles=roles,
        source_dtype=str(stored.dtype),
    )


def read_raster(path: str | os.PathLike[str], *, limits: ReadLimits | None = None) -> Raster:
    """Read an untrusted raster or image file safely.

    The decoder comes from an allow-list keyed by the file suffix: GDAL restricted to one
    driver for GeoTIFF/COG and ENVI, Pillow restricted to one format for PNG, JPEG and BMP
    (plain images carry no georeferencing here). The declared size is checked before any
    pixel is decoded.

    Parameters
    ----------
    path : path-like
        The file; for ENVI, the binary file next to its ``.hdr``.
    limits : ReadLimits, optional
        Size limits; defaults to ``ReadLimits()``.

    Returns
    -------
    Raster
        Pixels as float32 of shape (rows, cols, bands) with a nodata mask of shape (rows, cols).

    Raises
    ------
    InvalidRasterError
        Unsupported or disguised format, declared size over the limit, truncated or
        corrupt content. The message says which and what to do.
    """
    path = Path(path)
    limits = limits or ReadLimits()
    driver = _refuse_unknown_format(path)
    if not path.is_file():
        raise InvalidRasterError(f"{path} does not exist or is not a file; check the path")
    if driver in PILLOW_FORMAT_BY_DRIVER:
        return _read_with_pillow(path, driver, limits)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            src = rasterio.open(path, driver=driver)
    except RasterioError as error:
        raise InvalidRasterError(_describe_refused_content(path, driver)) from error
    with src:
        _check_declared_size(path, src, limits)
        _check_raw_length(path, src)
        array, nodata = _read_pixels(path, src)
        georeferenced = src.crs is not None or src.transform != Affine.identity()
        return Raster(
            array=array,
            nodata=nodata,
            transform=src.transform if georeferenced else None,
            crs=_crs_string(src),
            band_roles=_band_roles(src),
            source_dtype=str(src.dtypes[0]),
        )


def reproject_onto(raster: Raster, like: Raster) -> Raster:
    """Resample `raster` onto the pixel grid of `like` (bilinear), marking uncovered pixels.

    Both must be georeferenced. Used where one date of a pair has a slightly different
    pixel size over the same extent (OSCD).
    """
    if raster.transform is None or like.transform is None:
        raise InvalidRasterError(
            f"cannot align rasters of shapes {raster.shape} and {like.shape}: "
            "at least one has no georeferencing; supply both dates on the same pixel grid"
        )
    rows, cols = like.shape
    bands = raster.array.shape[2]
    source = np.moveaxis(raster.array, -1, 0)
    target = np.zeros((bands, rows, cols), dtype=np.float32)
    coverage = np.zeros((rows, cols), dtype=np.float32)
    crs_of_source = raster.crs or like.crs
    crs_of_target = like.crs or raster.crs
    common = {
        "src_transform": raster.transform,
        "dst_transform": like.transform,
        "src_crs": crs_of_source,
        "dst_crs": crs_of_target,
        "resampling": Resampling.bilinear,
    }
    reproject(source, target, src_nodata=None, dst_nodata=0, **common)
    valid_source = (~raster.nodata).astype(np.float32)
    reproject(valid_source, coverage, src_nodata=None, dst_nodata=0, **common)
    return Raster(
        array=np.ascontiguousarray(np.moveaxis(target, 0, -1)),
        nodata=coverage < 0.5,
        transform=like.transform,
        crs=crs_of_target,
        band_roles=raster.band_roles,
        source_dtype=raster.source_dtype,
    )


def write_mask_png(path: str | os.PathLike[str], mask: np.ndarray) -> None:
    """Write a change mask as an 8-bit PNG (255 = change, 0 = no change), atomically.

    Parameters
    ----------
    path : path-like
        Destination; parent folders are created.
    mask : ndarray of shape (rows, cols), bool
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.where(mask, 255, 0).astype(np.uint8)
    # Write beside the target, then rename, so a reader never sees half a file.
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".png")
    os.close(handle)
    try:
        Image.fromarray(pixels).save(temporary, format="PNG")
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
