"""What the camera API takes and gives back."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from shapely.geometry import mapping

from models.camera import Camera, CameraHealth, CameraPreset


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ControlPointCreate(_Input):
    pixel: tuple[float, float] = Field(
        description="[col, row] in the full-resolution image, pixels from the top-left corner."
    )
    lon: float = Field(ge=-180, le=180, description="Longitude of that ground point, degrees.")
    lat: float = Field(ge=-90, le=90, description="Latitude of that ground point, degrees.")


class CameraCreate(_Input):
    code: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.\-]+$",
        description="The id the camera reports.",
    )
    name: str = Field("", max_length=200)
    lon: float = Field(ge=-180, le=180, description="Tower position, degrees.")
    lat: float = Field(ge=-90, le=90, description="Tower position, degrees.")
    height_m: float | None = Field(None, gt=0, le=1000, description="Mounting height, metres.")


class PresetCreate(_Input):
    image_width: int = Field(gt=0, le=20_000, description="Full-resolution snapshot width, px.")
    image_height: int = Field(gt=0, le=20_000, description="Full-resolution snapshot height, px.")
    control_points: list[ControlPointCreate] = Field(
        max_length=200,
        description="At least 4 pixel ↔ ground correspondences, not collinear, spread over the "
        "farmland in view.",
    )


class PresetRead(BaseModel):
    preset: str
    image_width: int
    image_height: int
    control_points: list[ControlPointCreate]
    rms_error_m: float | None
    calibrated_at: datetime | None
    footprint: dict[str, object] | None = Field(
        description="The ground the preset sees: a GeoJSON Polygon in lon/lat."
    )

    @classmethod
    def of(cls, preset: CameraPreset) -> PresetRead:
        return cls(
            preset=preset.preset,
            image_width=preset.image_width,
            image_height=preset.image_height,
            control_points=[ControlPointCreate(**point) for point in preset.control_points],
            rms_error_m=preset.rms_error_m,
            calibrated_at=preset.calibrated_at,
            footprint=dict(mapping(preset.geom)) if preset.geom is not None else None,
        )


class CameraRead(BaseModel):
    code: str
    name: str
    lon: float
    lat: float
    height_m: float | None
    health: CameraHealth
    last_seen_at: datetime | None
    jurisdiction_id: int | None
    presets: list[PresetRead]

    @classmethod
    def of(cls, camera: Camera, presets: list[CameraPreset]) -> CameraRead:
        return cls(
            code=camera.code,
            name=camera.name,
            lon=camera.geom.x,
            lat=camera.geom.y,
            height_m=camera.height_m,
            health=camera.health,
            last_seen_at=camera.last_seen_at,
            jurisdiction_id=camera.jurisdiction_id,
            presets=[PresetRead.of(preset) for preset in presets],
        )
