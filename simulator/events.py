"""Injected change with exact ground truth: violations (polygon, type, onset) and benign change."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import shapely
from shapely import affinity
from shapely.geometry import Point, Polygon

from simulator.calendar import benign_change_type
from simulator.landscape import LocalFrame, Parcel

VIOLATION_TYPES = (
    "building",
    "hardening",
    "excavation",
    "soil_piling",
    "pond_digging",
    "material_stacking",
)
BENIGN_TYPES = (
    "ploughing",
    "harvest",
    "paddy_flooding",
    "crop_rotation",
    "greenhouse_recovering",
    "land_consolidation",
)
GROWING_TYPES = ("excavation", "soil_piling", "material_stacking")
# (min, max) of the two sides in metres.
_SIZES = {
    "building": ((10, 22), (8, 14)),
    "hardening": ((20, 45), (15, 35)),
    "excavation": ((20, 45), (18, 40)),
    "soil_piling": ((12, 30), (10, 26)),
    "pond_digging": ((25, 50), (20, 35)),
    "material_stacking": ((12, 28), (10, 20)),
}
CULTIVATED_CROPS = ("paddy", "vegetable", "fallow")


@dataclass(frozen=True, eq=False)
class Violation:
    """An illegal occupation of farmland, present from `onset_epoch` to the last epoch.

    `extents[k]` is its polygon on epoch k (None before onset); growing types widen over time,
    and `geom` is the extent on the last epoch (the largest).
    """

    id: str
    type: str
    subtype: str
    geom: Polygon
    extents: tuple[Polygon | None, ...]
    onset: date
    onset_epoch: int
    parcel_id: str
    in_approved: bool
    style: int  # picks colours and texture


@dataclass(frozen=True, eq=False)
class BenignEvent:
    """Farming or government work that changes the surface but is not a violation."""

    id: str
    type: str
    geom: Polygon
    onset: date
    onset_epoch: int
    parcel_id: str


def onset_between(rng: np.random.Generator, dates: list[date], epoch: int) -> date:
    """A day after the previous epoch's date and no later than this epoch's date."""
    gap = (dates[epoch] - dates[epoch - 1]).days
    return dates[epoch - 1] + timedelta(days=int(rng.integers(1, gap + 1)))


def _shape(rng: np.random.Generator, frame: LocalFrame, kind: str, centre: Point) -> Polygon:
    (a0, a1), (b0, b1) = _SIZES[kind]
    du, dv = rng.uniform(a0, a1), rng.uniform(b0, b1)
    u, v = (float(c) for c in frame.to_local(np.array(centre.x), np.array(centre.y)))
    if kind in ("excavation", "soil_piling"):
        angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        wobble = np.ones_like(angles)
        for k in (2, 3, 5):  # a few lobes make an irregular, still simple outline
            wobble += rng.uniform(-0.12, 0.12) * np.cos(k * angles + rng.uniform(0, 6))
        pts = [
            frame.to_world(u + du / 2 * w * math.cos(t), v + dv / 2 * w * math.sin(t))
            for t, w in zip(angles, wobble, strict=True)
        ]
        return Polygon(pts)
    return frame.rect(u, v, du, dv)


def _grown(final: Polygon, onset: int, epoch: int, kind: str) -> Polygon:
    if kind not in GROWING_TYPES:
        return final
    factor = min(1.0, 0.55 + 0.15 * (epoch - onset))
    if factor >= 1.0:
        return final
    return shapely.normalize(affinity.scale(final, factor, factor, origin=final.centroid))


def place_violations(
    rng: np.random.Generator,
    frame: LocalFrame,
    parcels: list[Parcel],
    dates: list[date],
    *,
    count: int,
    preferred: Polygon,
    approved: list[Polygon],
    approved_builds: int,
) -> list[Violation]:
    """Violations in cultivated parcels (half inside `preferred`, e.g. what cameras see), plus
    `approved_builds` look-alikes inside approved construction land."""
    farmland = [p for p in parcels if p.crop in CULTIVATED_CROPS]
    approved_union = shapely.union_all(approved) if approved else Polygon()
    free = [p for p in farmland if not p.geom.intersects(approved_union)]
    seen = [p for p in free if p.geom.intersects(preferred)]
    placed: list[Violation] = []
    plans = [(VIOLATION_TYPES[i % len(VIOLATION_TYPES)], False) for i in range(count)]
    plans += [(("building", "hardening")[i % 2], True) for i in range(approved_builds)]
    for index, (kind, legal) in enumerate(plans):
        # Every other violation goes where a camera looks, so camera truth is never empty.
        hosts: list[Parcel] | list[Polygon] = (
            approved if legal else (seen if seen and index % 2 == 0 else free)
        )
        for _ in range(300 if hosts else 0):
            host = hosts[int(rng.integers(0, len(hosts)))]
            host_geom = host if isinstance(host, Polygon) else host.geom
            centre = _random_point(rng, host_geom.buffer(-8))
            if centre is None:
                continue
            shape = _shape(rng, frame, kind, centre)
            inside = shape.intersection(host_geom.buffer(-2))
            if not isinstance(inside, Polygon) or inside.area < 0.8 * shape.area:
                continue
            if any(inside.distance(v.geom) < 8 for v in placed):
                continue
            placed.append(_violation(rng, dates, kind, inside, host, legal, len(placed) + 1))
            break
    return placed


def _violation(
    rng: np.random.Generator,
    dates: list[date],
    kind: str,
    geom: Polygon,
    host: Parcel | Polygon,
    legal: bool,
    number: int,
) -> Violation:
    geom = shapely.normalize(geom)
    onset_epoch = int(rng.integers(1, len(dates)))
    subtype = {"building": str(rng.choice(["house", "shed", "shed"]))}.get(kind, kind)
    extents = tuple(
        None if k < onset_epoch else _grown(geom, onset_epoch, k, kind) for k in range(len(dates))
    )
    return Violation(
        id=f"V{number:04d}",
        type=kind,
        subtype=subtype,
        geom=extents[-1],  # the extent reached by the last epoch
        extents=extents,
        onset=onset_between(rng, dates, onset_epoch),
        onset_epoch=onset_epoch,
        parcel_id=host.id if isinstance(host, Parcel) else "",
        in_approved=legal,
        style=int(rng.integers(0, 2**31)),
    )


def _random_point(rng: np.random.Generator, area: Polygon) -> Point | None:
    if area.is_empty:
        return None
    minx, miny, maxx, maxy = area.bounds
    for _ in range(30):
        point = Point(rng.uniform(minx, maxx), rng.uniform(miny, maxy))
        if area.contains(point):
            return point
    return None


def benign_events(
    rng: np.random.Generator, parcels: list[Parcel], states: np.ndarray, dates: list[date]
) -> list[BenignEvent]:
    """One event per parcel and epoch where the surface changed because of farming or works."""
    events: list[BenignEvent] = []
    for i, parcel in enumerate(parcels):
        for k in range(1, states.shape[1]):
            kind = benign_change_type(int(states[i, k - 1]), int(states[i, k]))
            if kind is None:
                continue
            events.append(
                BenignEvent(
                    id=f"B{len(events) + 1:05d}",
                    type=kind,
                    geom=parcel.geom,
                    onset=onset_between(rng, dates, k),
                    onset_epoch=k,
                    parcel_id=parcel.id,
                )
            )
    return events
