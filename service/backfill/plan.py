"""Planning a backfill: scenes grouped into tiles (one place, one grid), then date pairs.

A tile is the run of scenes that cover the same place at the same resolution; its consecutive
dates are the work units, each with the tile's dates before its earlier one (newest first) to
fill that date's cloud with the last clear look. Where tiles of different resolutions overlap,
the finer one is used and the coarser left out (with its reason); a date delivered in another
CRS stays in its tile and is reprojected onto the earlier date's grid by the detector (noted in
the summary).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import TypeVar

import shapely
from shapely.geometry.base import BaseGeometry
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from models.backfill import BackfillRun, BackfillUnit, BackfillUnitStatus
from models.base import utcnow
from models.layer import Layer, LayerVersion
from models.scene import Scene, SceneKind, SceneStatus
from service.backfill.inputs import InputProblem, SceneFile
from service.ingest.scenes import refresh_stac_item
from service.ingest.store import TIFF, object_key
from service.spatial import area_m2

SAME_PLACE_IOU = 0.9  # footprints of two dates of one tile overlap at least this much
SAME_RESOLUTION = 0.1  # relative difference of pixel size still counted as one resolution
MIN_OVERLAP_FRACTION = 0.01  # of the smaller footprint, for two tiles to count as overlapping
UNCOVERED_REPORT_FRACTION = 0.01  # of the area, uncovered by any imagery, worth reporting

Dated = TypeVar("Dated")  # a tile's date: its scene row or its file


@dataclass
class Tile:
    """Scenes of one place at one resolution, in date order."""

    scenes: list[SceneFile] = field(default_factory=list)

    @property
    def footprint(self) -> BaseGeometry:
        return self.scenes[0].footprint

    @property
    def resolution_m(self) -> float:
        return self.scenes[0].resolution_m

    @property
    def label(self) -> str:
        return self.scenes[0].label


def select_scenes(
    scenes: Sequence[SceneFile], *, area: BaseGeometry, since: datetime, until: datetime
) -> list[SceneFile]:
    """The scenes taken within [since, until] that touch the area."""
    return [s for s in scenes if since <= s.acquired_at <= until and s.footprint.intersects(area)]


def group_tiles(scenes: Sequence[SceneFile]) -> list[Tile]:
    """Scenes grouped by place and resolution; each tile's scenes in date order."""
    tiles: list[Tile] = []
    for scene in sorted(scenes, key=lambda s: (s.acquired_at, str(s.path))):
        home = next((tile for tile in tiles if _same_tile(tile, scene)), None)
        if home is None:
            tiles.append(Tile([scene]))
        elif all(s.acquired_at != scene.acquired_at for s in home.scenes):
            home.scenes.append(scene)
    return tiles


def _same_tile(tile: Tile, scene: SceneFile) -> bool:
    a, b = tile.footprint, scene.footprint
    union = a.union(b).area
    iou = a.intersection(b).area / union if union > 0 else 0.0
    ratio = abs(scene.resolution_m - tile.resolution_m) / tile.resolution_m
    return iou >= SAME_PLACE_IOU and ratio <= SAME_RESOLUTION


def drop_coarser_overlaps(tiles: Sequence[Tile]) -> tuple[list[Tile], list[InputProblem]]:
    """Where tiles of different resolutions overlap, keep the finer: comparing dates across
    two grids of different detail would call the difference in detail change."""
    kept: list[Tile] = []
    problems = []
    for tile in sorted(tiles, key=lambda t: (t.resolution_m, t.label)):
        finer = next((k for k in kept if _conflicts(k, tile)), None)
        if finer is None:
            kept.append(tile)
            continue
        for scene in tile.scenes:
            problems.append(
                InputProblem(
                    scene.label,
                    f"overlaps {finer.label} at a different resolution "
                    f"({scene.resolution_m:.2f} m against {finer.resolution_m:.2f} m): the finer "
                    "tile is used; resample this one onto its grid to use it",
                )
            )
    return sorted(kept, key=lambda t: t.label), problems


def _conflicts(finer: Tile, tile: Tile) -> bool:
    ratio = abs(tile.resolution_m - finer.resolution_m) / finer.resolution_m
    overlap = finer.footprint.intersection(tile.footprint).area
    smaller = min(finer.footprint.area, tile.footprint.area)
    return ratio > SAME_RESOLUTION and overlap > MIN_OVERLAP_FRACTION * smaller


def reprojection_notes(tiles: Sequence[Tile]) -> list[InputProblem]:
    """Dates delivered in another CRS than the date before them: reprojected, and said so."""
    notes = []
    for tile in tiles:
        for before, after in pairwise(tile.scenes):
            if before.crs != after.crs:
                notes.append(
                    InputProblem(
                        after.label,
                        f"is in {after.crs} while the date before it ({before.label}) is in "
                        f"{before.crs}: reprojected onto that date's grid for the comparison",
                        action="reprojected",
                    )
                )
    return notes


