"""HTTP endpoints of ingest: camera snapshots, remote-sensing tiles, and the scenes they make."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from models.client import Role
from models.scene import IngestJob, Scene
from service.auth import Ingester, Principal, require_roles
from service.deps import SessionDep
from service.errors import InvalidInputError, PayloadTooLargeError
from service.ingest.idempotency import Answer, request_fingerprint, run_idempotent
from service.ingest.scenes import (
    IngestResult,
    get_scene_or_raise,
    ingest_snapshot,
    ingest_tile,
    scene_jobs,
)
from service.ingest.schemas import JobRead, SceneRead, TileCreate
from service.ingest.store import (
    JPEG,
    TIFF,
    StagedObject,
    discard,
    resolve_allowed_path,
    stage_file,
    stage_upload,
)
from service.metrics import SCENES_INGESTED
from service.settings import Settings

router = APIRouter(prefix="/v1", tags=["ingest"])

# Scenes are not scoped to a jurisdiction; field inspectors work with cases, not raw scenes.
SceneReader = Annotated[
    Principal, Depends(require_roles(Role.admin, Role.ingest, Role.monitor, Role.analyst))
]

MAX_JSON_BYTES = 64 * 1024
_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
PROBLEMS: dict[int | str, dict[str, Any]] = {
    status: {"description": text, **_PROBLEM}
    for status, text in {
        403: "The path is outside the allow-listed ingest roots.",
        404: "Unknown camera or preset.",
        413: "The body exceeds the size limit.",
        415: "The body is not what the endpoint takes (checked by its magic bytes).",
        422: "Invalid parameters, a capture time in the future, or a reused Idempotency-Key.",
    }.items()
}
ACCEPTED: dict[int | str, dict[str, Any]] = {
    202: {"description": "Stored and queued for validation; Location names the scene."}
}
DUPLICATE: dict[int | str, dict[str, Any]] = {
    200: {"description": "The same bytes were already ingested: the existing scene."}
}
_BINARY = {"schema": {"type": "string", "format": "binary"}}

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Retry-safe key: the same key and request give the same answer.",
    ),
]


@router.post(
    "/cameras/{camera_id}/presets/{preset}/snapshots",
    status_code=202,
    response_model=SceneRead,
    summary="Upload a camera snapshot (the raw JPEG bytes as the body, not multipart)",
    responses={**DUPLICATE, **ACCEPTED, **PROBLEMS},
    openapi_extra={"requestBody": {"required": True, "content": {"image/jpeg": _BINARY}}},
)
async def post_snapshot(
    request: Request,
    camera_id: Annotated[str, Path(max_length=64, description="The camera's code.")],
    preset: Annotated[str, Path(max_length=32, description="The PTZ preset.")],
    captured_at: Annotated[
        datetime,
        Query(
            description="Capture time, ISO 8601 with a UTC offset, e.g. "
            "2026-11-28T08:30:00+08:00; not in the future."
        ),
    ],
    principal: Ingester,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    settings: Settings = request.app.state.settings
    staged = await stage_upload(
        request.headers.get("content-length"),
        request.stream(),
        settings.data_dir,
        kind=JPEG,
        max_bytes=settings.max_snapshot_bytes,
    )

    def ingest(session: Session) -> IngestResult:
        return ingest_snapshot(
            session=session,
            settings=settings,
            staged=staged,
            camera_code=camera_id,
            preset=preset,
            captured_at=captured_at,
            source=principal.name,
        )

    return await run_in_threadpool(
        _submit, request, staged, ingest, None, client_id=principal.client_id, key=idempotency_key
    )


@router.post(
    "/scenes",
    status_code=202,
    response_model=SceneRead,
    summary="Ingest a remote-sensing tile: upload GeoTIFF bytes, or name a file on the server",
    description="Send `image/tiff` bytes with `acquired_at` (and `sensor`) as query parameters, "
    "or `application/json` naming a file under an allow-listed ingest root.",
    responses={**DUPLICATE, **ACCEPTED, **PROBLEMS},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "image/tiff": _BINARY,
                "application/json": {"schema": TileCreate.model_json_schema()},
            },
        }
    },
)
async def post_scene(
    request: Request,
    acquired_at: Annotated[
        datetime | None,
        Query(description="Acquisition time (uploads only), ISO 8601 with a UTC offset."),
    ] = None,
    *,
    principal: Ingester,
    sensor: Annotated[str, Query(max_length=100, description="Sensor (uploads only).")] = "",
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    settings: Settings = request.app.state.settings
    spec: TileCreate | None = None
    if request.headers.get("content-type", "").split(";")[0].strip() == "application/json":
        spec = await _read_tile_spec(request)
        path = resolve_allowed_path(spec.path, settings.ingest_roots)
        staged = await run_in_threadpool(
            stage_file, path, settings.data_dir, kind=TIFF, max_bytes=settings.max_tile_bytes
        )
        acquired_at, sensor = spec.acquired_at, spec.sensor
    elif acquired_at is None:
        raise InvalidInputError(
            "query parameter acquired_at is required with an uploaded tile, e.g. "
            "?acquired_at=2026-11-28T02:30:00Z"
        )
    else:
        staged = await stage_upload(
            request.headers.get("content-length"),
            request.stream(),
            settings.data_dir,
            kind=TIFF,
            max_bytes=settings.max_tile_bytes,
        )
    when: datetime = acquired_at

    def ingest(session: Session) -> IngestResult:
        return ingest_tile(
            session=session,
            settings=settings,
            staged=staged,
            acquired_at=when,
            sensor=sensor,
            source=principal.name,
        )

    return await run_in_threadpool(
        _submit, request, staged, ingest, spec, client_id=principal.client_id, key=idempotency_key
    )


@router.get(
    "/scenes/{scene_id}",
    response_model=SceneRead,
    summary="A scene: its status, the reason if it failed, its jobs and its STAC item",
    responses={
        403: {"description": "Inspectors work with cases, not raw scenes.", **_PROBLEM},
        404: {"description": "No such scene.", **_PROBLEM},
    },
)
def get_scene(
    scene_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
    session: SessionDep,
    principal: SceneReader,
) -> SceneRead:
    return _describe(session, get_scene_or_raise(session=session, scene_id=scene_id))


async def _read_tile_spec(request: Request) -> TileCreate:
    body = b"".join([chunk async for chunk in _limited(request.stream(), MAX_JSON_BYTES)])
    try:
        spec = TileCreate.model_validate_json(body)
    except ValidationError as error:
        errors = error.errors(include_url=False)
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from error
    return spec


async def _limited(chunks: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"a JSON tile request must be under {limit} bytes")
        yield chunk


def _submit(
    request: Request,
    staged: StagedObject,
    ingest: Callable[[Session], IngestResult],
    spec: TileCreate | None,
    *,
    client_id: int,
    key: str | None,
) -> JSONResponse:
    fingerprint = request_fingerprint(
        request.method,
        request.url.path,
        request.query_params.multi_items(),
        # A path request's JSON names the file; an upload's parameters are in the query.
        spec.model_dump_json() if spec is not None else "",
        staged.sha256,
    )

    def work(session: Session) -> tuple[int, dict[str, Any]]:
        result = ingest(session)
        body = _describe(session, result.scene, jobs=result.jobs).model_dump(mode="json")
        return (202 if result.created else 200), body

    try:
        answer = run_idempotent(
            request.app.state.session_factory,
            key=key,
            fingerprint=fingerprint,
            work=work,
            client_id=client_id,
        )
    finally:
        discard(staged)  # a no-op once the object was moved into the store
    if not answer.replayed:
        kind = answer.body.get("kind", "")
        SCENES_INGESTED.labels(kind, str(answer.status_code == 202).lower()).inc()
    return _scene_response(answer)


def _scene_response(answer: Answer) -> JSONResponse:
    headers = {"Location": f"/v1/scenes/{answer.body['id']}"}
    if answer.replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(answer.body, status_code=answer.status_code, headers=headers)


def _describe(session: Session, scene: Scene, *, jobs: list[IngestJob] | None = None) -> SceneRead:
    read = SceneRead.model_validate(scene)
    if jobs is None:
        jobs = scene_jobs(session=session, scene_id=scene.id)
    read.jobs = [JobRead.model_validate(job) for job in jobs]
    return read
