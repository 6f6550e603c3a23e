"""`tianxun evaluate cameras`: score the tower-camera detector against a simulated world's truth.

For every preset it runs the detector over the snapshots in capture order (exactly what
`tianxun camera-detect` does) and compares its detections with the world's exact truth:

- a violation counts from the first snapshot whose truth mask shows at least
  ``min_visible_px`` full-resolution pixels of it; it is found in time when a detection touching
  it is confirmed at that snapshot or one of the next two (within 3 snapshots of onset); the
  rate is also given for the violations the camera is meant to watch (that many pixels inside
  the calibration's farmland within its footprint: in range, and near enough for a pixel to
  cover at most `GeolocateParams.max_pixel_area_m2`), the detector's region of interest;
  violations farther out still count in the first rate;
- those counts are per sighting (a violation and a preset that shows it); the distinct counts
  take each violation once, found in time when any preset found it in time, which is what a
  monitoring centre watching every camera gets;
- IoU compares the first such detection's ground polygon with the violation's extent on that
  epoch, clipped to what the preset sees, for violations of at least 50 m²;
- a detection touching no violation is a false alarm; one on farm work of the same epoch (a
  benign event: harvest, ploughing, flooding, a new crop) is also counted as a farm-work alarm;
  one on a look-alike inside approved land is counted apart.

False alarms per 1,000 snapshots are per preset: all false alarms over all snapshots of all
presets. The detector's time includes decoding; it is wall time on a possibly shared machine.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import shapely
import typer
from affine import Affine
from PIL import Image
from rasterio import features
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from detection.camera import CameraDetection, CameraParams
from detection.geolocate import (
    Calibration,
    ground_area_m2,
    ground_footprint,
    lonlat_to_image,
    watched_ground,
)
from scripts.camera_detect import load_calibration, run_sequence

IOU_MIN_AREA_M2 = 50.0
WITHIN_SNAPSHOTS = 3


@dataclass(frozen=True)
class Violation:
    violation_id: str
    type: str
    area_m2: float
    in_approved: bool
    extents: dict[int, BaseGeometry]  # epoch → lon/lat polygon, only where it stands


@dataclass
class CameraScore:
    """Totals over all presets of a world (and the per-violation rows behind them)."""

    presets: int = 0
    snapshots: int = 0
    rejected: int = 0
    violations: int = 0
    found_in_time: int = 0
    found_late: int = 0
    too_small: int = 0
    watched_violations: int = 0
    watched_in_time: int = 0
    detections: int = 0
    false_alarms: int = 0
    farm_work_alarms: int = 0
    approved_lookalikes: int = 0
    ious: list[float] = field(default_factory=list)
    detector_seconds: float = 0.0
    rows: list[dict[str, Any]] = field(default_factory=list)
    alarm_rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def detection_rate(self) -> float:
        return self.found_in_time / max(self.violations, 1)

    def distinct_violations(self) -> tuple[int, int]:
        """(violations sighted by any preset, of those found in time by at least one)."""
        in_time: dict[str, bool] = {}
        for row in self.rows:
            in_time[row["id"]] = in_time.get(row["id"], False) or row["outcome"] == "in_time"
        return len(in_time), sum(in_time.values())

    @property
    def false_alarms_per_1000(self) -> float:
        """False alarms per camera preset per 1,000 of its snapshots."""
        return 1000.0 * self.false_alarms / max(self.snapshots, 1)

    def summary(self) -> dict[str, Any]:
        ious = np.asarray(self.ious)
        data = {k: v for k, v in asdict(self).items() if k not in {"rows", "alarm_rows", "ious"}}
        distinct, distinct_in_time = self.distinct_violations()
        return data | {
            "detection_rate_within_3": round(self.detection_rate, 3),
            "distinct_violations": distinct,
            "distinct_found_in_time": distinct_in_time,
            "distinct_detection_rate_within_3": round(distinct_in_time / max(distinct, 1), 3),
            "watched_detection_rate_within_3": round(
                self.watched_in_time / max(self.watched_violations, 1), 3
            ),
            "false_alarms_per_1000_snapshots": round(self.false_alarms_per_1000, 2),
            "farm_work_alarms_per_1000_snapshots": round(
                1000.0 * self.farm_work_alarms / max(self.snapshots, 1), 2
            ),
            "iou_objects_ge_50m2": len(self.ious),
            "iou_median": round(float(np.median(ious)), 3) if len(ious) else None,
            "iou_share_ge_0_5": round(float((ious >= 0.5).mean()), 3) if len(ious) else None,
            "detector_ms_per_snapshot": round(
                1000 * self.detector_seconds / max(self.snapshots, 1), 1
            ),
        }


def _features(path: Path) -> list[dict[str, Any]]:
    return json.loads(path.read_text(encoding="utf-8"))["features"]


def load_truth(world_dir: Path) -> tuple[list[Violation], dict[int, list[BaseGeometry]]]:
    """Violations with their extent per epoch, and the benign farm-work areas (lon/lat) by the
    epoch they happen in."""
    truth = world_dir / "truth"
    extents: dict[str, dict[int, BaseGeometry]] = {}
    for item in _features(truth / "violation_extents.geojson"):
        props = item["properties"]
        extents.setdefault(props["id"], {})[int(props["epoch"])] = shape(item["geometry"])
    violations = [
        Violation(
            violation_id=item["properties"]["id"],
            type=item["properties"]["type"],
            area_m2=float(item["properties"]["area_m2"]),
            in_approved=bool(item["properties"]["in_approved"]),
            extents=extents.get(item["properties"]["id"], {}),
        )
        for item in _features(truth / "violations.geojson")
    ]
    benign: dict[int, list[BaseGeometry]] = {}
    for item in _features(truth / "benign.geojson"):
        benign.setdefault(int(item["properties"]["epoch"]), []).append(shape(item["geometry"]))
    return violations, benign


def _visible_pixels(
    calibration: Calibration, extent: BaseGeometry, mask: np.ndarray, label: int
) -> int:
    """Truth-mask pixels of `label` inside the violation's projected extent."""
    image = shapely.transform(extent, lambda xy: lonlat_to_image(calibration, xy))
    col0, row0, col1, row1 = (int(v) for v in image.bounds)
    col0, row0 = max(col0, 0), max(row0, 0)
    col1, row1 = min(col1 + 1, mask.shape[1]), min(row1 + 1, mask.shape[0])
    if col1 <= col0 or row1 <= row0:
        return 0
    inside = features.rasterize(
        [image],
        out_shape=(row1 - row0, col1 - col0),
        transform=Affine.translation(col0, row0),
        dtype="uint8",
    ).astype(bool)
    return int((inside & (mask[row0:row1, col0:col1] == label)).sum())


