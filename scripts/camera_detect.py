"""`tianxun camera-detect`: run the tower-camera detector offline over one preset's snapshots."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from PIL import Image, ImageDraw
from shapely.geometry import mapping

from detection.camera import (
    CameraDetection,
    CameraParams,
    CameraState,
    SnapshotResult,
    analyse_snapshot_bytes,
    utc_now,
)
from detection.errors import CalibrationError
from detection.geolocate import (
    Calibration,
    calibration_from_mapping,
    ground_footprint,
    watched_ground,
)
from detection.io.snapshot import decode_snapshot

SNAPSHOT_TIME_FORMAT = "%Y%m%dT%H%M%SZ"
SEQUENCE_HELP = (
    "Folder of one preset's JPEG snapshots named by UTC capture time (20240501T080000Z.jpg)."
)
CALIBRATION_HELP = (
    "CALIBRATION.json with camera_id, image_size (width, height), at least 4 control_points "
    "(pixel col/row with lon/lat), optional farmland (a GeoJSON geometry in lon/lat) and "
    "optional parcels (a list of GeoJSON geometries in lon/lat, one per farmland parcel: farm "
    "work on part of a parcel is then told from a violation by the rest of the parcel)."
)


@dataclass
class Run:
    """What an offline run collected, snapshot by snapshot."""

    detections: list[CameraDetection] = field(default_factory=list)
    snapshots: list[dict[str, Any]] = field(default_factory=list)
    health: list[dict[str, Any]] = field(default_factory=list)


def load_calibration(path: Path) -> Calibration:
    """Read and fit CALIBRATION.json; every problem is a CalibrationError saying what to fix."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CalibrationError(f"cannot read calibration {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise CalibrationError(f"calibration {path} must be a JSON object")
    return calibration_from_mapping(data)


def capture_time(path: Path) -> datetime | None:
    """The UTC capture time in a snapshot's name, or None when the name is not one."""
    try:
        return datetime.strptime(path.stem, SNAPSHOT_TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def _snapshot_row(path: Path, result: SnapshotResult) -> dict[str, Any]:
    status = "rejected" if result.rejection else ("health" if result.health else "analysed")
    return {
        "file": path.name,
        "captured_at": result.captured_at.isoformat(),
        "status": status,
        "reason": result.rejection,
        "message": result.message,
        "registration": result.registration,
        "shift_px": [round(v, 2) for v in result.shift_px],
        "detections": [d.detection_id for d in result.detections],
    }


def run_sequence(
    sequence_dir: Path, calibration: Calibration, params: CameraParams, *, now: datetime
) -> tuple[Run, dict[str, list[CameraDetection]]]:
    """Analyse every snapshot in capture order; bad ones are recorded with their reason."""
    run = Run()
    by_file: dict[str, list[CameraDetection]] = {}
    state: CameraState | None = None
    timed: list[tuple[datetime, Path]] = []
    for path in sorted(sequence_dir.iterdir()):
        if path.suffix.lower() not in {".jpg", ".jpeg"}:
            continue
        when = capture_time(path)
        if when is None:
            run.snapshots.append(
                {
                    "file": path.name,
                    "status": "rejected",
                    "reason": "bad_name",
                    "message": f"name it by UTC capture time, e.g. 20240501T080000Z{path.suffix}",
                }
            )
            continue
        timed.append((when, path))
    for when, path in sorted(timed):
        state, result = analyse_snapshot_bytes(
            state, path.read_bytes(), when, calibration=calibration, params=params, now=now
        )
        run.snapshots.append(_snapshot_row(path, result))
        run.detections.extend(result.detections)
        run.health.extend(
            {"captured_at": e.captured_at.isoformat(), "kind": e.kind, "detail": e.detail}
            for e in result.health
        )
        if result.detections:
            by_file[path.name] = list(result.detections)
    return run, by_file


def detections_geojson(
    calibration: Calibration, detections: list[CameraDetection]
) -> dict[str, Any]:
    """The detections as an RFC 7946 FeatureCollection in lon/lat."""
    features = [
        {
            "type": "Feature",
            "id": f"{calibration.camera_id}-{d.detection_id}",
            "geometry": mapping(d.ground),
            "properties": {
                "camera_id": calibration.camera_id,
                "onset": d.onset.isoformat(),
                "confirmed_at": d.confirmed_at.isoformat(),
                "type": d.type,
                "area_m2": d.area_m2,
                "confidence": d.confidence,
            },
        }
        for d in detections
    ]
    return {"type": "FeatureCollection", "features": features}


def _write_overlay(
    source: Path, target: Path, detections: list[CameraDetection], reduce: int
) -> None:
    decoded = decode_snapshot(source.read_bytes(), reduce=reduce)
    image = Image.fromarray(decoded.image)
    draw = ImageDraw.Draw(image)
    for detection in detections:
        geometry = detection.outline
        for polygon in getattr(geometry, "geoms", [geometry]):
            ring = [(x / decoded.scale, y / decoded.scale) for x, y in polygon.exterior.coords]
            draw.line(ring, fill=(255, 40, 40), width=2)
    image.save(target, format="PNG")


def _write_json(path: Path, content: Any) -> None:
    temporary = path.with_suffix(path.suffix + ".part")
    temporary.write_text(json.dumps(content, indent=1, ensure_ascii=False), encoding="utf-8")
    temporary.replace(path)


def write_outputs(
    out_dir: Path,
    sequence_dir: Path,
    calibration: Calibration,
    run: Run,
    by_file: dict[str, list[CameraDetection]],
    params: CameraParams,
) -> None:
    """detections.geojson, snapshots.json, health.json, footprint.geojson and overlays/*.png."""
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_json(out_dir / "detections.geojson", detections_geojson(calibration, run.detections))
    _write_json(out_dir / "snapshots.json", run.snapshots)
    _write_json(out_dir / "health.json", run.health)
    coverage = [
        {"type": "Feature", "geometry": mapping(geometry), "properties": {"kind": kind}}
        for kind, geometry in (
            ("footprint", ground_footprint(calibration, params=params.geolocate)),
            ("watched_farmland", watched_ground(calibration, params=params.geolocate)),
        )
    ]
    _write_json(out_dir / "footprint.geojson", {"type": "FeatureCollection", "features": coverage})
    overlays = out_dir / "overlays"
    overlays.mkdir(exist_ok=True)
    for name, detections in by_file.items():
        _write_overlay(
            sequence_dir / name, overlays / f"{Path(name).stem}.png", detections, params.reduce
        )


def camera_detect(
    sequence_dir: Annotated[
        Path, typer.Argument(help=SEQUENCE_HELP, exists=True, file_okay=False, dir_okay=True)
    ],
    calibration_path: Annotated[
        Path, typer.Option("--calibration", help=CALIBRATION_HELP, exists=True, dir_okay=False)
    ],
    out_dir: Annotated[Path, typer.Option("-o", "--out", help="Where to write the results.")],
    persistence: Annotated[
        int, typer.Option(min=1, max=20, help="Consecutive snapshots before a change is reported.")
    ] = CameraParams().persistence,
    reduce: Annotated[
        int, typer.Option(help="Analyse at 1/reduce resolution: 4 (default) or 8 (faster).")
    ] = CameraParams().reduce,
    now: Annotated[
        datetime | None,
        typer.Option(
            formats=["%Y-%m-%dT%H:%M:%SZ"],
            help="Treat this UTC time as now (snapshots after it are refused); default: the clock.",
        ),
    ] = None,
) -> None:
    """Detect persistent changes in one camera preset's snapshots; write GeoJSON and overlays."""
    try:
        calibration = load_calibration(calibration_path)
    except CalibrationError as exc:
        typer.echo(f"calibration refused: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    if reduce not in (2, 4, 8):
        typer.echo("--reduce must be 2, 4 or 8 (JPEG DCT scaling)", err=True)
        raise typer.Exit(code=2)
    params = replace(CameraParams(), persistence=persistence, reduce=reduce)
    moment = now.replace(tzinfo=UTC) if now is not None else utc_now()
    run, by_file = run_sequence(sequence_dir, calibration, params, now=moment)
    write_outputs(out_dir, sequence_dir, calibration, run, by_file, params)
    rejected = sum(1 for row in run.snapshots if row["status"] == "rejected")
    typer.echo(
        f"calibration RMS {calibration.rms_error_m:.2f} m; "
        f"{len(run.snapshots)} snapshots: {len(run.detections)} detections, "
        f"{len(run.health)} camera-health events, {rejected} rejected → {out_dir}"
    )


def register(app: typer.Typer) -> None:
    app.command("camera-detect")(camera_detect)
