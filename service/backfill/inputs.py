"""The scenes a backfill reads: a folder of GeoTIFFs/COGs or a STAC catalog / item collection.

Each usable file becomes a `SceneFile` (where, when, on which grid); each unusable one an
`InputProblem` with the reason, so that one bad file never stops the rest.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pystac
import rasterio
import shapely
from rasterio.errors import RasterioError
from rasterio.warp import transform_bounds
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from service.spatial import area_m2

TIFF_SUFFIXES = (".tif", ".tiff")
MIN_BANDS = 3  # blue, green, red at least; single-band files are masks, not scenes
# A date in a file name: 2025-03-14, 20250314 or 2025_03_14.
_NAME_DATE = re.compile(r"(?<!\d)(\d{4})[-_]?(\d{2})[-_]?(\d{2})(?!\d)")
_DATE_TAGS = ("acquired_at", "datetime", "date", "TIFFTAG_DATETIME")


@dataclass(frozen=True)
class InputProblem:
    """An input left out (or used in a changed way), and why: reported in the summary."""

    input: str
    reason: str
    action: str = "skipped"  # or "reprojected"

    def as_json(self) -> dict[str, str]:
        return {"input": self.input, "reason": self.reason, "action": self.action}


@dataclass(frozen=True)
class SceneFile:
    """One dated raster on disk, with its grid; `footprint` is lon/lat."""

    path: Path
    acquired_at: datetime
    crs: str
    width: int
    height: int
    bands: tuple[str, ...]
    footprint: BaseGeometry
    resolution_m: float  # ground size of one pixel, metres (from the footprint's area)
    sensor: str = ""
    label: str = ""  # the STAC item id or file name, for messages

    @property
    def pixels(self) -> int:
        return self.width * self.height


def find_scenes(source: str, *, area_crs: str) -> tuple[list[SceneFile], list[InputProblem]]:
    """Every scene of `source` (a folder, or a STAC JSON file), and the inputs that failed."""
    path = Path(source)
    if path.is_dir():
        return _gather(_folder_entries(path), area_crs)
    if path.is_file() and path.suffix.lower() == ".json":
        return _gather(_stac_entries(path), area_crs)
    raise FileNotFoundError(
        f"{source} is neither a folder of GeoTIFFs nor a STAC catalog / item collection "
        "(.json): give one of those"
    )


@dataclass(frozen=True)
class _Entry:
    label: str
    path: Path | None
    acquired_at: datetime | None
    sensor: str = ""
    problem: str | None = None


def _gather(entries: Iterable[_Entry], area_crs: str) -> tuple[list[SceneFile], list[InputProblem]]:
    scenes, problems = [], []
    for entry in entries:
        if entry.problem is not None or entry.path is None:
            problems.append(InputProblem(entry.label, entry.problem or "no file"))
            continue
        try:
            scenes.append(_scene_file(entry, area_crs))
        except _Unusable as error:
            problems.append(InputProblem(entry.label, str(error)))
    return scenes, problems


class _Unusable(Exception):
    pass


def _folder_entries(folder: Path) -> Iterable[_Entry]:
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in TIFF_SUFFIXES and path.is_file():
            yield _Entry(str(path), path, _sidecar_date(path))


def _sidecar_date(path: Path) -> datetime | None:
    """The datetime of a STAC-like sidecar `<name>.json` next to the file, if there is one."""
    sidecar = path.with_suffix(".json")
    if not sidecar.is_file():
        return None
    try:
        document = json.loads(sidecar.read_text(encoding="utf-8"))
        return _parse_time(str(document.get("properties", document)["datetime"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _stac_entries(path: Path) -> Iterable[_Entry]:
    document = json.loads(path.read_text(encoding="utf-8"))
    if document.get("type") == "FeatureCollection":
        items: Iterable[pystac.Item] = pystac.ItemCollection.from_file(str(path))
    else:
        items = pystac.Catalog.from_file(str(path)).get_items(recursive=True)
    for item in items:
        yield _item_entry(item)


def _item_entry(item: pystac.Item) -> _Entry:
    label = f"STAC item {item.id}"
    asset = _data_asset(item)
    if asset is None:
        return _Entry(label, None, None, problem="it has no GeoTIFF data asset")
    href = asset.get_absolute_href() or asset.href
    local = Path(href.removeprefix("file://"))
    if not local.is_file():
        return _Entry(label, None, None, problem=f"its asset file {href} does not exist")
    sensors = item.properties.get("instruments") or []
    return _Entry(label, local, item.datetime, sensor=", ".join(map(str, sensors)))


def _data_asset(item: pystac.Item) -> pystac.Asset | None:
    assets = item.get_assets()
    for key in ("data", "visual", "image"):
        if key in assets:
            return assets[key]
    for asset in assets.values():
        if "data" in (asset.roles or []) or "tiff" in (asset.media_type or ""):
            return asset
    return None


def _scene_file(entry: _Entry, area_crs: str) -> SceneFile:
    assert entry.path is not None
    try:
        # Operator files, still opened as GeoTIFF only: GDAL would read a VRT named .tif.
        with rasterio.open(entry.path, driver="GTiff") as source:
            header = _header(source)
    except RasterioError as error:
        raise _Unusable(f"cannot be read as a GeoTIFF ({error})") from error
    acquired_at = entry.acquired_at or header.pop("tag_time") or _name_date(entry.path)
    if acquired_at is None:
        raise _Unusable(
            "its acquisition date is unknown: add a `date` TIFF tag, a STAC sidecar "
            "(<name>.json with properties.datetime) or a date in the file name"
        )
    header.pop("tag_time", None)
    footprint = header.pop("footprint")
    pixels = header["width"] * header["height"]
    return SceneFile(
        path=entry.path.resolve(),
        acquired_at=acquired_at.astimezone(UTC),
        footprint=footprint,
        resolution_m=math.sqrt(area_m2(footprint, area_crs) / pixels),
        sensor=entry.sensor,
        label=entry.label,
        **header,
    )


def _header(source: Any) -> dict[str, Any]:
    if source.count < MIN_BANDS:
        raise _Unusable(
            f"it has {source.count} band(s): a scene needs at least blue, green and red "
            "(cloud masks belong in an alpha band)"
        )
    if source.crs is None or source.transform.is_identity:
        raise _Unusable("it has no CRS or geotransform: georeference it first")
    epsg = source.crs.to_epsg()
    if epsg is None:
        raise _Unusable("its CRS has no EPSG code: reproject it to an EPSG CRS")
    transform = source.transform
    if transform.b != 0 or transform.d != 0:
        raise _Unusable("its geotransform is rotated or sheared: warp it north-up")
    bounds = transform_bounds(source.crs, "EPSG:4326", *source.bounds)
    return {
        "crs": f"EPSG:{epsg}",
        "width": source.width,
        "height": source.height,
        "bands": tuple(d or f"band{i + 1}" for i, d in enumerate(source.descriptions)),
        "footprint": shapely.box(*bounds),
        "tag_time": _tag_time(source.tags()),
    }


def _tag_time(tags: dict[str, str]) -> datetime | None:
    for key in _DATE_TAGS:
        if key in tags:
            try:
                return _parse_time(tags[key])
            except ValueError:
                continue
    return None


def _parse_time(text: str) -> datetime:
    text = text.strip()
    if re.fullmatch(r"\d{4}:\d{2}:\d{2} \d{2}:\d{2}:\d{2}", text):  # TIFF's own format
        return datetime.strptime(text, "%Y:%m:%d %H:%M:%S").replace(tzinfo=UTC)
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _name_date(path: Path) -> datetime | None:
    match = _NAME_DATE.search(path.stem)
    if match is None:
        return None
    try:
        year, month, day = (int(part) for part in match.groups())
        return datetime(year, month, day, tzinfo=UTC)
    except ValueError:
        return None


def read_area(path: Path) -> BaseGeometry:
    """The area of interest: the union of the geometries of a GeoJSON file (lon/lat)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read the area {path}: {error}; give a GeoJSON file") from error
    if document.get("type") == "FeatureCollection":
        geoms = [shape(feature["geometry"]) for feature in document["features"]]
    elif document.get("type") == "Feature":
        geoms = [shape(document["geometry"])]
    else:
        geoms = [shape(document)]
    area = shapely.make_valid(shapely.union_all(geoms))
    if area.is_empty or area.area == 0:
        raise ValueError(f"the area in {path} is empty: give polygons (lon/lat, RFC 7946)")
    return area
