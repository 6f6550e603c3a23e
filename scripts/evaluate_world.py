"""`tianxun evaluate world DIR`: run the detectors over a simulated world, score them on its truth.

Remote sensing: every epoch after the first goes through the raster detector with its cloud
mask and the cultivated-land polygons, as `tianxun detect` runs it, against its reference: by
default the last clear look at each pixel (`detection.rs_reference`, parcels cut along the
dates that look came from), or with `--reference previous` the epoch just before it (both
cloud masks). The objects are scored by `detection.world_score`. Cameras: `tianxun evaluate
cameras` scores the tower-camera detector on the same world's snapshots.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from affine import Affine
from pyproj import Transformer
from rasterio.features import geometry_mask
from rasterio.windows import Window, from_bounds
from rasterio.windows import transform as window_transform
from rich.console import Console
from rich.table import Table
from shapely import transform as transform_coordinates
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from detection.errors import DetectionError
from detection.io import Raster, read_raster
from detection.objects import ChangeObject
from detection.raster_pair import detect_changes
from detection.rs_params import RasterDetectorParams
from detection.rs_reference import (
    ClearReference,
    add_observation,
    clear_beyond,
    margin_px,
    split_by_source,
)
from detection.world_score import (
    M2_PER_KM2,
    BenignEvent,
    DetectedObject,
    PairDetections,
    TruthViolation,
    WorldScore,
    score_world,
    tally_by_size,
)
from scripts.detect import cloud_free_mask, read_farmland


class WorldFormatError(DetectionError):
    """A folder that is not a world written by `tianxun simulate`."""


#: What each epoch is compared with: its pixels' last clear look, or the epoch before it.
REFERENCES = ("last-clear", "previous")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise WorldFormatError(
            f"cannot read {path} ({error}); give a folder written by `tianxun simulate --out`"
        ) from error


def _projected_features(path: Path, to_world: Transformer) -> list[tuple[dict, BaseGeometry]]:
    """(properties, geometry in the world CRS) of each feature of an RFC 7946 file."""
    return [
        (
            feature["properties"],
            transform_coordinates(
                shape(feature["geometry"]), to_world.transform, interleaved=False
            ),
        )
        for feature in _read_json(path)["features"]
    ]


def load_violations(world_dir: Path, to_world: Transformer) -> list[TruthViolation]:
    """Violations and approved look-alikes with their extent per epoch, in the world CRS."""
    extents: dict[str, dict[int, BaseGeometry]] = {}
    extents_path = world_dir / "truth" / "violation_extents.geojson"
    if extents_path.is_file():
        for props, geometry in _projected_features(extents_path, to_world):
            extents.setdefault(props["id"], {})[int(props["epoch"])] = geometry
    return [
        TruthViolation(
            violation_id=props["id"],
            violation_type=props["type"],
            onset_epoch=int(props["epoch"]),
            area_m2=float(props["area_m2"]),
            geometry=geometry,
            extents=extents.get(props["id"], {}),
            in_approved=bool(props.get("in_approved", False)),
        )
        for props, geometry in _projected_features(
            world_dir / "truth" / "violations.geojson", to_world
        )
    ]


def load_benign(world_dir: Path, to_world: Transformer) -> list[BenignEvent]:
    """Farm-work events in the world CRS."""
    return [
        BenignEvent(
            event_id=props["id"],
            event_type=props["type"],
            epoch=int(props["epoch"]),
            geometry=geometry,
        )
        for props, geometry in _projected_features(world_dir / "truth" / "benign.geojson", to_world)
    ]


def clear_fractions(
    clear: np.ndarray, transform: Affine, extents: dict[str, BaseGeometry]
) -> dict[str, float]:
    """Per violation id, the fraction of its extent's pixels where `clear` is True."""
    fractions = {}
    for violation_id, extent in extents.items():
        window = (
            from_bounds(*extent.bounds, transform=transform)
            .round_offsets(op="floor")
            .round_lengths(op="ceil")
            .intersection(Window(0, 0, clear.shape[1], clear.shape[0]))
        )
        rows, cols = window.toslices()
        inside = geometry_mask(
            [extent],
            out_shape=(int(window.height), int(window.width)),
            transform=window_transform(window, transform),
            invert=True,
        )
        fractions[violation_id] = float(clear[rows, cols][inside].mean()) if inside.any() else 0.0
    return fractions