def _unshifted(mask: np.ndarray, shift: tuple[int, int]) -> np.ndarray:
    """A truth mask moved back by the tower sway, into the calibration's pixel grid."""
    dx, dy = shift
    out = np.zeros_like(mask)
    rows, cols = mask.shape
    out[max(0, -dy) : rows - max(0, dy), max(0, -dx) : cols - max(0, dx)] = mask[
        max(0, dy) : rows - max(0, -dy), max(0, dx) : cols - max(0, -dx)
    ]
    return out


def _extent_on(violation: Violation, epoch: int) -> BaseGeometry | None:
    return violation.extents.get(epoch)


def _iou(calibration: Calibration, detected: BaseGeometry, truth: BaseGeometry) -> float:
    union = ground_area_m2(calibration, detected.union(truth))
    return ground_area_m2(calibration, detected.intersection(truth)) / max(union, 1e-9)


def _score_violation(
    violation: Violation,
    calibration: Calibration,
    seen: BaseGeometry,
    watched: BaseGeometry,
    shots: list[dict[str, Any]],
    masks: list[np.ndarray],
    detections: list[CameraDetection],
    min_visible_px: int,
) -> dict[str, Any] | None:
    label = 2 if violation.in_approved else 1
    onset = None
    for index, (shot, mask) in enumerate(zip(shots, masks, strict=True)):
        extent = _extent_on(violation, shot["epoch"])
        if extent is None or not extent.intersects(seen):
            continue
        if _visible_pixels(calibration, extent.intersection(seen), mask, label) >= min_visible_px:
            onset = index
            break
    if onset is None:
        return None
    # Whether the camera is meant to watch it: enough of it inside the watched farmland.
    onset_extent = _extent_on(violation, shots[onset]["epoch"])
    inside = onset_extent.intersection(watched) if onset_extent is not None else None
    in_watch = (
        inside is not None
        and not inside.is_empty
        and (_visible_pixels(calibration, inside, masks[onset], label) >= min_visible_px)
    )
    times = [shot["time"] for shot in shots]
    anywhere = shapely.union_all(list(violation.extents.values()))
    hits = sorted(
        (d for d in detections if d.ground.intersects(anywhere) and d.confirmed_at >= times[onset]),
        key=lambda d: d.confirmed_at,
    )
    deadline = times[min(onset + WITHIN_SNAPSHOTS - 1, len(times) - 1)]
    row: dict[str, Any] = {
        "id": violation.violation_id,
        "type": violation.type,
        "area_m2": violation.area_m2,
        "onset": times[onset].isoformat(),
        "watched": in_watch,
        "outcome": "missed",
        "iou": None,
    }
    if hits:
        first = hits[0]
        row["outcome"] = "in_time" if first.confirmed_at <= deadline else "late"
        row["snapshots_to_detection"] = times.index(first.confirmed_at) - onset + 1
        epoch = shots[times.index(first.confirmed_at)]["epoch"]
        extent = _extent_on(violation, epoch)
        if violation.area_m2 >= IOU_MIN_AREA_M2 and extent is not None:
            row["iou"] = round(_iou(calibration, first.ground, extent.intersection(seen)), 3)
    return row


