"""Comparing two backfill runs: what each was run with, and what each found."""

from __future__ import annotations

from typing import Any

from shapely import STRtree
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.backfill import BackfillRun, BackfillUnit
from models.detection import Detection, Screening
from service.errors import NotFoundError

RECORDED = ("detector_version", "parameters", "layer_versions", "scene_ids", "source")


def run_detections(run: BackfillRun, *, session: Session) -> list[Detection]:
    """The detections of the run's work units (its pairs, its detector version)."""
    unit_ids = run.summary.get("unit_ids", [])
    pairs = session.execute(
        select(BackfillUnit.before_scene_id, BackfillUnit.after_scene_id).where(
            BackfillUnit.id.in_(unit_ids)
        )
    ).all()
    found: list[Detection] = []
    for before_id, after_id in pairs:
        found += session.scalars(
            select(Detection)
            .where(
                Detection.scene_id == after_id,
                Detection.reference_scene_id == before_id,
                Detection.detector_version == run.detector_version,
            )
            .order_by(Detection.object_index)
        )
    return found


def diff_runs(run_a: int, run_b: int, *, session: Session) -> dict[str, Any]:
    """What differs between two runs: inputs and settings, then detections matched by place
    (same after-scene and overlapping outlines) and the cases they went to."""
    a, b = (_get_run(session, run_id) for run_id in (run_a, run_b))
    found_a, found_b = run_detections(a, session=session), run_detections(b, session=session)
    only_a, only_b, matched = _match(found_a, found_b)
    return {
        "runs": [a.id, b.id],
        "settings": {
            name: {"a": getattr(a, name), "b": getattr(b, name)}
            for name in RECORDED
            if getattr(a, name) != getattr(b, name)
        },
        "detections": [len(found_a), len(found_b)],
        "suspected": [_suspected(found_a), _suspected(found_b)],
        "matched": matched,
        "only_in_a": [_describe(d) for d in only_a],
        "only_in_b": [_describe(d) for d in only_b],
        "cases": [
            sorted({d.case_id for d in found_a if d.case_id}),
            sorted({d.case_id for d in found_b if d.case_id}),
        ],
    }


def _get_run(session: Session, run_id: int) -> BackfillRun:
    run = session.get(BackfillRun, run_id)
    if run is None:
        raise NotFoundError(f"backfill run {run_id} does not exist: see the ids backfill printed")
    return run


def _match(
    found_a: list[Detection], found_b: list[Detection]
) -> tuple[list[Detection], list[Detection], int]:
    matched_b: set[int] = set()
    only_a = []
    by_scene: dict[int, list[Detection]] = {}
    for detection in found_b:
        by_scene.setdefault(detection.scene_id, []).append(detection)
    trees = {scene: STRtree([d.geom for d in ds]) for scene, ds in by_scene.items()}
    for detection in found_a:
        tree = trees.get(detection.scene_id)
        hits = [] if tree is None else tree.query(detection.geom, predicate="intersects")
        partners = [by_scene[detection.scene_id][int(i)] for i in hits]
        if partners:
            matched_b.update(p.id for p in partners)
        else:
            only_a.append(detection)
    only_b = [d for d in found_b if d.id not in matched_b]
    return only_a, only_b, len(found_a) - len(only_a)


def _suspected(found: list[Detection]) -> int:
    return sum(d.screening == Screening.suspected_violation for d in found)


def _describe(detection: Detection) -> dict[str, Any]:
    centre = detection.geom.centroid
    return {
        "detection_id": detection.id,
        "scene_id": detection.scene_id,
        "observed_at": detection.observed_at.isoformat(),
        "change_type": str(detection.change_type),
        "screening": str(detection.screening),
        "area_m2": round(detection.area_m2, 1),
        "lon": round(centre.x, 6),
        "lat": round(centre.y, 6),
    }