def detect_pair(
    world_dir: Path,
    before: dict,
    after: dict,
    farmland: list[BaseGeometry],
    violations: list[TruthViolation],
) -> PairDetections:
    """Run the raster detector on two epochs of the world, as `tianxun detect` does."""
    before_raster = read_raster(world_dir / before["tile"])
    after_raster = read_raster(world_dir / after["tile"])
    before_valid = cloud_free_mask(world_dir / before["cloud_mask"], before_raster)
    after_valid = cloud_free_mask(world_dir / after["cloud_mask"], after_raster)
    result = detect_changes(
        before_raster.array,
        after_raster.array,
        params=RasterDetectorParams(),
        farmland=farmland,
        before_valid=before_valid,
        after_valid=after_valid,
        transform=before_raster.transform,
        crs=before_raster.crs,
        after_transform=after_raster.transform,
        after_crs=after_raster.crs,
        band_roles=before_raster.band_roles,
    )
    return _pair_detections(
        result.objects,
        (int(before["index"]), int(after["index"])),
        before_valid & after_valid,
        (before_raster.transform, before_raster.crs),
        violations,
    )


def _pair_detections(
    objects: Sequence[ChangeObject],
    epochs: tuple[int, int],
    clear: np.ndarray,
    grid: tuple[Affine | None, str | None],
    violations: list[TruthViolation],
) -> PairDetections:
    """What the scorer keeps of one comparison: its objects, and how much of each violation
    standing on the later epoch the detector compared.

    `clear` holds the pixels clear on both looks; the detector also keeps its margin
    (`invalid_buffer_m`) from every other pixel, so a violation clear but all near a cloud
    was not seen, as the backfill's scorer counts it.
    """
    transform, crs = grid
    compared = clear_beyond(clear, margin_px(RasterDetectorParams(), transform, crs, clear.shape))
    before_epoch, after_epoch = epochs
    return PairDetections(
        before_epoch=before_epoch,
        after_epoch=after_epoch,
        objects=tuple(
            DetectedObject(
                geometry=found.geometry,
                benign=found.benign,
                change_type=found.change_type,
                area_m2=found.area_m2,
            )
            for found in objects
        ),
        clear_fraction=_standing_clear_fractions(compared, transform, violations, after_epoch),
    )


def _standing_clear_fractions(
    clear: np.ndarray, transform: Affine | None, violations: list[TruthViolation], epoch: int
) -> dict[str, float]:
    if transform is None:
        raise WorldFormatError("the world's tiles carry no georeferencing; regenerate the world")
    standing = {v.violation_id: v.extent_on(epoch) for v in violations}
    return clear_fractions(
        clear, transform, {key: extent for key, extent in standing.items() if extent is not None}
    )


def detect_against_reference(
    reference: ClearReference,
    after: Raster,
    after_valid: np.ndarray,
    farmland: list[BaseGeometry],
    violations: list[TruthViolation],
    epochs: tuple[int, int],
) -> PairDetections:
    """Run the raster detector on an epoch against the last clear look of every pixel.

    The composite mixes dates, so each parcel is cut along the dates its reference came
    from: every part is then compared with itself, one reference date at a time.
    """
    result = detect_changes(
        reference.image,
        after.array,
        params=RasterDetectorParams(),
        farmland=split_by_source(farmland, reference.source, after.transform),
        before_valid=reference.valid,
        after_valid=after_valid,
        transform=after.transform,
        crs=after.crs,
        band_roles=after.band_roles,
    )
    return _pair_detections(
        result.objects,
        epochs,
        reference.valid & after_valid,
        (after.transform, after.crs),
        violations,
    )


def _detect_all(
    world_dir: Path,
    epochs: list[dict],
    farmland: list[BaseGeometry],
    violations: list[TruthViolation],
    reference_kind: str,
) -> tuple[list[PairDetections], dict[int, float], list[dict[str, Any]]]:
    """Detections per epoch after the first, seconds per epoch, and the pairs that failed."""
    if reference_kind == "previous":
        return _detect_pairwise(world_dir, epochs, farmland, violations)
    return _detect_against_last_clear(world_dir, epochs, farmland, violations)


