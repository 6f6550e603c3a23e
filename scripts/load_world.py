"""`tianxun world load DIR`: a simulated world's layers, jurisdictions and cameras, stored.

It calls the same importers and registration functions as `tianxun layers import`,
`tianxun jurisdictions import` and `PUT /v1/cameras/...`; loading the same world twice changes
nothing. Layer versions start a month before the world's first epoch, so that every scene of
the world is screened against them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy.orm import Session

from models.jurisdiction import JurisdictionLevel
from models.layer import LayerKind
from scripts.layers import run_in_transaction
from service.cameras.registry import register_camera, register_preset
from service.jurisdictions.importer import import_jurisdictions
from service.layers.importer import import_layer
from service.settings import Settings

world_app = typer.Typer(no_args_is_help=True, help="Simulated worlds (see `tianxun simulate`).")
LAYER_VERSION = "simulated"
LEAD_TIME = timedelta(days=31)


@dataclass
class WorldLoad:
    layers: list[str] = field(default_factory=list)
    jurisdictions: int = 0
    cameras: int = 0
    presets: int = 0

    def summary(self) -> str:
        return (
            f"loaded {len(self.layers)} layers ({', '.join(self.layers)}), "
            f"{self.jurisdictions} jurisdictions, "
            f"{self.cameras} cameras with {self.presets} presets"
        )


def register(app: typer.Typer) -> None:
    app.add_typer(world_app, name="world")


@world_app.command("load")
def world_load(
    directory: Annotated[Path, typer.Argument(help="Output folder of `tianxun simulate`.")],
) -> None:
    """Import a simulated world's layers, jurisdictions and camera registry."""
    settings = Settings()
    result = run_in_transaction(
        settings, lambda session: load_world(directory, session=session, settings=settings)
    )
    typer.echo(result.summary())


def load_world(directory: Path, *, session: Session, settings: Settings) -> WorldLoad:
    """Load everything but the imagery (which goes through ingest) from a simulated world."""
    world = _read_json(directory / "world.json")
    valid_from = _first_epoch(world) - LEAD_TIME
    loaded = WorldLoad()
    for path in sorted((directory / "layers").glob("*.geojson")):
        kind = LayerKind(path.stem)
        import_layer(
            path,
            session=session,
            settings=settings,
            kind=kind,
            version=LAYER_VERSION,
            valid_from=valid_from,
        )
        loaded.layers.append(kind.value)
    # The district the townships name is not part of the world: townships are the top level.
    levels = [
        ("township", JurisdictionLevel.township, None),
        ("village", JurisdictionLevel.village, "parent_code"),
    ]
    for stem, level, parent_field in levels:
        path = directory / "jurisdictions" / f"{stem}.geojson"
        if path.is_file():
            result = import_jurisdictions(
                path, session=session, settings=settings, level=level, parent_field=parent_field
            )
            loaded.jurisdictions += result.created + result.updated
    for camera in _read_json(directory / "cameras" / "registry.json"):
        _load_camera(camera, session=session)
        loaded.cameras += 1
        loaded.presets += len(camera["presets"])
    return loaded


def _load_camera(camera: dict[str, Any], *, session: Session) -> None:
    register_camera(
        session=session,
        code=camera["camera_id"],
        lon=camera["lon"],
        lat=camera["lat"],
        name=camera.get("name", camera["camera_id"]),
        height_m=camera.get("height_m"),
    )
    for preset in camera["presets"]:
        width, height = preset["image_size"]
        register_preset(
            session=session,
            camera_code=camera["camera_id"],
            preset=str(preset["preset"]),
            image_size=(width, height),
            control_points=preset["control_points"],
        )


def _first_epoch(world: dict[str, Any]) -> datetime:
    dates = [date.fromisoformat(epoch["date"]) for epoch in world["epochs"]]
    first = min(dates)
    return datetime(first.year, first.month, first.day, tzinfo=UTC)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise typer.BadParameter(
            f"cannot read {path}: {error}; pass the folder written by `tianxun simulate --out`"
        ) from error
