"""The static landscape: fields between roads and ditches, tree lines, river, ponds, villages."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import LineString, MultiPolygon, Point, Polygon
from shapely.ops import split

CROP_WEIGHTS = {
    "paddy": 0.50,
    "vegetable": 0.17,
    "tea": 0.08,
    "orchard": 0.08,
    "fallow": 0.06,
    "greenhouse": 0.11,
}
ROOF_KINDS = ("grey_tile", "grey_tile", "red_tile", "white_concrete", "blue_metal")
MIN_PARCEL_M2 = 150.0


@dataclass(frozen=True)
class Parcel:
    """One field: polygon in the world CRS (metres), crop, block and calendar phase shift (days)."""

    id: str
    geom: Polygon
    crop: str
    block: int
    phase_days: float


@dataclass(frozen=True)
class LinearFeature:
    """A road, ditch or tree line: centre line in the world CRS and width in metres."""

    kind: str
    geom: LineString
    width_m: float


@dataclass(frozen=True)
class House:
    geom: Polygon
    roof: str


@dataclass(frozen=True, eq=False)
class Landscape:
    """The parts of the world that do not change within the year."""

    angle_deg: float
    blocks: tuple[Polygon, ...]
    parcels: tuple[Parcel, ...]
    lines: tuple[LinearFeature, ...]
    river: Polygon | MultiPolygon | None
    ponds: tuple[Polygon, ...]
    village_areas: tuple[Polygon, ...]
    houses: tuple[House, ...]


class LocalFrame:
    """Rotated frame (u along the field grid, v across it) centred on the world."""

    def __init__(self, cx: float, cy: float, angle_deg: float) -> None:
        self.cx, self.cy = cx, cy
        self.cos, self.sin = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))

    def to_world(self, u: float, v: float) -> tuple[float, float]:
        return self.cx + u * self.cos - v * self.sin, self.cy + u * self.sin + v * self.cos

    def to_local(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dx, dy = x - self.cx, y - self.cy
        return dx * self.cos + dy * self.sin, -dx * self.sin + dy * self.cos

    def rect(self, u: float, v: float, du: float, dv: float) -> Polygon:
        """A grid-aligned rectangle centred at local (u, v) with sides du × dv metres."""
        corners = [(u - du / 2, v - dv / 2), (u + du / 2, v - dv / 2)]
        corners += [(u + du / 2, v + dv / 2), (u - du / 2, v + dv / 2)]
        return Polygon([self.to_world(a, b) for a, b in corners])

    def line(self, points: list[tuple[float, float]]) -> LineString:
        return LineString([self.to_world(a, b) for a, b in points])


def _grid_positions(
    rng: np.random.Generator, extent: float, low: float, high: float
) -> list[float]:
    positions, pos = [], -extent + rng.uniform(0, low)
    while pos < extent:
        positions.append(pos)
        pos += rng.uniform(low, high)
    return positions


def _network(rng: np.random.Generator, frame: LocalFrame, extent: float) -> list[LinearFeature]:
    """Field roads and ditches on a slightly irregular grid; one main road each way."""
    us = _grid_positions(rng, extent, 170, 290)
    vs = _grid_positions(rng, extent, 110, 200)
    lines: list[LinearFeature] = []
    for axis, positions in (("u", us), ("v", vs)):
        main = len(positions) // 2
        for i, pos in enumerate(positions):
            a, b = pos + rng.uniform(-6, 6), pos + rng.uniform(-6, 6)
            ends = [(a, -extent), (b, extent)] if axis == "u" else [(-extent, a), (extent, b)]
            if i == main:
                kind, width = "main_road", 7.0
            elif rng.random() < (0.5 if axis == "u" else 0.4):
                kind, width = "field_road", float(rng.uniform(3.0, 4.5))
            else:
                kind, width = "ditch", float(rng.uniform(2.0, 3.5))
            lines.append(LinearFeature(kind, frame.line(ends), width))
    trees = [
        LinearFeature("tree_line", f.geom.offset_curve(f.width_m / 2 + 3.0), 4.0)
        for f in lines
        if f.kind != "ditch" and rng.random() < 0.3
    ]
    return lines + trees


def _river(
    rng: np.random.Generator, frame: LocalFrame, extent: float, side: float
) -> Polygon | None:
    if side < 700:
        return None
    v0 = rng.uniform(-0.3, 0.3) * side
    a1, a2 = rng.uniform(30, 90), rng.uniform(8, 25)
    l1, l2 = rng.uniform(500, 1200), rng.uniform(150, 300)
    p1, p2 = rng.uniform(0, 2 * np.pi, 2)
    tilt = rng.uniform(-0.35, 0.35)
    us = np.linspace(-extent, extent, 400)
    vs = (
        v0
        + tilt * us
        + a1 * np.sin(2 * np.pi * us / l1 + p1)
        + a2 * np.sin(2 * np.pi * us / l2 + p2)
    )
    return frame.line(list(zip(us, vs, strict=True))).buffer(rng.uniform(9, 15))


def _villages(
    rng: np.random.Generator, frame: LocalFrame, box: Polygon, avoid: Polygon, area_km2: float
) -> list[Polygon]:
    villages: list[Polygon] = []
    minx, miny, maxx, maxy = box.bounds
    for _ in range(200):
        if len(villages) >= max(1, round(area_km2 * 0.6)):
            break
        centre = Point(rng.uniform(minx, maxx), rng.uniform(miny, maxy))
        blobs = [
            Point(centre.x + rng.normal(0, 50), centre.y + rng.normal(0, 50)).buffer(
                rng.uniform(40, 90)
            )
            for _ in range(rng.integers(3, 7))
        ]
        area = shapely.union_all(blobs).buffer(-10).buffer(10).intersection(box.buffer(-60))
        if (
            area.is_empty
            or area.distance(avoid) < 40
            or any(area.distance(v) < 250 for v in villages)
        ):
            continue
        if isinstance(area, Polygon) and area.area > 8000:
            villages.append(area)
    return villages


def _houses(rng: np.random.Generator, frame: LocalFrame, village: Polygon) -> list[House]:
    inner = village.buffer(-4)
    cu, cv = frame.to_local(np.array(village.centroid.x), np.array(village.centroid.y))
    houses = []
    for u in np.arange(float(cu) - 200, float(cu) + 200, rng.uniform(14, 18)):
        for v in np.arange(float(cv) - 200, float(cv) + 200, rng.uniform(16, 22)):
            house = frame.rect(u, v, rng.uniform(9, 13), rng.uniform(8, 11))
            if rng.random() < 0.78 and inner.contains(house):
                houses.append(House(house, str(rng.choice(ROOF_KINDS))))
    return houses


def _ponds(
    rng: np.random.Generator, frame: LocalFrame, box: Polygon, river: Polygon | None, avoid: Polygon
) -> list[Polygon]:
    """Clusters of rectangular fish ponds separated by dikes, usually near the river."""
    ponds: list[Polygon] = []
    minx, miny, maxx, maxy = box.bounds
    for _ in range(rng.integers(1, 4)):
        if river is not None:
            on_bank = river.boundary.interpolate(rng.uniform(0, river.boundary.length))
            x, y = on_bank.x + rng.normal(0, 120), on_bank.y + rng.normal(0, 120)
        else:
            x, y = rng.uniform(minx, maxx), rng.uniform(miny, maxy)
        u0, v0 = (float(c) for c in frame.to_local(np.array(x), np.array(y)))
        du, dv = rng.uniform(45, 70), rng.uniform(30, 50)
        for i in range(rng.integers(1, 4)):
            for j in range(rng.integers(1, 3)):
                pond = frame.rect(u0 + i * (du + 5), v0 + j * (dv + 5), du, dv)
                clear = river is None or pond.distance(river) > 8
                if clear and box.buffer(-5).contains(pond) and pond.distance(avoid) > 10:
                    ponds.append(pond)
    return ponds


def _strips(rng: np.random.Generator, frame: LocalFrame, block: Polygon) -> list[Polygon]:
    """Cut a block into narrow fields across its longer side, with slightly skewed cuts."""
    xs, ys = np.asarray(block.exterior.coords).T
    us, vs = frame.to_local(xs, ys)
    along_u = (us.max() - us.min()) >= (vs.max() - vs.min())
    low, high = (us.min(), us.max()) if along_u else (vs.min(), vs.max())
    span = (vs.min() - 5, vs.max() + 5) if along_u else (us.min() - 5, us.max() + 5)
    width = rng.uniform(18, 45)
    pieces = [block]
    cut = low + width
    while cut < high - 12:
        a, b = cut + rng.uniform(-3, 3), cut + rng.uniform(-3, 3)
        ends = [(a, span[0]), (b, span[1])] if along_u else [(span[0], a), (span[1], b)]
        line = frame.line(ends)
        pieces = [part for piece in pieces for part in split(piece, line).geoms]
        cut += rng.uniform(18, 45)
    return [p for p in pieces if isinstance(p, Polygon)]


def build_landscape(
    rng: np.random.Generator, box: Polygon, *, area_km2: float, side: float
) -> Landscape:
    """Lay out roads, water, villages and fields inside `box` (world CRS, metres)."""
    centre = box.centroid
    angle = float(rng.uniform(-25, 25))
    frame = LocalFrame(centre.x, centre.y, angle)
    extent = side * 0.75
    lines = _network(rng, frame, extent)
    river = _river(rng, frame, extent, side)
    river_in = river.intersection(box) if river is not None else None
    water = river_in if river_in is not None else Polygon()
    villages = _villages(rng, frame, box, water, area_km2)
    village_union = shapely.union_all(villages) if villages else Polygon()
    ponds = _ponds(rng, frame, box, river_in, village_union)
    houses = [h for v in villages for h in _houses(rng, frame, v)]

    network = shapely.union_all([f.geom for f in lines if f.kind != "tree_line"] + [box.boundary])
    cells = [
        c for c in shapely.polygonize(network.geoms).geoms if box.contains(c.representative_point())
    ]
    cells.sort(key=lambda c: (round(c.centroid.y, 3), round(c.centroid.x, 3)))
    non_farm = shapely.union_all(
        [f.geom.buffer(f.width_m / 2, cap_style="flat") for f in lines]
        + [water, village_union.buffer(5), *[p.buffer(3) for p in ponds]]
    )
    shapely.prepare(non_farm)
    crops, weights = list(CROP_WEIGHTS), np.array(list(CROP_WEIGHTS.values()))
    parcels: list[Parcel] = []
    for block_id, cell in enumerate(cells):
        dominant = str(rng.choice(crops, p=weights / weights.sum()))
        for strip in _strips(rng, frame, cell):
            crop = dominant
            if dominant in ("paddy", "vegetable") and rng.random() < 0.2:
                crop = str(rng.choice(["vegetable", "fallow", "paddy"]))
            field = strip.difference(non_farm)
            for part in getattr(field, "geoms", [field]):
                if isinstance(part, Polygon) and part.area >= MIN_PARCEL_M2:
                    parcel_id = f"P{len(parcels) + 1:05d}"
                    phase = float(rng.normal(0, 6))
                    parcels.append(
                        Parcel(parcel_id, shapely.normalize(part), crop, block_id, phase)
                    )
    return Landscape(
        angle_deg=angle,
        blocks=tuple(cells),
        parcels=tuple(parcels),
        lines=tuple(lines),
        river=river_in,
        ponds=tuple(ponds),
        village_areas=tuple(villages),
        houses=tuple(houses),
    )
