"""A synthetic tower-camera scene with a known ground homography, for the camera detector tests.

A pinhole camera 40 m up a tower looks north, tilted 12° down, over textured farm parcels. The
scene renders snapshots at working resolution (1/4 of 1920×1080) with optional painted ground
patches, passing vehicles, exposure changes and sway.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from detection.geolocate import local_to_lonlat, lonlat_to_local, utm_epsg

ORIGIN_LONLAT = (120.1, 30.2)
FULL_SIZE = (1920, 1080)
REDUCE = 4


def _camera_matrix(height_m: float = 40.0, tilt_deg: float = 12.0) -> NDArray[np.float64]:
    """Ground (x east, y north, metres from the tower foot) → image (col, row) homography."""
    focal, cx, cy = 1500.0, FULL_SIZE[0] / 2, FULL_SIZE[1] / 2
    k = np.array([[focal, 0, cx], [0, focal, cy], [0, 0, 1]])
    # World → camera for a camera looking north: x_cam = east, y_cam = down, z_cam = north.
    look_north = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])
    t = np.radians(tilt_deg)
    tilt = np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])
    rotation = tilt @ look_north
    centre = np.array([0.0, 0.0, height_m])
    columns = np.column_stack([rotation[:, 0], rotation[:, 1], -rotation @ centre])
    return k @ columns


@dataclass
class Scene:
    """A camera preset over textured parcels; ground in metres from the tower foot."""

    seed: int = 0
    ground_to_image: NDArray[np.float64] = field(default_factory=_camera_matrix)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        self.epsg = utm_epsg(*ORIGIN_LONLAT)
        self.origin = lonlat_to_local(np.array([ORIGIN_LONLAT]), epsg=self.epsg)[0]
        self.parcel_colours = rng.uniform(0.25, 0.6, size=(64, 64, 3)) * [0.8, 1.0, 0.6]
        self.grain = rng.normal(0.0, 0.06, size=(512, 512))
        self.image_to_ground = np.linalg.inv(self.ground_to_image)

    def ground_of_pixels(self, colrow: NDArray[np.float64]) -> NDArray[np.float64]:
        """Full-resolution (col, row) → ground metres from the tower foot."""
        homogeneous = np.column_stack([colrow, np.ones(len(colrow))]) @ self.image_to_ground.T
        return homogeneous[:, :2] / homogeneous[:, 2:3]

    def pixels_of_ground(self, xy: NDArray[np.float64]) -> NDArray[np.float64]:
        homogeneous = np.column_stack([xy, np.ones(len(xy))]) @ self.ground_to_image.T
        return homogeneous[:, :2] / homogeneous[:, 2:3]

    def lonlat(self, xy: NDArray[np.float64]) -> NDArray[np.float64]:
        """Ground metres from the tower foot → lon/lat degrees."""
        return local_to_lonlat(np.asarray(xy, dtype=np.float64) + self.origin, epsg=self.epsg)

    def calibration_mapping(self, *, farmland: bool = True) -> dict[str, object]:
        """The CALIBRATION.json content for this preset, with 9 exact control points."""
        pixels = [(c, r) for r in (350.0, 650.0, 1000.0) for c in (200.0, 960.0, 1700.0)]
        ground = self.ground_of_pixels(np.array(pixels))
        lonlat = self.lonlat(ground)
        data: dict[str, object] = {
            "camera_id": "tower-7",
            "image_size": list(FULL_SIZE),
            "control_points": [
                {"pixel": [c, r], "lon": float(lon), "lat": float(lat)}
                for (c, r), (lon, lat) in zip(pixels, lonlat, strict=True)
            ],
        }
        if farmland:
            ring = self.lonlat(np.array([[-400, 70], [400, 70], [400, 700], [-400, 700]]))
            data["farmland"] = {
                "type": "Polygon",
                "coordinates": [[*map(list, ring), list(ring[0])]],
            }
        return data

    def render(
        self,
        *,
        patches: list[tuple[float, float, float, float, tuple[float, float, float]]] = (),
        blobs: list[tuple[float, float, float]] = (),
        gain: float = 1.0,
        offset: float = 0.0,
        shift: tuple[int, int] = (0, 0),
        noise_seed: int | None = None,
    ) -> NDArray[np.uint8]:
        """A working-resolution RGB snapshot (270, 480, 3).

        ``patches`` are ground rectangles (x0, y0, x1, y1, rgb) in metres; ``blobs`` are dark
        vehicles (x, y, radius_m); ``shift`` translates the frame by whole working pixels.
        """
        rows, cols = FULL_SIZE[1] // REDUCE, FULL_SIZE[0] // REDUCE
        rr, cc = np.mgrid[0:rows, 0:cols]
        colrow = np.column_stack([(cc.ravel() + 0.5) * REDUCE, (rr.ravel() + 0.5) * REDUCE])
        homogeneous = np.column_stack([colrow, np.ones(len(colrow))]) @ self.image_to_ground.T
        sky = homogeneous[:, 2] <= 0
        xy = homogeneous[:, :2] / np.where(sky, 1.0, homogeneous[:, 2])[:, None]
        x, y = xy[:, 0], xy[:, 1]
        parcel = self.parcel_colours[
            (np.floor(x / 25.0).astype(int) % 64), (np.floor(y / 40.0).astype(int) % 64)
        ]
        grain = self.grain[
            (np.floor(x / 0.8).astype(int) % 512), (np.floor(y / 0.8).astype(int) % 512)
        ]
        image = parcel + grain[:, None]
        for x0, y0, x1, y1, rgb in patches:
            inside = (x >= x0) & (x < x1) & (y >= y0) & (y < y1)
            image[inside] = rgb
        for bx, by, radius in blobs:
            image[(x - bx) ** 2 + (y - by) ** 2 < radius**2] = (0.08, 0.08, 0.1)
        image[sky] = (0.7, 0.8, 0.9)
        image = image.reshape(rows, cols, 3) * gain + offset
        if noise_seed is not None:
            image = image + np.random.default_rng(noise_seed).normal(0, 0.01, image.shape)
        image = np.roll(image, shift, axis=(0, 1))
        # Optics and the JPEG's DCT scaling blur a real frame; aliasing-free texture needs it too.
        image = ndimage.gaussian_filter(image, sigma=(0.8, 0.8, 0))
        return np.clip(image * 255.0, 0, 255).astype(np.uint8)


def test_scene_control_points_round_trip() -> None:
    scene = Scene()
    pixels = np.array([[960.0, 900.0], [300.0, 500.0]])
    back = scene.pixels_of_ground(scene.ground_of_pixels(pixels))
    np.testing.assert_allclose(back, pixels, atol=1e-6)


def test_scene_looks_north_from_the_tower() -> None:
    scene = Scene()
    near, far = scene.ground_of_pixels(np.array([[960.0, 1079.0], [960.0, 300.0]]))
    assert 40 < near[1] < 100
    assert far[1] > 5 * near[1]