def _detect_pairwise(
    world_dir: Path,
    epochs: list[dict],
    farmland: list[BaseGeometry],
    violations: list[TruthViolation],
) -> tuple[list[PairDetections], dict[int, float], list[dict[str, Any]]]:
    pairs: list[PairDetections] = []
    seconds: dict[int, float] = {}
    failed: list[dict[str, Any]] = []
    for before, after in pairwise(epochs):
        started = time.perf_counter()
        try:
            pairs.append(detect_pair(world_dir, before, after, farmland, violations))
        except DetectionError as error:
            failed.append(_failure(before, after, error))
            continue
        seconds[int(after["index"])] = time.perf_counter() - started
    return pairs, seconds, failed


def _detect_against_last_clear(
    world_dir: Path,
    epochs: list[dict],
    farmland: list[BaseGeometry],
    violations: list[TruthViolation],
) -> tuple[list[PairDetections], dict[int, float], list[dict[str, Any]]]:
    """Each epoch against the running composite of the epochs before it, then added to it."""
    pairs: list[PairDetections] = []
    seconds: dict[int, float] = {}
    failed: list[dict[str, Any]] = []
    reference: ClearReference | None = None
    for position, epoch in enumerate(epochs):
        before = epochs[position - 1] if position else None
        try:
            raster, valid = _read_epoch(world_dir, epoch, reference)
        except DetectionError as error:
            if before is not None:
                failed.append(_failure(before, epoch, error))
            continue
        reference = reference or ClearReference.empty(*raster.array.shape)
        if before is not None:
            started = time.perf_counter()
            epoch_pair = (int(before["index"]), int(epoch["index"]))
            try:
                pairs.append(
                    detect_against_reference(
                        reference, raster, valid, farmland, violations, epoch_pair
                    )
                )
                seconds[int(epoch["index"])] = time.perf_counter() - started
            except DetectionError as error:
                failed.append(_failure(before, epoch, error))
        # An epoch that could not be compared (all cloud, say) still adds what it saw clear.
        add_observation(
            reference, raster.array, valid, int(epoch["index"]), buffer_px=_buffer_px(raster)
        )
    return pairs, seconds, failed


def _read_epoch(
    world_dir: Path, epoch: dict, reference: ClearReference | None
) -> tuple[Raster, np.ndarray]:
    """An epoch's tile and its cloud-free mask, checked to lie on the composite's grid."""
    raster = read_raster(world_dir / epoch["tile"])
    valid = cloud_free_mask(world_dir / epoch["cloud_mask"], raster)
    if reference is not None and tuple(raster.array.shape) != reference.shape:
        raise WorldFormatError(
            f"tile {epoch['tile']} is {raster.array.shape} but the earlier tiles are "
            f"{reference.shape}; every epoch of a world shares one grid: regenerate the world"
        )
    return raster, valid


def _buffer_px(raster: Raster) -> int:
    return margin_px(RasterDetectorParams(), raster.transform, raster.crs, raster.array.shape)


def _failure(before: dict, after: dict, error: DetectionError) -> dict[str, Any]:
    return {"before": before["date"], "after": after["date"], "reason": str(error)}


def evaluate_remote_sensing(
    world_dir: Path, world: dict, reference: str = "last-clear"
) -> dict[str, Any]:
    """Detect on every epoch after the first and score; a failing pair is recorded and skipped.

    `reference` is one of `REFERENCES`: "last-clear" compares each epoch with the last clear
    look at every pixel, "previous" with the epoch just before it.
    """
    if reference not in REFERENCES:
        raise ValueError(f"reference must be one of {', '.join(REFERENCES)}, got {reference!r}")
    to_world = Transformer.from_crs("OGC:CRS84", world["crs"], always_xy=True)
    farmland = read_farmland(world_dir / "layers" / "cultivated_land.geojson", world["crs"])
    violations = load_violations(world_dir, to_world)
    epochs = sorted(world["epochs"], key=lambda epoch: epoch["index"])
    pairs, seconds, failed = _detect_all(world_dir, epochs, farmland, violations, reference)
    xmin, ymin, xmax, ymax = world["bounds"]
    score = score_world(
        violations,
        load_benign(world_dir, to_world),
        pairs,
        area_km2=(xmax - xmin) * (ymax - ymin) / M2_PER_KM2,
    )
    dates = {int(epoch["index"]): epoch["date"] for epoch in epochs}
    return _report(score, violations, dates, seconds) | {
        "reference": reference,
        "failed_pairs": failed,
    }


