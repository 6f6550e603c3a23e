"""HTTP endpoints of camera registration: thin wrappers over `service.cameras.registry`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response

from service.auth import Admin, CurrentClient
from service.cameras.registry import (
    camera_presets,
    get_camera_or_raise,
    list_cameras,
    register_camera,
    register_preset,
)
from service.cameras.schemas import CameraCreate, CameraRead, PresetCreate, PresetRead
from service.deps import SessionDep

router = APIRouter(prefix="/v1/cameras", tags=["cameras"])

_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
PROBLEMS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No or unknown API key.", **_PROBLEM},
    403: {"description": "Only administrators register cameras.", **_PROBLEM},
    404: {"description": "Unknown camera.", **_PROBLEM},
    422: {
        "description": "Invalid fields, or a calibration refused: fewer than 4 control points, "
        "collinear points, or an RMS error above the limit.",
        **_PROBLEM,
    },
}
CameraCode = Annotated[str, Path(max_length=64, description="The id the camera reports.")]
PresetName = Annotated[
    str, Path(max_length=32, pattern=r"^[A-Za-z0-9_.\-]+$", description="The PTZ preset's name.")
]


@router.post(
    "",
    response_model=CameraRead,
    status_code=201,
    responses={
        200: {"description": "The camera existed: updated.", "model": CameraRead},
        **PROBLEMS,
    },
)
def post_camera(
    body: CameraCreate, session: SessionDep, caller: Admin, response: Response
) -> CameraRead:
    """Register a tower camera (or update its position and name); 200 when it existed."""
    camera, created = register_camera(
        session=session,
        code=body.code,
        lon=body.lon,
        lat=body.lat,
        name=body.name,
        height_m=body.height_m,
    )
    response.status_code = 201 if created else 200
    response.headers["Location"] = f"/v1/cameras/{camera.code}"
    return CameraRead.of(camera, camera_presets(session=session, camera_id=camera.id))


@router.get("", response_model=list[CameraRead], responses=PROBLEMS)
def get_cameras(session: SessionDep, caller: CurrentClient) -> list[CameraRead]:
    """Every registered camera with its presets."""
    return [
        CameraRead.of(camera, camera_presets(session=session, camera_id=camera.id))
        for camera in list_cameras(session=session)
    ]


@router.get("/{code}", response_model=CameraRead, responses=PROBLEMS)
def get_camera(code: CameraCode, session: SessionDep, caller: CurrentClient) -> CameraRead:
    camera = get_camera_or_raise(session=session, code=code)
    return CameraRead.of(camera, camera_presets(session=session, camera_id=camera.id))


@router.put(
    "/{code}/presets/{preset}", response_model=PresetRead, status_code=200, responses=PROBLEMS
)
def put_preset(
    code: CameraCode,
    preset: PresetName,
    body: PresetCreate,
    session: SessionDep,
    caller: Admin,
    response: Response,
) -> PresetRead:
    """Calibrate a preset from its control points; refused (422) when the fit is unusable."""
    row, created = register_preset(
        session=session,
        camera_code=code,
        preset=preset,
        image_size=(body.image_width, body.image_height),
        control_points=[point.model_dump() for point in body.control_points],
    )
    if created:
        response.status_code = 201
    return PresetRead.of(row)
