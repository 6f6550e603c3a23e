"""HTTP endpoints of field evidence: upload a photo to a case, fetch an evidence file."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from service.auth import CaseReader, CaseWriter, Principal
from service.cases import queries
from service.cases.evidence import (
    PhotoClaims,
    add_field_photo,
    evidence_file,
    get_evidence_or_raise,
    place_photo,
    read_photo,
)
from service.cases.router import READ_PROBLEMS, CaseId, ReadSession
from service.cases.schemas import EvidenceRead
from service.db import SQLITE_IMMEDIATE, transaction
from service.deps import SettingsDep
from service.ingest.store import (
    JPEG,
    StagedObject,
    discard,
    stage_upload,
)
from service.rls import apply_scope
from service.settings import Settings

router = APIRouter(tags=["cases"])
_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
UPLOAD_PROBLEMS: dict[int | str, dict[str, Any]] = READ_PROBLEMS | {
    413: {"description": "The body or the pixel count exceeds the limit.", **_PROBLEM},
    415: {"description": "The body is not a JPEG.", **_PROBLEM},
    422: {"description": "Damaged JPEG, or no position or time in EXIF or query.", **_PROBLEM},
}
EvidenceId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The evidence id.")]
# Evidence is private to those who may see the case: never kept by shared caches.
PRIVATE = {"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"}


@router.post(
    "/v1/cases/{case_id}/evidence",
    status_code=201,
    response_model=EvidenceRead,
    summary="Attach a field photo (the raw JPEG bytes as the body, not multipart)",
    responses={200: {"description": "The same photo was already attached."}, **UPLOAD_PROBLEMS},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def post_evidence(
    request: Request,
    case_id: CaseId,
    principal: CaseWriter,
    lon: Annotated[float | None, Query(ge=-180, le=180, description="WGS 84; else EXIF.")] = None,
    lat: Annotated[float | None, Query(ge=-90, le=90, description="WGS 84; else EXIF.")] = None,
    taken_at: Annotated[
        datetime | None, Query(description="ISO 8601 with a UTC offset; else EXIF.")
    ] = None,
    caption: Annotated[str | None, Query(max_length=2000, description="What it shows.")] = None,
) -> JSONResponse:
    """Upload a photo taken on site. Position and time come from the query or the photo's
    EXIF; every metadata (GPS, maker notes, XMP, ICC, comments) is stripped from the copy
    that is kept and served, with its orientation applied to the pixels."""
    settings: Settings = request.app.state.settings
    await run_in_threadpool(_visible_case, request, principal, case_id)  # 404 before the body
    staged = await stage_upload(
        request.headers.get("content-length"),
        request.stream(),
        settings.data_dir,
        kind=JPEG,
        max_bytes=settings.max_evidence_bytes,
    )
    claims = PhotoClaims(lon, lat, taken_at, caption)
    try:
        read, created = await run_in_threadpool(
            _attach, request, principal, case_id, staged, claims
        )
    finally:
        discard(staged)  # the original, with its GPS, is never kept
    headers = {"Location": f"/v1/cases/{case_id}/evidence/{read.id}"}
    return JSONResponse(
        read.model_dump(mode="json"), status_code=201 if created else 200, headers=headers
    )


@router.get(
    "/v1/cases/{case_id}/evidence/{evidence_id}",
    response_class=FileResponse,
    summary="An evidence file (photo or image chip), metadata stripped",
    responses={200: {"content": {"image/jpeg": {}, "image/png": {}}}, **READ_PROBLEMS},
)
def get_evidence(
    case_id: CaseId,
    evidence_id: EvidenceId,
    principal: CaseReader,
    session: ReadSession,
    settings: SettingsDep,
) -> FileResponse:
    case = queries.get_case_or_raise(case_id, principal, session=session)
    evidence = get_evidence_or_raise(case, evidence_id, session=session)
    path = evidence_file(evidence, data_dir=settings.data_dir)
    return FileResponse(path, media_type=evidence.media_type, headers=PRIVATE)


def _visible_case(request: Request, principal: Principal, case_id: int) -> None:
    with transaction(request.app.state.session_factory) as session:
        apply_scope(session, principal)
        queries.get_case_or_raise(case_id, principal, session=session)


def _attach(
    request: Request, principal: Principal, case_id: int, staged: StagedObject, claims: PhotoClaims
) -> tuple[EvidenceRead, bool]:
    settings: Settings = request.app.state.settings
    photo = read_photo(staged.path, settings=settings)
    placement = place_photo(photo.facts, claims, settings=settings)
    with transaction(request.app.state.session_factory) as session:
        # SQLite's write lock up front: this transaction reads the case, then writes.
        session.connection(execution_options=SQLITE_IMMEDIATE)
        apply_scope(session, principal)
        case = queries.get_case_or_raise(case_id, principal, session=session, for_update=True)
        evidence, created = add_field_photo(
            case, photo, placement, session=session, data_dir=settings.data_dir,
            principal=principal, caption=claims.caption,
            request_id=getattr(request.state, "request_id", None),
        )  # fmt: skip
        return EvidenceRead.model_validate(evidence, from_attributes=True), created
