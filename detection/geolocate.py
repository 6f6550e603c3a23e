"""Camera geolocation: image-to-ground homographies fitted from control points, and projections.

A tower camera looks at nearly flat farmland, so one plane-to-plane homography per PTZ preset maps
full-resolution pixel coordinates (col, row) to ground coordinates. The ground side is a local
metric CRS (the UTM zone of the control points), so fitting residuals, ranges and areas are metres.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations
from typing import Any

import numpy as np
import shapely
from numpy.typing import NDArray
from pyproj import Transformer
from shapely.geometry import Point, Polygon, box, shape
from shapely.geometry.base import BaseGeometry
from skimage.transform import ProjectiveTransform

from detection.errors import CalibrationError

MIN_CONTROL_POINTS = 4
# Smallest triangle (as a fraction of the control points' spread squared) that still counts as
# three points in general position; below it a 4-point homography is degenerate.
_MIN_RELATIVE_TRIANGLE = 1e-3


@dataclass(frozen=True)
class GeolocateParams:
    """Limits for accepting a calibration and for a preset's ground footprint.

    Attributes
    ----------
    max_rms_m : float
        Refuse calibrations whose control-point RMS error on the ground exceeds this, metres.
    max_range_m : float
        The footprint ends this far from the nearest ground the camera sees, metres.
    max_pixel_area_m2 : float
        The footprint also ends where one full-resolution pixel covers more ground than this,
        m², leaving the farmland farther out to remote sensing. 0.625 is where a 10 m × 10 m
        object still covers the 160 pixels of the camera detector's 10 working pixels at 1/4
        resolution (`detection.camera.CameraParams`: ``reduce``, ``min_area_px``). Off
        (``math.inf``) by default: on six simulated worlds that limit cost 3 of 23 violations
        found in time (of 220–760 m², found beyond it) for 3 fewer false alarms
        (benchmarks/RESULTS.md).
    max_condition : float
        Refuse homographies whose normalised 3×3 matrix has a larger condition number.
    """

    max_rms_m: float = 5.0
    max_range_m: float = 3000.0
    max_pixel_area_m2: float = math.inf
    max_condition: float = 1e7


@dataclass(frozen=True)
class ControlPoint:
    """One pixel ↔ ground correspondence: full-resolution (col, row) and (lon, lat) in degrees."""

    col: float
    row: float
    lon: float
    lat: float


@dataclass(frozen=True)
class Calibration:
    """A preset's fitted image-to-ground mapping.

    Attributes
    ----------
    camera_id : str
        The camera's reported id.
    image_size : tuple of int
        (width, height) of full-resolution snapshots, pixels.
    homography : ndarray of shape (3, 3)
        Maps homogeneous (col, row, 1) to local ground (x, y, w), metres after dividing by w;
        scaled so that w > 0 in front of the camera.
    epsg : int
        The local metric CRS (a UTM zone) of the ground side.
    rms_error_m : float
        Root-mean-square ground error at the control points, metres.
    farmland : shapely geometry or None
        The farmland to watch, lon/lat degrees (EPSG:4326); None watches the whole view.
    parcels : tuple of shapely geometries
        The farmland parcels in view (cultivated-land patches of the one map), lon/lat degrees:
        the units farm work acts on. Empty when not known.
    """

    camera_id: str
    image_size: tuple[int, int]
    homography: NDArray[np.float64]
    epsg: int
    rms_error_m: float
    farmland: BaseGeometry | None = None
    parcels: tuple[BaseGeometry, ...] = ()


@lru_cache(maxsize=16)
def _transformers(epsg: int) -> tuple[Transformer, Transformer]:
    # Building a Transformer is slow; one pair per zone is reused for the process lifetime.
    forward = Transformer.from_crs(4326, epsg, always_xy=True)
    return forward, Transformer.from_crs(epsg, 4326, always_xy=True)


def utm_epsg(lon: float, lat: float) -> int:
    """Return the EPSG code of the WGS 84 UTM zone containing (lon, lat) in degrees."""
    zone = min(int((lon + 180.0) // 6.0) + 1, 60)
    return (32600 if lat >= 0 else 32700) + zone


def lonlat_to_local(xy: NDArray[np.float64], *, epsg: int) -> NDArray[np.float64]:
    """Project (lon, lat) degrees of shape (n, 2) to local metric (x, y) of shape (n, 2), metres."""
    forward, _ = _transformers(epsg)
    x, y = forward.transform(xy[:, 0], xy[:, 1])
    return np.column_stack([x, y])


def local_to_lonlat(xy: NDArray[np.float64], *, epsg: int) -> NDArray[np.float64]:
    """Inverse of :func:`lonlat_to_local`: metres (n, 2) to (lon, lat) degrees (n, 2)."""
    _, inverse = _transformers(epsg)
    lon, lat = inverse.transform(xy[:, 0], xy[:, 1])
    return np.column_stack([lon, lat])


def parse_control_points(items: Sequence[Mapping[str, Any]]) -> list[ControlPoint]:
    """Read ``[{"pixel": [col, row], "lon": .., "lat": ..}, ...]`` into control points."""
    points = []
    for index, item in enumerate(items):
        try:
            col, row = (float(v) for v in item["pixel"])
            lon, lat = float(item["lon"]), float(item["lat"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CalibrationError(
                f"control point {index} must look like "
                f'{{"pixel": [col, row], "lon": 120.1, "lat": 30.2}}; got {item!r}'
            ) from exc
        if not (-180 <= lon <= 180 and -90 <= lat <= 90) or not all(
            math.isfinite(v) for v in (col, row, lon, lat)
        ):
            raise CalibrationError(
                f"control point {index} has lon={lon}, lat={lat}: give finite degrees in "
                "[-180, 180] × [-90, 90] (longitude first)"
            )
        points.append(ControlPoint(col=col, row=row, lon=lon, lat=lat))
    return points


def _check_general_position(coords: NDArray[np.float64], what: str) -> None:
    centred = coords - coords.mean(axis=0)
    spread = float(np.sqrt((centred**2).sum(axis=1).mean()))
    singular = np.linalg.svd(centred, compute_uv=False)
    if spread == 0 or singular[-1] / singular[0] < 1e-3:
        raise CalibrationError(
            f"the control points' {what} are (nearly) collinear: pick points spread over the "
            "image, not along one line"
        )
    for a, b, c in combinations(coords, 3) if len(coords) == MIN_CONTROL_POINTS else ():
        u, v = b - a, c - a
        area = abs(u[0] * v[1] - u[1] * v[0]) / 2
        if area < _MIN_RELATIVE_TRIANGLE * spread**2:
            raise CalibrationError(
                f"three of the four control points' {what} lie on one line, which leaves the "
                "homography undetermined: move one of them or add more points"
            )


def _fit_homography(
    pixels: NDArray[np.float64], ground: NDArray[np.float64]
) -> ProjectiveTransform:
    transform = ProjectiveTransform.from_estimate(pixels, ground)
    if not transform:
        raise CalibrationError(
            f"no homography fits these control points ({transform}): check for duplicates"
        )
    return transform


def _oriented(matrix: NDArray[np.float64], pixels: NDArray[np.float64]) -> NDArray[np.float64]:
    w = matrix[2, 0] * pixels[:, 0] + matrix[2, 1] * pixels[:, 1] + matrix[2, 2]
    if np.all(w > 0):
        return matrix
    if np.all(w < 0):
        return -matrix
    raise CalibrationError(
        "the control points straddle the horizon of the fitted homography (some would lie "
        "behind the camera): check that pixel and lon/lat belong together and are not swapped"
    )


def fit_calibration(
    points: Sequence[ControlPoint],
    *,
    camera_id: str,
    image_size: tuple[int, int],
    farmland: BaseGeometry | None = None,
    parcels: Sequence[BaseGeometry] = (),
    params: GeolocateParams | None = None,
) -> Calibration:
    """Fit a preset's image-to-ground homography and refuse unusable calibrations.

    Parameters
    ----------
    points : sequence of ControlPoint
        At least 4 correspondences in general position, full-resolution pixels ↔ lon/lat.
    camera_id : str
        The camera's id, carried into the result.
    image_size : tuple of int
        (width, height) of full-resolution snapshots, pixels.
    farmland : shapely geometry, optional
        The farmland to watch, lon/lat degrees.
    parcels : sequence of shapely geometries, optional
        The farmland parcels in view, lon/lat degrees (see :class:`Calibration`).
    params : GeolocateParams, optional
        Acceptance limits (RMS in metres, condition number).

    Returns
    -------
    Calibration
        The homography, its local CRS and the RMS ground error in metres.

    Raises
    ------
    CalibrationError
        Fewer than 4 points, collinear or degenerate points, points outside the image, or an
        RMS error above ``params.max_rms_m``.
    """
    params = params or GeolocateParams()
    width, height = image_size
    if len(points) < MIN_CONTROL_POINTS:
        raise CalibrationError(
            f"{len(points)} control points given; a ground homography needs at least "
            f"{MIN_CONTROL_POINTS} (pixel ↔ lon/lat) spread over the image"
        )
    pixels = np.array([[p.col, p.row] for p in points], dtype=np.float64)
    outside = (pixels < 0).any(axis=1) | (pixels[:, 0] > width) | (pixels[:, 1] > height)
    if outside.any():
        raise CalibrationError(
            f"control point(s) {np.flatnonzero(outside).tolist()} lie outside the "
            f"{width}×{height} image: pixel coordinates are [col, row] at full resolution"
        )
    lonlat = np.array([[p.lon, p.lat] for p in points], dtype=np.float64)
    epsg = utm_epsg(float(lonlat[:, 0].mean()), float(lonlat[:, 1].mean()))
    ground = lonlat_to_local(lonlat, epsg=epsg)
    _check_general_position(pixels, "pixels")
    _check_general_position(ground, "ground positions")
    transform = _fit_homography(pixels, ground)
    matrix = _oriented(transform.params / np.linalg.norm(transform.params), pixels)
    _check_conditioning(matrix, width=width, height=height, ground=ground, params=params)
    residual = _apply(matrix, pixels) - ground
    rms = float(np.sqrt((residual**2).sum(axis=1).mean()))
    if not rms <= params.max_rms_m:
        raise CalibrationError(
            f"calibration RMS error {rms:.1f} m exceeds {params.max_rms_m:g} m: re-measure the "
            "control points or drop the outliers (largest residual at point "
            f"{int(np.argmax((residual**2).sum(axis=1)))})"
        )
    return Calibration(
        camera_id=camera_id,
        image_size=(int(width), int(height)),
        homography=matrix,
        epsg=epsg,
        rms_error_m=rms,
        farmland=farmland,
        parcels=tuple(parcels),
    )


def _check_conditioning(
    matrix: NDArray[np.float64],
    *,
    width: int,
    height: int,
    ground: NDArray[np.float64],
    params: GeolocateParams,
) -> None:
    # Condition the matrix on unit-scaled coordinates so the number does not depend on units.
    pixel_scale = np.diag([width, height, 1.0])
    centre = ground.mean(axis=0)
    extent = float(np.abs(ground - centre).max()) or 1.0
    to_unit = np.array([[1 / extent, 0, -centre[0] / extent], [0, 1 / extent, -centre[1] / extent]])
    normalised = np.vstack([to_unit, [0, 0, 1]]) @ matrix @ pixel_scale
    condition = float(np.linalg.cond(normalised))
    if not condition <= params.max_condition:
        raise CalibrationError(
            f"the fitted homography is degenerate (condition number {condition:.2g}): spread "
            "the control points over the farmland in view"
        )


def _apply(matrix: NDArray[np.float64], xy: NDArray[np.float64]) -> NDArray[np.float64]:
    homogeneous = np.column_stack([xy, np.ones(len(xy))]) @ matrix.T
    return homogeneous[:, :2] / homogeneous[:, 2:3]


def calibration_from_mapping(
    data: Mapping[str, Any], *, params: GeolocateParams | None = None
) -> Calibration:
    """Fit a calibration from the CALIBRATION.json mapping.

    ``{"camera_id": str, "image_size": [width, height], "control_points": [...],
    "farmland": optional GeoJSON geometry in lon/lat, "parcels": optional list of GeoJSON
    geometries in lon/lat}``.
    """
    camera_id = data.get("camera_id")
    if not isinstance(camera_id, str) or not camera_id:
        raise CalibrationError('the calibration needs a non-empty "camera_id" string')
    size = data.get("image_size")
    if (
        not isinstance(size, list | tuple)
        or len(size) != 2
        or not all(isinstance(v, int) and v > 0 for v in size)
    ):
        raise CalibrationError(f'"image_size" must be [width, height] in pixels; got {size!r}')
    points = data.get("control_points")
    if not isinstance(points, list):
        raise CalibrationError('"control_points" must be a list of {"pixel", "lon", "lat"}')
    farmland = data.get("farmland")
    return fit_calibration(
        parse_control_points(points),
        camera_id=camera_id,
        image_size=(size[0], size[1]),
        farmland=_area_geometry(farmland, '"farmland"') if farmland is not None else None,
        parcels=_parcel_geometries(data.get("parcels")),
        params=params,
    )


def _parcel_geometries(items: Any) -> tuple[BaseGeometry, ...]:
    if items is None:
        return ()
    if not isinstance(items, list):
        raise CalibrationError(
            '"parcels" must be a list of GeoJSON Polygons or MultiPolygons in lon/lat, one a parcel'
        )
    return tuple(_area_geometry(item, f'"parcels"[{index}]') for index, item in enumerate(items))


def _area_geometry(geojson: Any, name: str) -> BaseGeometry:
    try:
        geometry = shape(geojson)
    except (AttributeError, KeyError, TypeError, ValueError, shapely.errors.GEOSException) as exc:
        raise CalibrationError(
            f"{name} must be a GeoJSON Polygon or MultiPolygon in lon/lat: {exc}"
        ) from exc
    if geometry.is_empty or geometry.geom_type not in {"Polygon", "MultiPolygon"}:
        raise CalibrationError(
            f"{name} must be a non-empty Polygon or MultiPolygon, got {geometry.geom_type}"
        )
    return shapely.make_valid(geometry) if not geometry.is_valid else geometry


def image_to_ground(calibration: Calibration, colrow: NDArray[np.float64]) -> NDArray[np.float64]:
    """Map full-resolution pixels (n, 2) as (col, row) to local ground (x, y) metres (n, 2)."""
    return _apply(calibration.homography, np.asarray(colrow, dtype=np.float64))


def ground_to_image(calibration: Calibration, xy: NDArray[np.float64]) -> NDArray[np.float64]:
    """Map local ground (x, y) metres (n, 2) to full-resolution (col, row) pixels (n, 2)."""
    inverse = np.asarray(np.linalg.inv(calibration.homography), dtype=np.float64)
    return _apply(inverse, np.asarray(xy, dtype=np.float64))


def lonlat_to_image(calibration: Calibration, lonlat: NDArray[np.float64]) -> NDArray[np.float64]:
    """Map (lon, lat) degrees (n, 2) to full-resolution (col, row) pixels (n, 2)."""
    return ground_to_image(calibration, lonlat_to_local(lonlat, epsg=calibration.epsg))


def image_to_lonlat(calibration: Calibration, colrow: NDArray[np.float64]) -> NDArray[np.float64]:
    """Map full-resolution (col, row) pixels (n, 2) to (lon, lat) degrees (n, 2)."""
    return local_to_lonlat(image_to_ground(calibration, colrow), epsg=calibration.epsg)


def _transform_geometry(geometry: BaseGeometry, func: Any) -> BaseGeometry:
    return shapely.transform(geometry, func)


def visible_image_region(
    calibration: Calibration, *, params: GeolocateParams | None = None
) -> Polygon:
    """The part of the image, in full-resolution (col, row), that shows ground within range.

    The image rectangle is cut by the homography's horizon, by where a pixel covers more than
    ``params.max_pixel_area_m2`` of ground, and by ``params.max_range_m`` from the ground seen
    at the bottom centre of the image (the nearest ground the camera sees).
    """
    params = params or GeolocateParams()
    footprint = _footprint_local(calibration, params=params)
    return _transform_geometry(footprint, lambda xy: ground_to_image(calibration, xy))


def _footprint_local(calibration: Calibration, *, params: GeolocateParams) -> BaseGeometry:
    width, height = calibration.image_size
    h = calibration.homography
    # w = h20*col + h21*row + h22 > margin keeps only ground in front of the camera; the margin
    # stops far-field points (tiny w) from blowing up to infinity before the range cut.
    w_scale = abs(h[2, 0]) * width + abs(h[2, 1]) * height + abs(h[2, 2])
    margin = 1e-6 * w_scale
    big = 4.0 * (width + height)
    frame = box(0, 0, width, height)
    image = frame.intersection(_half_plane(h[2], margin=margin, extent=big))
    if image.is_empty:
        raise CalibrationError("the calibrated homography puts the whole image above the horizon")
    # A pixel at (col, row) covers |det h| / w³ of ground, so the pixels covering at most
    # max_pixel_area_m2 are again a half-plane of w, nearer the camera than the horizon.
    resolving = (abs(float(np.linalg.det(h))) / params.max_pixel_area_m2) ** (1 / 3)
    if resolving > margin:
        image = frame.intersection(_half_plane(h[2], margin=resolving, extent=big))
        if image.is_empty:
            raise CalibrationError(
                f"every pixel of this view covers more than {params.max_pixel_area_m2:g} m² "
                "of ground: too far or too wide to watch farmland; zoom in or tilt down"
            )
    ground = _transform_geometry(image, lambda xy: image_to_ground(calibration, xy))
    near = image_to_ground(calibration, np.array([[width / 2, height - 0.5]]))[0]
    return ground.intersection(Point(near).buffer(params.max_range_m, quad_segs=32))


def _half_plane(line: NDArray[np.float64], *, margin: float, extent: float) -> Polygon:
    a, b, c = line
    norm = math.hypot(a, b)
    if norm == 0:  # affine camera: the whole plane is in front
        return box(-extent, -extent, extent, extent)
    # A large polygon covering {a*col + b*row + c >= margin}.
    nx, ny = a / norm, b / norm
    offset = (margin - c) / norm
    px, py = nx * offset, ny * offset
    tx, ty = -ny, nx
    return Polygon(
        [
            (px + tx * extent, py + ty * extent),
            (px + tx * extent + nx * extent, py + ty * extent + ny * extent),
            (px - tx * extent + nx * extent, py - ty * extent + ny * extent),
            (px - tx * extent, py - ty * extent),
        ]
    )


def ground_footprint(
    calibration: Calibration, *, params: GeolocateParams | None = None
) -> BaseGeometry:
    """The ground a preset sees, lon/lat degrees (EPSG:4326), for coverage and blind spots."""
    params = params or GeolocateParams()
    local = _footprint_local(calibration, params=params)
    return _transform_geometry(local, lambda xy: local_to_lonlat(xy, epsg=calibration.epsg))


def watched_ground(
    calibration: Calibration, *, params: GeolocateParams | None = None
) -> BaseGeometry:
    """The farmland this preset can actually see (footprint ∩ farmland), lon/lat degrees."""
    footprint = ground_footprint(calibration, params=params)
    if calibration.farmland is None:
        return footprint
    return footprint.intersection(calibration.farmland)


def parcels_in_image(
    calibration: Calibration, *, params: GeolocateParams | None = None
) -> list[BaseGeometry]:
    """The calibration's parcels drawn in the image, full-resolution (col, row) coordinates.

    One geometry per parcel, in the calibration's order; the part of a parcel the preset does
    not see (behind the horizon, beyond range, outside the frame) is cut off, so a parcel out
    of sight is empty.
    """
    footprint = ground_footprint(calibration, params=params)
    # All parcels at once: one projection call for every vertex instead of one a parcel.
    seen = shapely.intersection(np.asarray(calibration.parcels, dtype=object), footprint)
    return list(_drawn_in_frame(calibration, seen))


def watched_image_region(
    calibration: Calibration, *, params: GeolocateParams | None = None
) -> BaseGeometry:
    """:func:`watched_ground` drawn in the image, full-resolution (col, row) coordinates."""
    return _drawn_in_frame(calibration, watched_ground(calibration, params=params))


def _drawn_in_frame(calibration: Calibration, lonlat: Any) -> Any:
    """Lon/lat geometry (or an array of them) in full-resolution image coordinates, cut to
    the frame; geometries behind the camera must have been cut off first."""
    image = _transform_geometry(lonlat, lambda xy: lonlat_to_image(calibration, xy))
    width, height = calibration.image_size
    return shapely.intersection(image, box(0, 0, width, height))


def image_geometry_to_lonlat(calibration: Calibration, geometry: BaseGeometry) -> BaseGeometry:
    """Map a geometry in full-resolution (col, row) image coordinates to lon/lat degrees."""
    return _transform_geometry(geometry, lambda xy: image_to_lonlat(calibration, xy))


def ground_area_m2(calibration: Calibration, lonlat_geometry: BaseGeometry) -> float:
    """Area of a lon/lat geometry on the ground, square metres (in the preset's UTM zone)."""
    local = _transform_geometry(
        lonlat_geometry, lambda xy: lonlat_to_local(xy, epsg=calibration.epsg)
    )
    return float(local.area)


def ground_extent_m(calibration: Calibration, lonlat_geometry: BaseGeometry) -> tuple[float, float]:
    """Long and short sides of the smallest rotated rectangle around a lon/lat geometry, metres."""
    local = _transform_geometry(
        lonlat_geometry, lambda xy: lonlat_to_local(xy, epsg=calibration.epsg)
    )
    rectangle = shapely.minimum_rotated_rectangle(local)
    if rectangle.geom_type != "Polygon":
        return float(rectangle.length), 0.0
    sides = np.hypot(*np.diff(np.asarray(rectangle.exterior.coords), axis=0).T)
    return float(sides.max()), float(sides.min())