def coverage_problem(
    area: BaseGeometry, tiles: Sequence[Tile], *, area_crs: str
) -> InputProblem | None:
    """The part of the area no imagery covers, if it is worth saying."""
    covered = shapely.union_all([tile.footprint for tile in tiles]) if tiles else None
    outside = area if covered is None else area.difference(covered)
    total_m2 = area_m2(area, area_crs)
    outside_m2 = area_m2(outside, area_crs) if not outside.is_empty else 0.0
    if covered is None:
        return InputProblem(
            "area",
            "the area lies outside all imagery of the source in the period: nothing to compare",
        )
    if total_m2 > 0 and outside_m2 / total_m2 > UNCOVERED_REPORT_FRACTION:
        return InputProblem(
            "area",
            f"{outside_m2 / total_m2:.0%} of the area ({outside_m2 / 1e6:.3f} km²) lies outside "
            "all imagery of the source in the period: it was not observed",
        )
    return None


def file_sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def register_scene(
    scene_file: SceneFile, *, sha256: str, session: Session, data_dir: Path
) -> Scene:
    """The scene row of a file: found by its bytes (as live ingest does), or added.

    The bytes join the object store as a hard link when the file system allows (no copy of a
    city's imagery), else as a copy, so the one map can serve them like any ingested tile.
    """
    existing = session.scalars(select(Scene).where(Scene.sha256 == sha256)).one_or_none()
    if existing is not None:
        return existing
    key = object_key(sha256)
    _link_or_copy(scene_file.path, data_dir / key)
    scene = Scene(
        kind=SceneKind.rs_tile,
        sha256=sha256,
        storage_uri=key,
        size_bytes=scene_file.path.stat().st_size,
        media_type=TIFF.media_type,
        source="backfill",
        sensor=scene_file.sensor[:100],
        acquired_at=scene_file.acquired_at,
        received_at=utcnow(),
        crs=scene_file.crs,
        width=scene_file.width,
        height=scene_file.height,
        bands=list(scene_file.bands),
        # The backfill is this scene's analysis; its work units record which pairs are done.
        status=SceneStatus.analysed,
        geom=scene_file.footprint,
    )
    session.add(scene)
    session.flush()
    refresh_stac_item(session=session, scene=scene)
    return scene


def _link_or_copy(source: Path, target: Path) -> None:
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    partial.unlink(missing_ok=True)
    try:
        os.link(source, partial)
    except OSError:  # another file system, or links not allowed
        shutil.copyfile(source, partial)
    os.replace(partial, target)


def layer_versions_in(since: datetime, until: datetime, *, session: Session) -> list[dict]:
    """Every layer version valid at some time of the period, for the run's record."""
    statement = (
        select(Layer.kind, LayerVersion)
        .join(Layer, Layer.id == LayerVersion.layer_id)
        .where(LayerVersion.valid_from <= until)
        .where(or_(LayerVersion.valid_to.is_(None), LayerVersion.valid_to > since))
        .order_by(LayerVersion.id)
    )
    return [
        {
            "layer": str(kind),
            "version_id": version.id,
            "version": version.version,
            "checksum": version.checksum,
            "valid_from": version.valid_from.isoformat(),
        }
        for kind, version in session.execute(statement)
    ]


def older_looks(scenes: Sequence[Dated], before_index: int, *, limit: int) -> list[Dated]:
    """The dates before `scenes[before_index]`, newest first, at most `limit`."""
    return list(reversed(scenes[max(0, before_index - limit) : before_index]))


def unit_version(detector_version: str, older: Sequence[Scene]) -> str:
    """What a unit is computed with besides its pair: the detector and the older dates that
    fill its before date, so a unit made from other older dates (another period) is another
    unit and is never taken for this one."""
    if not older:
        return detector_version
    ids = ",".join(str(scene.id) for scene in older)
    return f"{detector_version}+looks-{hashlib.sha256(ids.encode()).hexdigest()[:16]}"


def plan_units(
    run: BackfillRun,
    pairs: Sequence[tuple[Scene, Scene]],
    *,
    session: Session,
    older: Sequence[Sequence[Scene]] | None = None,
) -> list[BackfillUnit]:
    """The unit of each (before, after) pair with its older dates (`older`, one list per
    pair): found when any run made it, else added."""
    units = []
    for index, (before, after) in enumerate(pairs):
        version = unit_version(run.detector_version, older[index] if older else ())
        unit = session.scalars(
            select(BackfillUnit).where(
                BackfillUnit.before_scene_id == before.id,
                BackfillUnit.after_scene_id == after.id,
                BackfillUnit.detector_version == version,
            )
        ).one_or_none()
        if unit is None:
            unit = BackfillUnit(
                run_id=run.id,
                before_scene_id=before.id,
                after_scene_id=after.id,
                detector_version=version,
                status=BackfillUnitStatus.pending,
                objects=0,
                pixels=0,
                seconds=0.0,
            )
            session.add(unit)
        units.append(unit)
    session.flush()
    return units
