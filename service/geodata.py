"""Reading vector files for the importers: accepted formats, CRS to lon/lat, geometry repair.

Files are read with pyogrio in batches of features, so a large file never sits in memory whole.
Every geometry comes out in EPSG:4326 (x = longitude, y = latitude), valid and polygonal.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio
import shapely
from pyogrio import raw
from pyogrio.errors import DataLayerError, DataSourceError
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError
from shapely.geometry import MultiPolygon, Polygon

from service.errors import InvalidInputError
from service.spatial import POLYGONAL, polygonal_part

# GDAL picks the driver from the content, not the name; anything else (CSV, VRT, ...) is refused.
DRIVER_FORMATS = {"GeoJSON": "GeoJSON", "GPKG": "GeoPackage", "ESRI Shapefile": "Shapefile"}
# Files a Shapefile is made of; all of them feed its checksum.
SHAPEFILE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg")
WGS84 = CRS.from_epsg(4326)
# Degrees a feature may lie beyond its CRS's area of use (UTM zones are used past their edges).
AREA_OF_USE_MARGIN = 5.0
# With pyarrow, GDAL streams the file in one pass; without it, batches skip ahead (slower).
ARROW_STREAM = importlib.util.find_spec("pyarrow") is not None
# (fids, WKB geometries, properties) of one batch of features, as read.
RawBatch = tuple[list[int], list[bytes | None], list[dict[str, Any]]]
CONVERT_HINT = "export it again as GeoJSON, GeoPackage or Shapefile (e.g. with ogr2ogr or QGIS)"


class GeodataError(InvalidInputError):
    """A vector file that cannot be imported; the message names the file, feature and remedy."""


@dataclass(frozen=True)
class VectorSource:
    """An opened, checked vector file: one layer of polygons with a known CRS."""

    path: Path
    driver: str
    layer: str
    crs: CRS
    feature_count: int
    fields: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class SourceFeature:
    """One feature of a file, its geometry valid, polygonal and in lon/lat."""

    index: int  # 0-based position in the file
    fid: int  # the file's own feature id (GeoJSON "id", GeoPackage fid, Shapefile record)
    properties: dict[str, Any]
    geom: Polygon | MultiPolygon
    repaired: bool

    @property
    def label(self) -> str:
        return f"feature #{self.index} (fid {self.fid})"


def open_vector(path: Path, *, layer: str | None = None) -> VectorSource:
    """Check that `path` is a polygon layer in an accepted format with a usable CRS."""
    path = Path(path)
    if not path.is_file():
        raise GeodataError(f"{path}: no such file; check the path")
    try:
        layers = pyogrio.list_layers(path)
        layer = _choose_layer(path, layers, layer)
        info = pyogrio.read_info(path, layer=layer, force_feature_count=True)
    except (DataSourceError, DataLayerError) as error:
        raise GeodataError(
            f"{path.name} cannot be read as a vector file ({_reason(path, error)}): it may be "
            f"damaged, truncated or not geodata at all; {CONVERT_HINT}"
        ) from error
    driver = str(info["driver"])
    if driver not in DRIVER_FORMATS:
        raise GeodataError(
            f"{path.name} was read as {driver}, which is not an accepted format; {CONVERT_HINT}"
        )
    if info["geometry_type"] is None:
        raise GeodataError(
            f"{path.name}: layer {layer!r} is a table without geometry; "
            "import a layer that has polygon geometries"
        )
    if int(info["features"]) == 0:
        raise GeodataError(f"{path.name} contains no features; check that the export is complete")
    return VectorSource(
        path=path,
        driver=driver,
        layer=str(layer),
        crs=_source_crs(path, driver, info["crs"]),
        feature_count=int(info["features"]),
        fields=tuple(str(name) for name in info["fields"]),
    )


def _reason(path: Path, error: Exception) -> str:
    # GDAL's text repeats the server path and suggests driver prefixes: keep only the gist.
    text = str(error)
    if "not recognized as" in text:
        return "its content is not recognised as any vector format"
    return text.split(";")[0].replace(str(path), path.name).strip()


def _choose_layer(path: Path, layers: np.ndarray, wanted: str | None) -> str:
    names = [str(name) for name, _ in layers]
    if wanted is not None:
        if wanted not in names:
            raise GeodataError(f"{path.name} has no layer {wanted!r}; its layers are {names}")
        return wanted
    if not names:
        raise GeodataError(f"{path.name} contains no layers; {CONVERT_HINT}")
    with_geometry = [str(name) for name, kind in layers if kind is not None]
    if len(names) == 1 or len(with_geometry) == 1:
        return with_geometry[0] if with_geometry else names[0]
    raise GeodataError(
        f"{path.name} has several layers with geometry {with_geometry}; "
        "name the one to import (--source-layer)"
    )


def _source_crs(path: Path, driver: str, crs_text: str | None) -> CRS:
    if crs_text is None:
        if driver == "GeoJSON":
            return WGS84  # RFC 7946: GeoJSON is always lon/lat on WGS 84
        hint = " (the .prj file is missing)" if driver == "ESRI Shapefile" else ""
        raise GeodataError(
            f"{path.name} has no coordinate reference system{hint}; assign the CRS it was made "
            "in, e.g. `ogr2ogr -a_srs EPSG:4549 fixed.gpkg <file>`, and import again"
        )
    try:
        # GDAL reports "EPSG:<code>" when it can, else WKT; never a URL or free text.
        if crs_text.upper().startswith("EPSG:") and crs_text[5:].isdigit():
            return CRS.from_epsg(int(crs_text[5:]))
        return CRS.from_wkt(crs_text)
    except CRSError as error:
        raise GeodataError(
            f"{path.name}: its coordinate reference system is not understood ({error}); "
            "re-export it with an EPSG code"
        ) from error


@lru_cache(maxsize=16)
def _to_lonlat(crs_wkt: str) -> Transformer:
    # A Transformer costs ~100 ms to build: one per source CRS per process.
    return Transformer.from_crs(CRS.from_wkt(crs_wkt), WGS84, always_xy=True)


def to_lonlat(geoms: np.ndarray, crs: CRS) -> np.ndarray:
    """`geoms` (array of shapely geometries in `crs`) in EPSG:4326, x = lon, y = lat."""
    if crs.equals(WGS84, ignore_axis_order=True):
        return geoms
    transformer = _to_lonlat(crs.to_wkt())
    return shapely.transform(geoms, transformer.transform, interleaved=False)


def iter_features(
    source: VectorSource, *, batch_size: int = 5_000
) -> Iterator[list[SourceFeature]]:
    """The features of `source`, `batch_size` at a time, checked, repaired and in lon/lat."""
    start = 0
    batches = _arrow_batches if ARROW_STREAM else _skipping_batches
    for fids, wkb, properties in batches(source, batch_size):
        yield _features(source, start, fids, wkb, properties)
        start += len(wkb)


def _arrow_batches(source: VectorSource, batch_size: int) -> Iterator[RawBatch]:
    # One pass over the file; memory stays at about one batch whatever the file size.
    with (
        _read_errors(source),
        raw.open_arrow(
            source.path,
            layer=source.layer,
            batch_size=batch_size,
            return_fids=True,
            use_pyarrow=True,
            datetime_as_string=True,
        ) as (meta, reader),
    ):
        geometry = meta["geometry_name"] or "wkb_geometry"
        fid = meta["fid_column"] or "OGC_FID"
        for batch in reader:
            columns = [batch.column(name).to_pylist() for name in source.fields]
            yield (
                batch.column(fid).to_pylist(),
                batch.column(geometry).to_pylist(),
                _rows(source.fields, columns, batch.num_rows),
            )


def _skipping_batches(source: VectorSource, batch_size: int) -> Iterator[RawBatch]:
    # Without pyarrow: each batch re-opens the file and skips to its start, so the time grows
    # with the square of the file size (reading a 200 MB GeoJSON: 32 s in 8 batches, 9 s whole).
    start = 0
    while True:
        with _read_errors(source):
            _, fids, wkb, columns = raw.read(
                source.path,
                layer=source.layer,
                skip_features=start,
                max_features=batch_size,
                return_fids=True,
                datetime_as_string=True,
            )
        if len(wkb) == 0:
            return
        yield (
            fids.tolist(),
            list(wkb),
            _rows(source.fields, [c.tolist() for c in columns], len(wkb)),
        )
        start += len(wkb)
        if len(wkb) < batch_size:
            return


@contextmanager
def _read_errors(source: VectorSource) -> Iterator[None]:
    try:
        yield
    except (DataSourceError, DataLayerError, OSError, ValueError) as error:
        raise GeodataError(
            f"{source.name} cannot be read to the end ({_reason(source.path, error)}); "
            "the file may be truncated or damaged, so export it again"
        ) from error


def _rows(fields: Sequence[str], columns: Sequence[list[Any]], count: int) -> list[dict[str, Any]]:
    if not columns:
        return [{} for _ in range(count)]
    return [
        {name: _json_value(value) for name, value in zip(fields, values, strict=True)}
        for values in zip(*columns, strict=True)
    ]


def _json_value(value: Any) -> Any:
    # JSON (and PostgreSQL's JSONB) has no NaN, and bytes must become text.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, bytes):
        return value.hex()
    return value


def _features(
    source: VectorSource,
    start: int,
    fids: list[int],
    wkb: list[bytes | None],
    properties: list[dict[str, Any]],
) -> list[SourceFeature]:
    geoms = shapely.force_2d(shapely.from_wkb(np.asarray(wkb, dtype=object)))
    for offset, geom in enumerate(geoms):
        if geom is None or geom.is_empty:
            _refuse(source, start + offset, fids[offset], "has no geometry; delete it or draw it")
        if not isinstance(geom, POLYGONAL):
            _refuse(
                source,
                start + offset,
                fids[offset],
                f"is a {geom.geom_type}; layers and jurisdictions are polygons, "
                "so buffer lines and points into areas before importing",
            )
    geoms = to_lonlat(geoms, source.crs)
    _check_lonlat(source, start, fids, geoms)
    features = []
    for offset, geom in enumerate(geoms):
        repaired = not geom.is_valid
        if repaired:
            geom = polygonal_part(shapely.make_valid(geom))
            if geom is None:
                _refuse(
                    source,
                    start + offset,
                    fids[offset],
                    "is invalid and nothing of it is left as an area after repair; redraw it",
                )
        features.append(
            SourceFeature(start + offset, int(fids[offset]), properties[offset], geom, repaired)
        )
    return features


def _check_lonlat(source: VectorSource, start: int, fids: list[int], geoms: np.ndarray) -> None:
    bounds = shapely.bounds(geoms)
    west, south, east, north = _plausible_area(source.crs)
    inside = (
        np.isfinite(bounds).all(axis=1)
        & (bounds[:, 0] >= west)
        & (bounds[:, 2] <= east)
        & (bounds[:, 1] >= south)
        & (bounds[:, 3] <= north)
    )
    if inside.all():
        return
    offset = int(np.flatnonzero(~inside)[0])
    x, y = (float(v) for v in bounds[offset, :2])
    _refuse(source, start + offset, fids[offset], _misplaced(source.crs, x, y))


def _plausible_area(crs: CRS) -> tuple[float, float, float, float]:
    """Lon/lat bounds a feature in `crs` may fall in: the CRS's area of use, with a margin."""
    area = crs.area_of_use
    if area is None or area.west > area.east:  # unknown, or across the antimeridian
        return (-180.0, -90.0, 180.0, 90.0)
    return (
        max(-180.0, area.west - AREA_OF_USE_MARGIN),
        max(-90.0, area.south - AREA_OF_USE_MARGIN),
        min(180.0, area.east + AREA_OF_USE_MARGIN),
        min(90.0, area.north + AREA_OF_USE_MARGIN),
    )


