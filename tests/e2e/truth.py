"""Scoring the cases of a simulated world against its exact truth (violations, look-alikes)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.case import Case
from models.detection import Detection, Screening

# Outlines from 1 m pixels and camera homographies are a few metres off: match within this.
MATCH_DEGREES = 0.00015  # about 15 m near Hangzhou


@dataclass(frozen=True)
class TruthFeature:
    id: str
    kind: str
    epoch: int
    in_approved: bool
    geom: BaseGeometry


def load_truth(world: Path, name: str) -> list[TruthFeature]:
    data = json.loads((world / "truth" / f"{name}.geojson").read_text(encoding="utf-8"))
    return [
        TruthFeature(
            id=str(f["properties"]["id"]),
            kind=str(f["properties"]["type"]),
            epoch=int(f["properties"]["epoch"]),
            in_approved=bool(f["properties"].get("in_approved", False)),
            geom=shape(f["geometry"]),
        )
        for f in data["features"]
    ]


@dataclass
class WorldScore:
    violations: list[str] = field(default_factory=list)  # injected, outside approved land
    found: dict[str, list[int]] = field(default_factory=dict)  # violation -> its case ids
    false_cases: list[int] = field(default_factory=list)  # cases on no violation
    false_cases_on_benign: list[int] = field(default_factory=list)
    approved_cases: list[int] = field(default_factory=list)  # cases on approved look-alikes
    approved_detections: dict[str, list[str]] = field(default_factory=dict)  # id -> screenings
    merged: list[str] = field(default_factory=list)  # violations with camera + satellite case
    cases: int = 0

    @property
    def missed(self) -> list[str]:
        return [v for v in self.violations if v not in self.found]

    def summary(self) -> dict[str, object]:
        return {
            "violations": len(self.violations),
            "found": sorted(self.found),
            "missed": self.missed,
            "cases": self.cases,
            "false_cases": len(self.false_cases),
            "false_cases_on_benign": len(self.false_cases_on_benign),
            "approved_cases": len(self.approved_cases),
            "approved_detections": self.approved_detections,
            "camera_and_satellite_in_one_case": self.merged,
            "violations_in_several_cases": [v for v, ids in self.found.items() if len(ids) > 1],
        }


def score_world(world: Path, *, session: Session) -> WorldScore:
    truth = load_truth(world, "violations")
    benign = load_truth(world, "benign")
    score = WorldScore()
    cases = list(session.scalars(select(Case).order_by(Case.id)))
    score.cases = len(cases)
    real = [t for t in truth if not t.in_approved]
    score.violations = [t.id for t in real]
    for case in cases:
        near = case.geom.buffer(MATCH_DEGREES)
        hits = [t for t in real if near.intersects(t.geom)]
        for hit in hits:
            score.found.setdefault(hit.id, []).append(case.id)
            if {"camera", "remote_sensing"} <= set(case.sources):
                score.merged.append(hit.id)
        if any(near.intersects(t.geom) for t in truth if t.in_approved):
            score.approved_cases.append(case.id)
        if not hits:
            score.false_cases.append(case.id)
            if any(near.intersects(b.geom) for b in benign):
                score.false_cases_on_benign.append(case.id)
    detections = list(session.scalars(select(Detection)))
    for lookalike in (t for t in truth if t.in_approved):
        score.approved_detections[lookalike.id] = sorted(
            str(d.screening)
            for d in detections
            if d.geom.intersects(lookalike.geom) and d.screening != Screening.benign
        )
    return score