def _report(
    score: WorldScore,
    violations: list[TruthViolation],
    dates: dict[int, str],
    seconds: dict[int, float],
) -> dict[str, Any]:
    outcomes = {outcome.violation_id: outcome for outcome in score.violations}
    rows = []
    for violation in violations:
        outcome = outcomes.get(violation.violation_id)
        row: dict[str, Any] = {
            "id": violation.violation_id,
            "type": violation.violation_type,
            "onset_epoch": violation.onset_epoch,
            "onset_date": dates.get(violation.onset_epoch),
            "area_m2": round(violation.area_m2, 1),
            "scored": outcome is not None,
            "detected": outcome.detected if outcome else None,
            "detected_date": dates.get(outcome.detected_epoch)
            if outcome and outcome.detected_epoch is not None
            else None,
            "epochs_after_onset": outcome.epochs_after_onset if outcome else None,
            "observed_date": dates.get(outcome.observed_epoch)
            if outcome and outcome.observed_epoch is not None
            else None,
        }
        if outcome is None:
            row["not_scored_because"] = (
                "look-alike inside approved land" if violation.in_approved else "on the first epoch"
            )
        rows.append(row)
    pairs = [
        asdict(pair)
        | {
            "before_date": dates[pair.before_epoch],
            "after_date": dates[pair.after_epoch],
            "seconds": round(seconds.get(pair.after_epoch, 0.0), 1),
        }
        for pair in score.pairs
    ]
    return {
        "area_km2": round(score.area_km2, 3),
        "pairs_scored": len(score.pairs),
        "violations_scored": len(score.violations),
        "violations_detected": sum(o.detected for o in score.violations),
        "detection_rate": round(score.detection_rate, 3),
        "violations_observed": score.violations_observed,
        "observed_detection_rate": round(score.observed_detection_rate, 3),
        "median_epochs_after_onset": score.median_epochs_after_onset,
        # The acceptance's measure: violations of at least 100 m².
        "large_violations": asdict(tally_by_size(score.violations)),
        "false_alarms": score.false_alarms,
        "false_alarms_per_km2_per_epoch": round(score.false_alarms_per_km2_per_epoch, 3),
        "approved_lookalikes_flagged": sum(p.approved_lookalikes for p in score.pairs),
        "false_alarms_by_type": dict(
            sum((Counter(p.false_alarm_types) for p in score.pairs), Counter()).most_common()
        ),
        "benign_events": score.benign_events,
        "benign_flagged": score.benign_flagged,
        "benign_flagged_share": round(score.benign_flagged_share, 3),
        "violations": rows,
        "pairs": pairs,
    }


