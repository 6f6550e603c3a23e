"""The world: grid, landscape, legal layers, jurisdictions, calendar, events, cameras."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from datetime import date

import numpy as np
import shapely
from affine import Affine
from pyproj import Transformer
from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry

from simulator.calendar import SurfaceState, epoch_dates, parcel_states
from simulator.camera import VIEW_M, Camera, place_cameras
from simulator.events import (
    CULTIVATED_CROPS,
    BenignEvent,
    Violation,
    benign_events,
    place_violations,
)
from simulator.landscape import Landscape, LocalFrame, build_landscape
from simulator.noise import rng_for
from simulator.params import WorldParams

_FIRST = "东西南北新上下前后塘桥湖沙石竹杨梅荷安兴"
_SECOND = "塘桥港溪浜圩湾墩埭庄园"


@dataclass(frozen=True)
class Grid:
    """The tile grid: north-up, square pixels, in a projected CRS (metres)."""

    crs: str
    transform: Affine
    width: int
    height: int
    pixel_size_m: float

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        minx, maxy = self.transform.c, self.transform.f
        return (
            minx,
            maxy - self.height * self.pixel_size_m,
            minx + self.width * self.pixel_size_m,
            maxy,
        )

    @property
    def box(self) -> Polygon:
        return shapely.box(*self.bounds)


@dataclass(frozen=True)
class Feature:
    """A polygon with GeoJSON properties, in the world CRS."""

    properties: dict
    geom: BaseGeometry


@dataclass(frozen=True, eq=False)
class World:
    """Everything generated from `params`, before any image is rendered."""

    params: WorldParams
    grid: Grid
    landscape: Landscape
    dates: tuple[date, ...]
    states: np.ndarray  # (n_parcels, n_epochs) SurfaceState
    cameras: tuple[Camera, ...]
    layers: dict[str, tuple[Feature, ...]]
    townships: tuple[Feature, ...]
    villages: tuple[Feature, ...]
    violations: tuple[Violation, ...]
    benign: tuple[BenignEvent, ...]


@functools.cache
def to_lonlat(crs: str) -> Transformer:
    """A reusable transformer from the world CRS to lon/lat (building one costs ~0.1 s)."""
    return Transformer.from_crs(crs, "EPSG:4326", always_xy=True)


@functools.cache
def from_lonlat(crs: str) -> Transformer:
    return Transformer.from_crs("EPSG:4326", crs, always_xy=True)


def make_grid(params: WorldParams) -> Grid:
    cx, cy = from_lonlat(params.crs).transform(params.center_lon, params.center_lat)
    size = params.pixel_size_m
    pixels = round(params.side_m / size)
    minx = math.floor((cx - params.side_m / 2) / size) * size
    maxy = math.floor((cy + params.side_m / 2) / size) * size
    return Grid(params.crs, Affine(size, 0, minx, 0, -size, maxy), pixels, pixels, size)


def build_world(params: WorldParams) -> World:
    """Generate the world description (vectors, calendar, events, cameras) from the seed."""
    grid = make_grid(params)
    box = grid.box
    land = build_landscape(
        rng_for(params.seed, "landscape"), box, area_km2=params.area_km2, side=params.side_m
    )
    frame = LocalFrame(box.centroid.x, box.centroid.y, land.angle_deg)
    dates = epoch_dates(params.year, params.epochs, params.years)
    roads = [f.geom.intersection(box) for f in land.lines if f.kind in ("field_road", "main_road")]
    roads = [r for r in roads if not r.is_empty and r.geom_type == "LineString"]
    cameras = place_cameras(
        rng_for(params.seed, "cameras"),
        box,
        roads,
        count=params.cameras,
        presets_per_camera=params.presets_per_camera,
        image_size=params.image_size,
    )
    states = parcel_states(land.parcels, dates, rng_for(params.seed, "calendar"))
    _consolidate(rng_for(params.seed, "consolidation"), land, states)
    layers = _layers(rng_for(params.seed, "layers"), land)
    in_view = [
        p.footprint.intersection(shapely.Point(c.x, c.y).buffer(VIEW_M * 0.6))
        for c in cameras
        for p in c.presets
    ]
    violations = place_violations(
        rng_for(params.seed, "violations"),
        frame,
        list(land.parcels),
        dates,
        count=_violation_count(params),
        preferred=shapely.union_all(in_view) if in_view else Polygon(),
        approved=[f.geom for f in layers["approved_construction"]],
        approved_builds=params.approved_builds,
    )
    benign = benign_events(rng_for(params.seed, "benign"), list(land.parcels), states, dates)
    townships, villages = _jurisdictions(rng_for(params.seed, "jurisdictions"), box, land)
    return World(
        params=params,
        grid=grid,
        landscape=land,
        dates=tuple(dates),
        states=states,
        cameras=tuple(cameras),
        layers=layers,
        townships=tuple(townships),
        villages=tuple(villages),
        violations=tuple(violations),
        benign=tuple(benign),
    )


def _violation_count(params: WorldParams) -> int:
    """At least one of each of the six types whenever violations are asked for at all."""
    if params.violations_per_km2 == 0:
        return 0
    return max(6, round(params.violations_per_km2 * params.area_km2))


def _consolidate(rng: np.random.Generator, land: Landscape, states: np.ndarray) -> None:
    """Government land consolidation: one block graded bare for two epochs, then ploughed."""
    epochs = states.shape[1]
    if epochs < 4:
        return
    blocks = sorted({p.block for p in land.parcels if p.crop == "paddy"})
    if not blocks:
        return
    block = blocks[int(rng.integers(0, len(blocks)))]
    start = int(rng.integers(1, epochs - 2))
    rows = [i for i, p in enumerate(land.parcels) if p.block == block]
    states[rows, start : start + 2] = SurfaceState.graded
    states[rows, start + 2] = SurfaceState.ploughed


def _layers(rng: np.random.Generator, land: Landscape) -> dict[str, tuple[Feature, ...]]:
    villages = shapely.union_all(land.village_areas) if land.village_areas else Polygon()
    cultivated = [p for p in land.parcels if p.crop in CULTIVATED_CROPS]
    near_village = [p for p in cultivated if p.geom.distance(villages) < 250]
    pbf_blocks = {p.block for p in cultivated if rng.random() < 0.8}
    pbf = [p for p in cultivated if p.block in pbf_blocks and p.geom.distance(villages) > 80]
    approved_parcels = []
    if near_village:
        picks = rng.choice(len(near_village), size=min(4, len(near_village)), replace=False)
        approved_parcels = [near_village[int(i)] for i in sorted(picks)]
    approved_ids = {p.id for p in approved_parcels}
    pbf = [p for p in pbf if p.id not in approved_ids]
    largest = max(land.village_areas, key=lambda v: v.area) if land.village_areas else None

    def parcel_feature(p, **extra) -> Feature:
        return Feature({"parcel_id": p.id, "crop": p.crop, **extra}, p.geom)

    water = [g for g in [land.river, *land.ponds] if g is not None and not g.is_empty]
    layers = {
        "cultivated_land": tuple(parcel_feature(p) for p in cultivated),
        "permanent_basic_farmland": tuple(parcel_feature(p) for p in pbf),
        "urban_development_boundary": (
            (Feature({"name": "town cluster"}, largest.buffer(150).simplify(5)),) if largest else ()
        ),
        "approved_construction": tuple(
            Feature({"approval_no": f"YH-2025-{i + 1:03d}", "parcel_id": p.id}, p.geom)
            for i, p in enumerate(approved_parcels)
        ),
        "facility_agriculture": tuple(
            parcel_feature(p, record_no=f"SN-{i + 1:04d}")
            for i, p in enumerate(x for x in land.parcels if x.crop == "greenhouse")
        ),
        "blue_line": tuple(
            Feature({"name": f"water {i + 1}"}, g.buffer(5)) for i, g in enumerate(water)
        ),
        "ecological_red_line": (
            (Feature({"name": "river corridor"}, land.river.buffer(40)),) if land.river else ()
        ),
    }
    return layers


def _jurisdictions(
    rng: np.random.Generator, box: Polygon, land: Landscape
) -> tuple[list[Feature], list[Feature]]:
    """Two townships split by a wavy line; villages as Voronoi cells of settlement centres."""
    minx, miny, maxx, maxy = box.bounds
    split_x = minx + (maxx - minx) * rng.uniform(0.4, 0.6)
    ys = np.linspace(miny - 10, maxy + 10, 30)
    xs = split_x + 40 * np.sin(ys / rng.uniform(150, 300))
    west = Polygon([(minx - 10, miny - 10), *zip(xs, ys, strict=True), (minx - 10, maxy + 10)])
    halves = [box.intersection(west), box.difference(west)]
    townships, villages = [], []
    used: set[str] = set()
    for t, half in enumerate(halves):
        code = f"330110{101 + t:03d}"
        name = _name(rng, used) + ("镇" if t == 0 else "街道")
        townships.append(Feature({"code": code, "name": name, "parent_code": "330110"}, half))
        seeds = [v.centroid for v in land.village_areas if half.contains(v.centroid)]
        while len(seeds) < 2:
            seeds.append(_point_in(rng, half))
        cells = shapely.voronoi_polygons(shapely.MultiPoint(seeds), extend_to=box.buffer(500))
        for v, cell in enumerate(sorted(cells.geoms, key=lambda c: (c.centroid.x, c.centroid.y))):
            part = cell.intersection(half)
            if part.is_empty:
                continue
            props = {
                "code": f"{code}{201 + v:03d}",
                "name": _name(rng, used) + "村",
                "parent_code": code,
            }
            villages.append(Feature(props, part))
    return townships, villages


def _name(rng: np.random.Generator, used: set[str]) -> str:
    for _ in range(100):
        name = (
            _FIRST[int(rng.integers(0, len(_FIRST)))] + _SECOND[int(rng.integers(0, len(_SECOND)))]
        )
        if name not in used:
            used.add(name)
            return name
    return f"第{len(used) + 1}"


def _point_in(rng: np.random.Generator, area: BaseGeometry) -> shapely.Point:
    minx, miny, maxx, maxy = area.bounds
    while True:
        p = shapely.Point(rng.uniform(minx, maxx), rng.uniform(miny, maxy))
        if area.contains(p):
            return p
