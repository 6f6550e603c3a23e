"""A backfill end to end: plan, compute on Dask, write in plan order, trace, summarise.

Results are written in the order of the plan (date, then tile), whatever order workers finish
in, so a run stopped part way and continued ends exactly where an uninterrupted run would:
cases form the same way. The same arguments continue the same run (its fingerprint).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import shapely
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from detection.rs_params import RasterDetectorParams
from models.backfill import BackfillRun, BackfillRunStatus, BackfillUnit, BackfillUnitStatus
from models.base import utcnow
from models.case import Case, CaseStatus
from models.detection import Detection
from models.jurisdiction import Jurisdiction
from models.scene import Scene, SceneKind, SceneStatus
from service.analysis.store import parameters_json
from service.analysis.tiles import REFERENCE_LOOKS, RS_DETECTOR_VERSION, tile_parcels
from service.backfill import plan
from service.backfill.compute import (
    DatedScene,
    TracePart,
    TraceTask,
    UnitResult,
    UnitTask,
    compare_unit,
    trace_cases,
)
from service.backfill.inputs import InputProblem, SceneFile, find_scenes
from service.backfill.write import write_trace, write_unit
from service.cases.events import status_entered_at
from service.db import transaction
from service.ingest.store import object_path
from service.settings import Settings
from service.spatial import iter_intersecting, m2_to_mu

TIFF_LINKS = "tiles"


@dataclass(frozen=True)
class BackfillRequest:
    area: BaseGeometry  # lon/lat
    since: datetime
    until: datetime
    source: str
    alert: bool = False


class Observer(Protocol):
    """Hears how a run goes: the CLI draws progress from it, tests stop a run with it."""

    def planned(self, units: int, pending: int, pending_pixels: int) -> None: ...

    def unit_written(self, pixels: int) -> None: ...

    def note(self, text: str) -> None: ...


class Quiet:
    def planned(self, units: int, pending: int, pending_pixels: int) -> None:
        pass

    def unit_written(self, pixels: int) -> None:
        pass

    def note(self, text: str) -> None:
        pass


def fingerprint(request: BackfillRequest, params: RasterDetectorParams) -> str:
    """The identity of a run: arguments and detector; the same command continues the run."""
    document = {
        "area": shapely.normalize(request.area).wkt,
        "since": request.since.isoformat(),
        "until": request.until.isoformat(),
        "source": request.source,
        "detector_version": RS_DETECTOR_VERSION,
        "parameters": parameters_json(params),
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


def request_of(run: BackfillRun) -> BackfillRequest:
    """The arguments a run was started with (for `--resume RUN_ID`)."""
    return BackfillRequest(shape(run.area), run.since, run.until, run.source, run.alert)


def run_backfill(
    request: BackfillRequest,
    *,
    factory: sessionmaker[Session],
    settings: Settings,
    client: Any,
    observer: Observer | None = None,
    params: RasterDetectorParams | None = None,
    retrace: bool = False,
) -> dict[str, Any]:
    """Run (or continue) the backfill of `request` on the Dask `client`; returns its summary.

    `retrace` traces every case the run touched again, not only those not traced yet (after
    an update of the trace, say); nothing else is recomputed.
    """
    observer = observer or Quiet()
    params = params or RasterDetectorParams()
    scenes, problems = find_scenes(request.source, area_crs=settings.area_crs)
    chosen = plan.select_scenes(scenes, area=request.area, since=request.since, until=request.until)
    tiles, overlaps = plan.drop_coarser_overlaps(plan.group_tiles(chosen))
    problems += overlaps + plan.reprojection_notes(tiles)
    uncovered = plan.coverage_problem(request.area, tiles, area_crs=settings.area_crs)
    problems += [uncovered] if uncovered else []
    hashes = {s.path: plan.file_sha256(s.path) for tile in tiles for s in tile.scenes}
    with transaction(factory) as session:
        run = _open_run(request, params, session=session)
        run_id = run.id
        tasks, units_total = _plan(run, tiles, hashes, problems, session, settings, params)
        pending_pixels = sum(_pixels(task) for task in tasks)
    observer.planned(units_total, len(tasks), pending_pixels)
    _compute_and_write(
        tasks, run_id, factory=factory, settings=settings, client=client, observer=observer
    )
    _trace_touched(
        run_id, factory=factory, settings=settings, client=client, observer=observer, again=retrace
    )
    with transaction(factory) as session:
        return _finish(run_id, session=session, settings=settings)


def _open_run(
    request: BackfillRequest, params: RasterDetectorParams, *, session: Session
) -> BackfillRun:
    key = fingerprint(request, params)
    run = session.scalars(select(BackfillRun).where(BackfillRun.fingerprint == key)).one_or_none()
    if run is not None:
        return run
    run = BackfillRun(
        fingerprint=key,
        status=BackfillRunStatus.running,
        area=mapping(request.area),
        since=request.since,
        until=request.until,
        source=request.source,
        alert=request.alert,
        detector_version=RS_DETECTOR_VERSION,
        parameters=parameters_json(params),
        layer_versions=[],
        scene_ids=[],
        problems=[],
        summary={},
    )
    session.add(run)
    session.flush()
    return run


def _plan(
    run: BackfillRun,
    tiles: Sequence[plan.Tile],
    hashes: dict[Any, str],
    problems: list[InputProblem],
    session: Session,
    settings: Settings,
    params: RasterDetectorParams,
) -> tuple[list[UnitTask], int]:
    """Scenes registered, units recorded; the tasks of the units still to do, in plan order."""
    pairs: list[_Pair] = []
    scene_ids: list[int] = []
    data_dir = settings.data_dir
    for tile in tiles:
        rows = [
            plan.register_scene(s, sha256=hashes[s.path], session=session, data_dir=data_dir)
            for s in tile.scenes
        ]
        scene_ids += [row.id for row in rows]
        pairs += [_pair(tile, rows, i) for i in range(len(rows) - 1)]
    # Dates first, then tiles: the order live ingest would have seen them in.
    pairs.sort(key=lambda p: (p.after.acquired_at, p.after.id))
    units = plan.plan_units(
        run,
        [(p.before, p.after) for p in pairs],
        session=session,
        older=[[row for row, _ in p.older] for p in pairs],
    )
    run.scene_ids = sorted(set(run.scene_ids) | set(scene_ids))
    unit_ids = set(run.summary.get("unit_ids", [])) | {unit.id for unit in units}
    run.summary = {**run.summary, "unit_ids": sorted(unit_ids)}
    run.layer_versions = plan.layer_versions_in(run.since, run.until, session=session)
    run.problems = [p.as_json() for p in problems]
    run.status = BackfillRunStatus.running
    tasks = []
    for unit, pair in zip(units, pairs, strict=True):
        if unit.status != BackfillUnitStatus.pending:
            continue
        parcels, farmland = tile_parcels(
            pair.after.geom, at=pair.after.acquired_at, session=session
        )
        tasks.append(
            UnitTask(
                unit_id=unit.id,
                before_path=str(pair.before_file.path),
                after_path=str(pair.after_file.path),
                parcels_lonlat=tuple(parcels),
                farmland=tuple(farmland),
                params=params,
                older_paths=tuple(str(file.path) for _, file in pair.older),
            )
        )
    session.flush()
    return tasks, len(units)


@dataclass(frozen=True)
class _Pair:
    """Two consecutive dates of a tile, and the dates before them that fill the earlier one."""

    before: Scene
    after: Scene
    before_file: SceneFile
    after_file: SceneFile
    older: tuple[tuple[Scene, SceneFile], ...]  # newest first


def _pair(tile: plan.Tile, rows: Sequence[Scene], index: int) -> _Pair:
    # As the live tile task: the before date and at most REFERENCE_LOOKS - 1 dates before it.
    older_rows = plan.older_looks(rows, index, limit=REFERENCE_LOOKS - 1)
    older_files = plan.older_looks(tile.scenes, index, limit=REFERENCE_LOOKS - 1)
    return _Pair(
        rows[index],
        rows[index + 1],
        tile.scenes[index],
        tile.scenes[index + 1],
        tuple(zip(older_rows, older_files, strict=True)),
    )


def _pixels(task: UnitTask) -> int:
    import rasterio

    with rasterio.open(task.after_path, driver="GTiff") as source:
        return int(source.width * source.height)


def _compute_and_write(
    tasks: Sequence[UnitTask],
    run_id: int,
    *,
    factory: sessionmaker[Session],
    settings: Settings,
    client: Any,
    observer: Observer,
) -> None:
    # Every unit is submitted at once so workers never wait; results are taken in order.
    # Keys are global on a scheduler: the token keeps two runs numbered alike in different
    # databases (or a stopped and a continued run) from being handed each other's tasks.
    token = uuid.uuid4().hex[:12]
    futures = [
        client.submit(
            compare_unit, task, key=f"backfill-{run_id}-unit-{task.unit_id}-{token}", pure=False
        )
        for task in tasks
    ]
    try:
        for future in futures:
            result: UnitResult = future.result()
            future.release()
            with transaction(factory) as session:
                run = session.get(BackfillRun, run_id)
                assert run is not None
                written = write_unit(result, run, session=session, settings=settings)
                _remember_cases(run, written.new_case_ids, written.updated_case_ids)
            pixels = result.comparison.pixels if result.comparison is not None else 0
            observer.unit_written(pixels)
    finally:
        for future in futures:
            future.cancel()


def _remember_cases(run: BackfillRun, new: Iterable[int], updated: Iterable[int]) -> None:
    summary = dict(run.summary)
    known_new = set(summary.get("cases_new", []))
    new_ids = known_new | set(new)
    updated_ids = (set(summary.get("cases_updated", [])) | set(updated)) - new_ids
    summary["cases_new"] = sorted(new_ids)
    summary["cases_updated"] = sorted(updated_ids)
    run.summary = summary  # JSON columns are replaced, not mutated, so the ORM sees it


def _trace_touched(
    run_id: int,
    *,
    factory: sessionmaker[Session],
    settings: Settings,
    client: Any,
    observer: Observer,
    again: bool = False,
) -> None:
    """Trace every case the run touched and has not traced yet (every one, `again`), grouped
    by the scenes under them so that each file is read once per group."""
    with transaction(factory) as session:
        run = session.get(BackfillRun, run_id)
        assert run is not None
        traced = set() if again else set(run.summary.get("cases_traced", []))
        touched = set(run.summary.get("cases_new", [])) | set(run.summary.get("cases_updated", []))
        groups = trace_groups(sorted(touched - traced), session=session, settings=settings)
    if not groups:
        return
    observer.note(f"tracing {sum(len(t) for _, t in groups)} cases")
    futures = [client.submit(trace_cases, dates, tasks, pure=False) for dates, tasks in groups]
    for future in futures:
        results = future.result()
        with transaction(factory) as session:
            for result in results:
                write_trace(result, session=session, settings=settings)
            run = session.get(BackfillRun, run_id)
            assert run is not None
            summary = dict(run.summary)
            summary["cases_traced"] = sorted(
                set(summary.get("cases_traced", [])) | {r.case_id for r in results}
            )
            run.summary = summary


def trace_groups(
    case_ids: Sequence[int], *, session: Session, settings: Settings
) -> list[tuple[list[DatedScene], list[TraceTask]]]:
    """The trace work for `case_ids`: cases over the same scenes share one task."""
    groups: dict[tuple[int, ...], tuple[list[DatedScene], list[TraceTask]]] = {}
    for case_id in case_ids:
        case = session.get(Case, case_id)
        if case is None:
            continue
        dates = scenes_over(case.geom, session=session, settings=settings)
        if not dates:
            continue
        key = tuple(d.scene_id for d in dates)
        groups.setdefault(key, (dates, []))[1].append(trace_task(case, session=session))
    return list(groups.values())


def trace_task(case: Case, *, session: Session) -> TraceTask:
    rectifying = (
        status_entered_at(case.id, CaseStatus.rectifying, session=session)
        if case.status == CaseStatus.rectifying
        else None
    )
    return TraceTask(
        case.id,
        case.geom,
        case.first_seen_at,
        rectifying,
        case_parts(case, session=session),
        sighting=first_sighting(case, session=session),
    )


def first_sighting(case: Case, *, session: Session) -> BaseGeometry | None:
    """The outline of the case's earliest detections, when later ones grew the case beyond it
    (None when the case holds only those)."""
    statement = (
        select(Detection.geom, Detection.observed_at)
        .where(Detection.case_id == case.id)
        .order_by(Detection.observed_at, Detection.id)
    )
    rows = session.execute(statement).all()
    first = [geom for geom, observed_at in rows if observed_at == rows[0][1]] if rows else []
    if len(first) == len(rows):
        return None
    return shapely.union_all(first)


def case_parts(case: Case, *, session: Session) -> tuple[TracePart, ...]:
    """The places apart within a case, when it has more than one: its detections grouped by
    outlines that touch, each group sighted with its first detection. Empty for a case of one
    place, whose own trace dates it."""
    statement = (
        select(Detection.geom, Detection.observed_at)
        .where(Detection.case_id == case.id)
        .order_by(Detection.observed_at, Detection.id)
    )
    groups: list[tuple[BaseGeometry, datetime]] = []
    for geom, observed_at in session.execute(statement):
        touching = [g for g in groups if g[0].intersects(geom)]
        apart = [g for g in groups if not g[0].intersects(geom)]
        merged = shapely.union_all([geom, *(g[0] for g in touching)])
        first = min([observed_at, *(g[1] for g in touching)])
        groups = [*apart, (merged, first)]
    if len(groups) < 2:
        return ()
    return tuple(TracePart(outline, first) for outline, first in sorted(groups, key=_by_time))


def _by_time(group: tuple[BaseGeometry, datetime]) -> tuple[datetime, float, float]:
    point = group[0].representative_point()
    return group[1], point.x, point.y


def scenes_over(geom: BaseGeometry, *, session: Session, settings: Settings) -> list[DatedScene]:
    """Every usable remote-sensing scene covering `geom`, one per date, in date order."""
    statement = (
        select(Scene)
        .where(Scene.kind == SceneKind.rs_tile, Scene.status != SceneStatus.failed)
        .order_by(Scene.acquired_at, Scene.id)
    )
    by_date: dict[datetime, DatedScene] = {}
    for scene in iter_intersecting(session, statement, Scene, geom):
        if scene.geom is None or not scene.geom.covers(geom.representative_point()):
            continue
        path = object_path(settings.data_dir, scene.storage_uri)
        if path.is_file():
            readable = readable_path(path, scene.sha256, settings)
            by_date.setdefault(scene.acquired_at, DatedScene(scene.id, scene.acquired_at, readable))
    return list(by_date.values())


def readable_path(path: Path, sha256: str, settings: Settings) -> str:
    """A stored tile under a .tif name (the hardened reader picks its driver by suffix), in a
    folder of links beside the object store that workers sharing `data_dir` can read."""
    link = settings.data_dir / TIFF_LINKS / f"{sha256}.tif"
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(path.resolve())
    return str(link.absolute())


def _finish(run_id: int, *, session: Session, settings: Settings) -> dict[str, Any]:
    run = session.get(BackfillRun, run_id)
    assert run is not None
    unit_ids = run.summary.get("unit_ids", [])
    units = list(session.scalars(select(BackfillUnit).where(BackfillUnit.id.in_(unit_ids))))
    pending = sum(u.status == BackfillUnitStatus.pending for u in units)
    if pending == 0:
        run.status, run.finished_at = BackfillRunStatus.done, utcnow()
    summary = summarise(run, units, session=session)
    run.summary = {**run.summary, "report": summary}
    session.flush()
    return summary


def summarise(run: BackfillRun, units: Sequence[BackfillUnit], *, session: Session) -> dict:
    """Cases new and updated, their area, by type and by jurisdiction, and every problem."""
    new_ids = list(run.summary.get("cases_new", []))
    updated_ids = list(run.summary.get("cases_updated", []))
    cases = [c for c in (session.get(Case, i) for i in [*new_ids, *updated_ids]) if c]
    jurisdictions = {
        j.id: f"{j.code} {j.name}"
        for j in session.scalars(
            select(Jurisdiction).where(Jurisdiction.id.in_({c.jurisdiction_id for c in cases}))
        )
    }
    area = sum(c.area_m2 for c in cases)
    failed = [u for u in units if u.status == BackfillUnitStatus.failed]
    return {
        "run_id": run.id,
        "status": str(run.status),
        "units": len(units),
        "units_done": sum(u.status == BackfillUnitStatus.done for u in units),
        "units_failed": len(failed),
        "units_pending": sum(u.status == BackfillUnitStatus.pending for u in units),
        "pixels": sum(u.pixels for u in units),
        "scenes": len(run.scene_ids),
        "cases_new": len(new_ids),
        "cases_updated": len(updated_ids),
        "area_m2": round(area, 1),
        "area_mu": round(m2_to_mu(area), 2),
        "by_type": dict(sorted(Counter(t for c in cases for t in c.change_types).items())),
        "by_jurisdiction": dict(
            sorted(
                Counter(jurisdictions.get(c.jurisdiction_id or -1, "none") for c in cases).items()
            )
        ),
        "problems": [
            *run.problems,
            *(
                {
                    "input": f"pair of scenes {u.before_scene_id} → {u.after_scene_id}",
                    "reason": u.failure_reason or "failed",
                    "action": "skipped",
                }
                for u in failed
            ),
        ],
    }
