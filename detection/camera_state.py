"""What the camera detector returns per snapshot, and the per-preset state between snapshots."""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from numpy.typing import NDArray

from detection.camera_reference import NOISE_UNITS, ReferenceModel

# Format 2 added each background's residual noise and each streak's colour; format 1 states
# still load, their noise estimated from the background's spread, their streaks of unknown
# colour, and their single day background serves every time-of-day bucket until the bucket
# has its own.
_STATE_FORMAT = 2
_READABLE_FORMATS = (1, 2)
# The state is written after every analysed batch of a preset, so its cost is paid per job.
# numpy's savez_compressed deflates at level 6: on the ~2 MB state of a 1080p preset (noisy
# frames) that took 190 ms of CPU against 68 ms at level 1, for a blob only 5 % smaller.
_DEFLATE_LEVEL = 1


@dataclass(frozen=True)
class HealthEvent:
    """Something about the camera rather than the ground: moved, obstructed, night_ir, no_signal."""

    kind: str
    captured_at: datetime
    detail: str


@dataclass(frozen=True)
class CameraDetection:
    """A persistent change.

    Attributes
    ----------
    detection_id : int
        Sequence number within the preset's state.
    onset, confirmed_at : datetime
        Capture time of the first snapshot showing it, and of the snapshot confirming it (UTC).
    type : str
        A guess: building_or_hardening, soil_works, machinery_or_object or land_change.
    confidence : float
        Fraction in (0, 1).
    area_m2 : float
        Ground area of ``ground``, square metres.
    outline : shapely Polygon or MultiPolygon
        In full-resolution image coordinates (col, row).
    ground : shapely Polygon or MultiPolygon
        On the map, lon/lat degrees (EPSG:4326).
    """

    detection_id: int
    onset: datetime
    confirmed_at: datetime
    type: str
    confidence: float
    area_m2: float
    outline: object
    ground: object


@dataclass(frozen=True)
class SnapshotResult:
    """What one snapshot produced. ``rejection`` is set (and nothing else) for unusable input."""

    captured_at: datetime
    detections: tuple[CameraDetection, ...] = ()
    health: tuple[HealthEvent, ...] = ()
    rejection: str | None = None
    message: str = ""
    registration: str = ""
    shift_px: tuple[float, float] = (0.0, 0.0)
    candidates: NDArray[np.bool_] | None = None


