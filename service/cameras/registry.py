"""Camera and preset registration: towers, their presets and each preset's ground calibration.

A preset is calibrated from control points (pixel ↔ lon/lat) by `detection.geolocate`; a
calibration with too few points, collinear points or a large RMS error is refused with the
reason, and the preset's ground footprint becomes `CameraPreset.geom` for coverage.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
from shapely.geometry import Point, Polygon
from shapely.geometry.base import BaseGeometry
from sqlalchemy import select
from sqlalchemy.orm import Session

from detection.errors import CalibrationError
from detection.geolocate import (
    Calibration,
    GeolocateParams,
    fit_calibration,
    ground_footprint,
    parse_control_points,
    utm_epsg,
)
from models.base import utcnow
from models.camera import Camera, CameraPreset
from service.cameras.state import store_state
from service.cases.workflow import jurisdiction_for
from service.errors import InvalidInputError, NotFoundError


def get_camera(*, session: Session, code: str) -> Camera | None:
    if not code.isprintable():  # NUL bytes break PostgreSQL text; no camera has them
        return None
    return session.scalars(select(Camera).where(Camera.code == code)).one_or_none()


def get_camera_or_raise(*, session: Session, code: str) -> Camera:
    camera = get_camera(session=session, code=code)
    if camera is None:
        raise NotFoundError(f"camera {code!r} is not registered: POST /v1/cameras first")
    return camera


def list_cameras(*, session: Session) -> list[Camera]:
    return list(session.scalars(select(Camera).order_by(Camera.code)))


def camera_presets(*, session: Session, camera_id: int) -> list[CameraPreset]:
    return list(
        session.scalars(
            select(CameraPreset)
            .where(CameraPreset.camera_id == camera_id)
            .order_by(CameraPreset.preset)
        )
    )


def register_camera(
    *,
    session: Session,
    code: str,
    lon: float,
    lat: float,
    name: str = "",
    height_m: float | None = None,
) -> tuple[Camera, bool]:
    """The camera `code` at (lon, lat), created or updated; returns (camera, created)."""
    camera = get_camera(session=session, code=code)
    created = camera is None
    if camera is None:
        camera = Camera(code=code)
        session.add(camera)
    position = Point(lon, lat)
    camera.name = name
    camera.height_m = height_m
    camera.geom = position
    camera.jurisdiction_id = jurisdiction_for(position, session=session)
    session.flush()
    return camera, created


def calibrate(
    *,
    camera_code: str,
    image_size: tuple[int, int],
    control_points: Sequence[dict[str, Any]],
    params: GeolocateParams | None = None,
    farmland: BaseGeometry | None = None,
    parcels: Sequence[BaseGeometry] = (),
) -> Calibration:
    """Fit the preset's homography; `CalibrationError` (a 422) says what is wrong."""
    points = parse_control_points(control_points)
    return fit_calibration(
        points,
        camera_id=camera_code,
        image_size=image_size,
        farmland=farmland,
        parcels=parcels,
        params=params,
    )


def register_preset(
    *,
    session: Session,
    camera_code: str,
    preset: str,
    image_size: tuple[int, int],
    control_points: Sequence[dict[str, Any]],
    params: GeolocateParams | None = None,
    now: datetime | None = None,
) -> tuple[CameraPreset, bool]:
    """Calibrate and store preset `preset` of camera `camera_code`; returns (preset, created).

    Recalibrating with other points or another image size starts the detector's memory of
    the view afresh: the old background no longer lines up with the new mapping.
    """
    camera = get_camera_or_raise(session=session, code=camera_code)
    calibration = calibrate(
        camera_code=camera_code, image_size=image_size, control_points=control_points, params=params
    )
    footprint = _polygon(ground_footprint(calibration, params=params), preset)
    row = session.scalars(
        select(CameraPreset).where(
            CameraPreset.camera_id == camera.id, CameraPreset.preset == preset
        )
    ).one_or_none()
    created = row is None
    if row is None:
        row = CameraPreset(camera_id=camera.id, preset=preset, detector_state_version=0)
        session.add(row)
    points = [
        {"pixel": [float(v) for v in p["pixel"]], "lon": float(p["lon"]), "lat": float(p["lat"])}
        for p in control_points
    ]
    if not created and (
        (row.image_width, row.image_height) != tuple(image_size) or row.control_points != points
    ):
        store_state(row, None, session=session)
        row.detector_state_version += 1
    row.image_width, row.image_height = image_size
    row.control_points = points
    row.homography = calibration.homography.tolist()
    row.rms_error_m = calibration.rms_error_m
    row.calibrated_at = now or utcnow()
    row.geom = footprint
    session.flush()
    return row, created


def preset_calibration(
    preset: CameraPreset, *, camera_code: str, farmland: BaseGeometry | None = None
) -> Calibration:
    """The stored calibration of a preset, watching `farmland` (lon/lat), for the detector."""
    if preset.homography is None:
        raise InvalidInputError(
            f"preset {preset.preset!r} of camera {camera_code!r} is not calibrated: "
            f"PUT /v1/cameras/{camera_code}/presets/{preset.preset} with control points"
        )
    return stored_calibration(
        camera_code=camera_code,
        image_size=(preset.image_width, preset.image_height),
        control_points=preset.control_points,
        homography=preset.homography,
        rms_error_m=preset.rms_error_m,
        farmland=farmland,
    )


def stored_calibration(
    *,
    camera_code: str,
    image_size: tuple[int, int],
    control_points: Sequence[dict[str, Any]],
    homography: Sequence[Sequence[float]],
    rms_error_m: float | None,
    farmland: BaseGeometry | None = None,
    parcels: Sequence[BaseGeometry] = (),
) -> Calibration:
    """The calibration `register_preset` fitted and stored, without fitting it again.

    The stored calibration was accepted when registered; later limits do not undo it. Its
    ground CRS is the UTM zone of the control points, as when it was fitted.
    """
    matrix = np.asarray(homography, dtype=np.float64)
    if matrix.shape != (3, 3) or not np.isfinite(matrix).all():
        raise CalibrationError(
            f"camera {camera_code!r}: the stored homography is not a finite 3×3 matrix; "
            "register the preset's control points again"
        )
    points = parse_control_points(control_points)
    lon = float(np.mean([point.lon for point in points]))
    lat = float(np.mean([point.lat for point in points]))
    return Calibration(
        camera_id=camera_code,
        image_size=(int(image_size[0]), int(image_size[1])),
        homography=matrix,
        epsg=utm_epsg(lon, lat),
        rms_error_m=float(rms_error_m) if rms_error_m is not None else float("nan"),
        farmland=farmland,
        parcels=tuple(parcels),
    )


def _polygon(footprint: BaseGeometry, preset: str) -> Polygon:
    # The footprint is one convex-ish region cut by the range circle; keep its largest part.
    if isinstance(footprint, Polygon) and not footprint.is_empty:
        return footprint
    parts = [g for g in getattr(footprint, "geoms", []) if isinstance(g, Polygon)]
    if not parts:
        raise InvalidInputError(
            f"preset {preset!r} sees no ground with these control points: check that they lie "
            "below the horizon and in front of the camera"
        )
    return max(parts, key=lambda part: part.area)