def evaluate_cameras_half(world_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The camera scorer's summary and per-violation rows, or None and why not."""
    try:
        from scripts.camera_eval import evaluate_world as evaluate_camera_world
    except ImportError as error:
        return None, f"camera scorer unavailable ({error})"
    score = evaluate_camera_world(world_dir)
    return score.summary() | {"violations_detail": score.rows}, None


def _summary_table(report: dict[str, Any]) -> Table:
    rs = report["remote_sensing"]
    table = Table(
        title=f"World {report['world']}: {rs['area_km2']} km², {rs['pairs_scored']} pairs"
    )
    table.add_column("measure")
    table.add_column("remote sensing", justify="right")
    table.add_column("cameras", justify="right")
    cams = report["cameras"] or {}
    delay = rs["median_epochs_after_onset"]
    table.add_row(
        "violations detected",
        f"{rs['violations_detected']}/{rs['violations_scored']} ({rs['detection_rate']:.1%})",
        f"{cams['found_in_time'] + cams['found_late']}/{cams['violations']} (violation × preset)"
        if cams
        else "–",
    )
    large = rs["large_violations"]
    table.add_row(
        f"violations of ≥ {large['min_area_m2']:g} m² detected",
        f"{large['detected']}/{large['violations']}; "
        f"{large['observed_detected']}/{large['observed']} of those seen clear",
        "–",
    )
    table.add_row(
        "seen clear after onset",
        f"{rs['violations_observed']}, {rs['observed_detection_rate']:.1%} of them detected",
        "–",
    )
    table.add_row(
        "median delay",
        "–" if delay is None else f"{delay:g} epochs",
        f"{cams['found_in_time']} within 3 snapshots" if cams else "–",
    )
    table.add_row(
        "false alarms",
        f"{rs['false_alarms']} ({rs['false_alarms_per_km2_per_epoch']:.2f} / km² / epoch)",
        f"{cams['false_alarms']} ({cams['false_alarms_per_1000_snapshots']:.1f} / preset / "
        "1,000 snapshots)"
        if cams
        else "–",
    )
    table.add_row(
        "farm work flagged",
        f"{rs['benign_flagged']}/{rs['benign_events']} events ({rs['benign_flagged_share']:.1%})",
        f"{cams['farm_work_alarms']} alarms" if cams else "–",
    )
    return table


def _violation_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="Remote sensing, per violation")
    for name in ("id", "type", "onset", "m²", "detected", "epochs after onset"):
        table.add_column(name, justify="right" if name in {"m²", "epochs after onset"} else "left")
    for row in rows:
        if not row["scored"]:
            verdict, delay = row["not_scored_because"], "–"
        else:
            verdict = row["detected_date"] if row["detected"] else "missed"
            if not row["detected"] and row["observed_date"] is None:
                verdict = "missed, never seen clear"
            delay = "–" if row["epochs_after_onset"] is None else str(row["epochs_after_onset"])
        table.add_row(
            row["id"], row["type"], row["onset_date"], f"{row['area_m2']:.0f}", verdict, delay
        )
    return table


def evaluate_world(
    world_dir: Annotated[
        Path,
        typer.Argument(help="A world written by `tianxun simulate`.", file_okay=False),
    ],
    cameras: Annotated[
        bool, typer.Option(help="Also score the tower-camera detector on the snapshots.")
    ] = True,
    reference: Annotated[
        str,
        typer.Option(
            help="What each epoch is compared with: 'last-clear' (every pixel's latest "
            "cloud-free look) or 'previous' (the epoch just before, as pairs of tiles)."
        ),
    ] = "last-clear",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Score the detectors on a simulated world: per violation found or not and how late,
    false alarms per km² per epoch and per camera per 1,000 snapshots, farm work flagged."""
    if reference not in REFERENCES:
        typer.echo(
            f"error: --reference must be one of {', '.join(REFERENCES)}, got {reference!r}",
            err=True,
        )
        raise typer.Exit(2)
    try:
        world = _read_json(world_dir / "world.json")
        report: dict[str, Any] = {
            "world": str(world_dir),
            "seed": world.get("seed"),
            "remote_sensing": evaluate_remote_sensing(world_dir, world, reference),
        }
    except DetectionError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error
    except KeyError as error:
        typer.echo(
            f"error: {world_dir} lacks {error} in its world or truth files; "
            "give a folder written by `tianxun simulate --out`",
            err=True,
        )
        raise typer.Exit(2) from error
    report["cameras"], report["cameras_note"] = (
        evaluate_cameras_half(world_dir) if cameras else (None, "not requested (--no-cameras)")
    )
    if as_json:
        typer.echo(json.dumps(report, indent=1, default=str))
        return
    console = Console()
    # Piped output has no terminal width to follow: keep every column whole.
    console = Console(width=None if console.is_terminal else 140)
    console.print(_summary_table(report))
    by_type = report["remote_sensing"]["false_alarms_by_type"]
    console.print(
        "remote-sensing false alarms by detector type: "
        + (", ".join(f"{name} {count}" for name, count in by_type.items()) or "none")
    )
    if report["cameras_note"]:
        console.print(f"cameras: {report['cameras_note']}")
    console.print(_violation_table(report["remote_sensing"]["violations"]))