@dataclass(frozen=True)
class CameraState:
    """Everything the detector remembers about one preset between snapshots.

    Attributes
    ----------
    shape : tuple of int
        Working resolution (rows, cols).
    references : dict of str to ReferenceModel
        Background per illumination mode ("day", "ir"), or with time-of-day buckets per
        bucket of daylight ("day_morning", "day_midday", "day_evening").
    streak : ndarray of shape (rows, cols), uint8
        Consecutive analysed snapshots in which each pixel was a change candidate.
    streak_start : ndarray of shape (rows, cols), int64
        Capture time (POSIX seconds) of the first snapshot of each pixel's streak.
    streak_colour : ndarray of shape (rows, cols, 3), int8
        Each streak's local colour difference from the background at its first snapshot, in
        steps of two grey levels; zero where unknown (no streak, or a format 1 state).
    open_mask : ndarray of shape (rows, cols), bool
        Pixels of changes already reported; never absorbed into the background.
    last_captured_at : datetime or None
        Capture time of the last snapshot accepted in order.
    last_mode : str
        Background (illumination mode and time of day) of the last analysed snapshot.
    accepted : int
        Snapshots analysed so far (drives the background update cadence).
    next_detection_id : int
        The id the next detection gets.
    failures : int
        Consecutive snapshots that could not be registered (a moved camera after a while).
    """

    shape: tuple[int, int]
    references: dict[str, ReferenceModel]
    streak: NDArray[np.uint8]
    streak_start: NDArray[np.int64]
    streak_colour: NDArray[np.int8]
    open_mask: NDArray[np.bool_]
    last_captured_at: datetime | None = None
    last_mode: str = "day"
    accepted: int = 0
    next_detection_id: int = 1
    failures: int = 0

    @classmethod
    def empty(cls, shape: tuple[int, int]) -> CameraState:
        """A state with no background yet for working resolution (rows, cols)."""
        return cls(
            shape=shape,
            references={},
            streak=np.zeros(shape, dtype=np.uint8),
            streak_start=np.zeros(shape, dtype=np.int64),
            streak_colour=np.zeros((*shape, 3), dtype=np.int8),
            open_mask=np.zeros(shape, dtype=bool),
        )

    def to_bytes(self) -> bytes:
        """Serialise to a compressed ``.npz`` (no pickles) for storage between snapshots."""
        meta = {
            "format": _STATE_FORMAT,
            "shape": list(self.shape),
            "last_captured_at": self.last_captured_at.isoformat()
            if self.last_captured_at
            else None,
            "last_mode": self.last_mode,
            "accepted": self.accepted,
            "next_detection_id": self.next_detection_id,
            "failures": self.failures,
            "references": {m: [r.count, r.added] for m, r in self.references.items()},
        }
        arrays: dict[str, NDArray[np.generic]] = {
            "meta": np.array(json.dumps(meta)),
            "streak": self.streak,
            "streak_start": self.streak_start,
            "streak_colour": self.streak_colour,
            "open_mask": self.open_mask,
        }
        for mode, ref in self.references.items():
            arrays[f"{mode}_frames"] = ref.frames
            arrays[f"{mode}_median"] = ref.median
            arrays[f"{mode}_spread"] = ref.spread
            arrays[f"{mode}_noise"] = ref.noise
        return _npz(arrays, level=_DEFLATE_LEVEL)

    @classmethod
    def from_bytes(cls, data: bytes) -> CameraState:
        """Inverse of :meth:`to_bytes`."""
        with np.load(io.BytesIO(data), allow_pickle=False) as stored:
            meta = json.loads(str(stored["meta"]))
            if meta.get("format") not in _READABLE_FORMATS:
                raise ValueError(
                    f"camera state format {meta.get('format')} is not one of "
                    f"{_READABLE_FORMATS}: start the preset from an empty state"
                )
            references = {
                mode: ReferenceModel(
                    frames=stored[f"{mode}_frames"],
                    count=count,
                    added=added,
                    median=stored[f"{mode}_median"],
                    spread=stored[f"{mode}_spread"],
                    noise=_noise(stored, mode),
                )
                for mode, (count, added) in meta["references"].items()
            }
            last = meta["last_captured_at"]
            return cls(
                shape=(int(meta["shape"][0]), int(meta["shape"][1])),
                references=references,
                streak=stored["streak"],
                streak_start=stored["streak_start"],
                streak_colour=_streak_colour(stored),
                open_mask=stored["open_mask"],
                last_captured_at=datetime.fromisoformat(last) if last else None,
                last_mode=meta["last_mode"],
                accepted=int(meta["accepted"]),
                next_detection_id=int(meta["next_detection_id"]),
                failures=int(meta["failures"]),
            )


def _streak_colour(stored: np.lib.npyio.NpzFile) -> NDArray[np.int8]:
    if "streak_colour" in stored.files:
        return np.asarray(stored["streak_colour"], dtype=np.int8)
    return np.zeros((*stored["streak"].shape, 3), dtype=np.int8)


def _noise(stored: np.lib.npyio.NpzFile, mode: str) -> NDArray[np.uint8]:
    if f"{mode}_noise" in stored.files:
        return np.asarray(stored[f"{mode}_noise"], dtype=np.uint8)
    # Format 1 kept no residual noise: the spread of the background frames is its nearest kin.
    spread = stored[f"{mode}_spread"].astype(np.int32) * NOISE_UNITS
    return np.minimum(spread, 255).astype(np.uint8)


def _npz(arrays: dict[str, NDArray[np.generic]], *, level: int) -> bytes:
    """An ``.npz`` archive as `np.load` reads it, deflated at `level` (1 fastest, 9 smallest)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)
    return buffer.getvalue()