def _misplaced(crs: CRS, x: float, y: float) -> str:
    name = crs.to_string()
    where = f"after reprojection from {name} it lies at x={x:.6g}, y={y:.6g}"
    fix_crs = "assign the CRS the file was really made in (e.g. `ogr2ogr -a_srs EPSG:4549 ...`)"
    if not (math.isfinite(x) and math.isfinite(y)):
        return f"cannot be reprojected from {name}: the file's CRS is wrong; {fix_crs}"
    if -180 <= x <= 180 and -90 <= y <= 90:
        return (
            f"falls outside the area where {name} is used ({where}); its easting and northing "
            f"may be swapped, or the CRS is wrong: check the file, or {fix_crs}"
        )
    if crs.is_geographic and -90 <= x <= 90 and -180 <= y <= 180:
        return (
            f"has coordinates outside longitude -180..180 / latitude -90..90 ({where}): "
            "longitude and latitude look swapped; write x as longitude and y as latitude, "
            "as GeoJSON requires, and import again"
        )
    return (
        f"has coordinates outside longitude -180..180 / latitude -90..90 ({where}): these look "
        f"like projected coordinates (metres), not {name}; {fix_crs}"
    )


def _refuse(source: VectorSource, index: int, fid: Any, problem: str) -> None:
    raise GeodataError(f"{source.name}: feature #{index} (fid {fid}) {problem}")


def file_checksum(source: VectorSource) -> str:
    """sha256 of the file (for a Shapefile, of all its parts in a fixed order)."""
    paths = [source.path]
    if source.driver == "ESRI Shapefile":
        paths = [
            source.path.with_suffix(suffix)
            for suffix in SHAPEFILE_PARTS
            if source.path.with_suffix(suffix).is_file()
        ]
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as stream:
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()
