"""Parameters of a simulated world: one frozen dataclass, validated on construction."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from simulator.errors import SimulatorParamsError

_LOCAL_TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


@dataclass(frozen=True)
class WorldParams:
    """Everything that shapes a world; the same values always give the same files.

    Attributes
    ----------
    seed : int
        Seed of every random choice (numpy Generator streams derived from it).
    area_km2 : float
        Size of the square region, km². 4 gives a 2 km × 2 km world.
    epochs : int
        Number of acquisition dates spread evenly over `years` calendar years from `year`
        (24 epochs over 2 years are monthly).
    cameras : int
        Number of tower cameras.
    presets_per_camera : int
        PTZ presets per camera, each looking in another direction.
    snapshots_per_epoch : int
        Camera snapshots per preset and epoch, spread over `camera_days_per_epoch` days.
    camera_days_per_epoch : int
        Consecutive days, ending on the epoch date, on which the cameras take that epoch's
        snapshots; several snapshots fall on one day when there are more snapshots than days.
        Crops turn from the previous epoch's state into this one's over these snapshots, while
        violations appear at the first of them.
    pixel_size_m : float
        Ground sampling distance of the remote-sensing tiles, metres (0.5–2).
    crs : str
        Projected CRS of the tiles, ``"EPSG:<code>"``.
    center_lon, center_lat : float
        Centre of the region, degrees (default: farmland north of Hangzhou).
    year : int
        Calendar year of the first epoch.
    years : int
        Calendar years the epochs are spread over; crops follow the seasons of each.
    violations_per_km2 : float
        Injected violations per km² (at least one per type is placed when room allows).
    approved_builds : int
        Violation-looking builds placed inside approved construction parcels.
    image_size : tuple of int
        Camera frame size (width, height) in pixels.
    snapshot_times_local : tuple of str
        Local (UTC+8) capture times ``"HH:MM"`` of the snapshots of one day; if a day has more
        snapshots than times, the last one is repeated a few minutes later.
    max_cloud_fraction : float
        Largest cloud cover of one tile, fraction.
    """

    seed: int = 1
    area_km2: float = 4.0
    epochs: int = 12
    cameras: int = 6
    presets_per_camera: int = 1
    snapshots_per_epoch: int = 3
    camera_days_per_epoch: int = 3
    pixel_size_m: float = 1.0
    crs: str = "EPSG:32651"
    center_lon: float = 120.02
    center_lat: float = 30.42
    year: int = 2025  # a past year: snapshots dated in the future are refused at ingest
    years: int = 1
    violations_per_km2: float = 6.0
    approved_builds: int = 2
    image_size: tuple[int, int] = (1920, 1080)
    snapshot_times_local: tuple[str, ...] = field(default=("09:30", "09:36", "16:10"))
    max_cloud_fraction: float = 0.35

    def __post_init__(self) -> None:
        checks = [
            (0.05 <= self.area_km2 <= 100, "area_km2 must be between 0.05 and 100 km²"),
            (2 <= self.epochs <= 60, "epochs must be between 2 and 60 (one before, one after)"),
            (1 <= self.years <= 5, "years must be between 1 and 5"),
            (0 <= self.cameras <= 50, "cameras must be between 0 and 50"),
            (1 <= self.presets_per_camera <= 4, "presets_per_camera must be between 1 and 4"),
            (1 <= self.snapshots_per_epoch <= 48, "snapshots_per_epoch must be between 1 and 48"),
            (
                1 <= self.camera_days_per_epoch <= 14,
                "camera_days_per_epoch must be between 1 and 14 (days before each epoch date)",
            ),
            (0.5 <= self.pixel_size_m <= 2.0, "pixel_size_m must be between 0.5 and 2 metres"),
            (re.fullmatch(r"EPSG:\d{4,5}", self.crs) is not None, "crs must look like EPSG:32651"),
            (-180 < self.center_lon < 180 and -80 < self.center_lat < 84, "centre out of range"),
            (0 <= self.violations_per_km2 <= 100, "violations_per_km2 must be within 0–100"),
            (0 <= self.approved_builds <= 10, "approved_builds must be within 0–10"),
            (0 <= self.max_cloud_fraction <= 0.9, "max_cloud_fraction must be within 0–0.9"),
            (
                320 <= self.image_size[0] <= 4096 and 240 <= self.image_size[1] <= 4096,
                "image_size must be (width, height) within 320×240 and 4096×4096",
            ),
            (
                len(self.snapshot_times_local) >= 1
                and all(_LOCAL_TIME.match(t) for t in self.snapshot_times_local),
                "snapshot_times_local must be 'HH:MM' strings, e.g. ('09:30', '16:10')",
            ),
        ]
        problems = [message for ok, message in checks if not ok]
        if problems:
            raise SimulatorParamsError("; ".join(problems) + ". Fix these WorldParams values.")

    @property
    def side_m(self) -> float:
        """Side of the square region in metres, a whole number of pixels."""
        side = (self.area_km2**0.5) * 1000.0
        return round(side / self.pixel_size_m) * self.pixel_size_m