def _load_shots(world_dir: Path, preset_dir: Path) -> tuple[list[dict], list[np.ndarray]]:
    shots = json.loads((preset_dir / "snapshots.json").read_text(encoding="utf-8"))
    for shot in shots:
        shot["time"] = datetime.strptime(shot["captured_at"], "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=UTC
        )
    shots.sort(key=lambda shot: shot["time"])
    masks = [
        _unshifted(np.asarray(Image.open(world_dir / shot["mask"])), tuple(shot["shift_px"]))
        for shot in shots
    ]
    return shots, masks


def score_preset(
    world_dir: Path,
    preset_dir: Path,
    violations: list[Violation],
    benign: dict[int, list[BaseGeometry]],
    score: CameraScore,
    *,
    params: CameraParams,
    min_visible_px: int,
) -> None:
    """Run the detector over one preset and add its outcome to `score`."""
    calibration = load_calibration(preset_dir / "calibration.json")
    shots, masks = _load_shots(world_dir, preset_dir)
    tick = time.perf_counter()
    run, _ = run_sequence(preset_dir, calibration, params, now=datetime(2100, 1, 1, tzinfo=UTC))
    score.detector_seconds += time.perf_counter() - tick
    score.presets += 1
    score.snapshots += len(shots)
    score.rejected += sum(row["status"] == "rejected" for row in run.snapshots)
    score.detections += len(run.detections)
    # A violation counts wherever the frame shows ground, also beyond what the detector is
    # meant to resolve there (`watched`, the farmland of its footprint).
    in_frame = replace(params.geolocate, max_pixel_area_m2=math.inf)
    seen = ground_footprint(calibration, params=in_frame)
    watched = watched_ground(calibration, params=params.geolocate)
    camera = preset_dir.relative_to(world_dir / "cameras").as_posix()
    for violation in violations:
        row = _score_violation(
            violation, calibration, seen, watched, shots, masks, run.detections, min_visible_px
        )
        if row is None or violation.in_approved:
            score.too_small += int(
                row is None and any(e.intersects(seen) for e in violation.extents.values())
            )
            continue
        row["camera"] = camera
        score.rows.append(row)
        score.violations += 1
        score.found_in_time += row["outcome"] == "in_time"
        score.found_late += row["outcome"] == "late"
        score.watched_violations += row["watched"]
        score.watched_in_time += row["watched"] and row["outcome"] == "in_time"
        if row["outcome"] == "in_time" and row["iou"] is not None:
            score.ious.append(row["iou"])
    epoch_of = {shot["time"]: shot["epoch"] for shot in shots}
    _count_alarms(run.detections, epoch_of, violations, benign, score, camera)


def _count_alarms(
    detections: list[CameraDetection],
    epoch_of: dict[datetime, int],
    violations: list[Violation],
    benign: dict[int, list[BaseGeometry]],
    score: CameraScore,
    camera: str,
) -> None:
    real = [(v, e) for v in violations for e in v.extents.values()]
    for detection in detections:
        touched = [v for v, extent in real if detection.ground.intersects(extent)]
        if any(not v.in_approved for v in touched):
            continue
        if touched:
            score.approved_lookalikes += 1
            continue
        score.false_alarms += 1
        # Farm work of this epoch: the parcel turned over in the interval the snapshot is in.
        recent = benign.get(epoch_of.get(detection.confirmed_at, -1), [])
        on_farm_work = any(detection.ground.intersects(area) for area in recent)
        score.farm_work_alarms += on_farm_work
        score.alarm_rows.append(
            {
                "camera": camera,
                "confirmed_at": detection.confirmed_at.isoformat(),
                "type": detection.type,
                "area_m2": detection.area_m2,
                "farm_work": on_farm_work,
            }
        )


def evaluate_world(
    world_dir: Path, *, params: CameraParams | None = None, min_visible_px: int = 200
) -> CameraScore:
    """Score the camera detector on every preset of a world written by `tianxun simulate`."""
    params = params or CameraParams()
    violations, benign = load_truth(world_dir)
    score = CameraScore()
    for preset_dir in sorted((world_dir / "cameras").glob("*/*")):
        if (preset_dir / "calibration.json").is_file():
            score_preset(
                world_dir,
                preset_dir,
                violations,
                benign,
                score,
                params=params,
                min_visible_px=min_visible_px,
            )
    return score


def evaluate_cameras(
    world_dir: Annotated[
        Path,
        typer.Argument(help="A world written by `tianxun simulate`.", exists=True, file_okay=False),
    ],
    min_visible_px: Annotated[
        int,
        typer.Option(help="Violations count once this many full-resolution pixels show."),
    ] = 200,
    reduce: Annotated[int, typer.Option(help="Detector working resolution 1/reduce.")] = 4,
    details: Annotated[bool, typer.Option(help="Also list every violation's outcome.")] = False,
) -> None:
    """Score the tower-camera detector against a simulated world's truth (JSON on stdout)."""
    if not (world_dir / "truth" / "violations.geojson").is_file():
        typer.echo(f"{world_dir} has no truth/violations.geojson: give a simulated world", err=True)
        raise typer.Exit(code=2)
    params = CameraParams(reduce=reduce)
    score = evaluate_world(world_dir, params=params, min_visible_px=min_visible_px)
    detail = {"violations_detail": score.rows, "false_alarms_detail": score.alarm_rows}
    report = score.summary() | (detail if details else {})
    typer.echo(json.dumps(report, indent=1, default=str))


def register(app: typer.Typer) -> None:
    """Add `cameras` to the `tianxun evaluate` sub-command."""
    from scripts.evaluate import evaluate_app

    evaluate_app.command("cameras")(evaluate_cameras)
