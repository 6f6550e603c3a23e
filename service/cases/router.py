"""HTTP endpoints of cases: /v1/cases (JSON, GeoJSON, CSV) and OGC API – Features paths."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, time
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from models.case import CaseStatus, ConfidenceLevel
from models.detection import ChangeType, DetectionSource
from service.auth import CaseReader, CaseWriter, Principal
from service.cases import queries, transitions_pg
from service.cases.queries import CaseFilter
from service.cases.schemas import (
    CaseDetailRead,
    CaseEventRead,
    CasePage,
    CaseRead,
    CaseStatisticsRead,
    CommentCreate,
    InspectorTransitionCreate,
    TransitionCreate,
    case_feature,
    feature_collection,
)
from service.cases.transitions import (
    add_comment,
    apply_transition,
    etag,
    expected_version,
    input_model_for,
)
from service.db import SQLITE_IMMEDIATE
from service.deps import SessionDep
from service.errors import InvalidInputError
from service.rls import apply_scope
from service.spatial import BBox

router = APIRouter(tags=["cases"])
GEOJSON = "application/geo+json"
JSON = "application/json"
EXPORT_MAX_ROWS = 50_000
CaseId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The case id.")]
_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
READ_PROBLEMS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No API key, or not a valid one.", **_PROBLEM},
    403: {"description": "The key's role may not do this.", **_PROBLEM},
    404: {"description": "No such case among those the caller may see.", **_PROBLEM},
    422: {"description": "A parameter makes no sense; the detail says which.", **_PROBLEM},
}
WRITE_PROBLEMS = READ_PROBLEMS | {
    409: {"description": "The transition table does not allow this move.", **_PROBLEM},
    412: {"description": "If-Match is stale: the case changed since it was read.", **_PROBLEM},
    428: {"description": "If-Match is missing.", **_PROBLEM},
}


def geojson_answer(geojson_type: str, description: str) -> dict[int | str, dict[str, Any]]:
    """The 200 of an endpoint that answers with a GeoJSON object of `geojson_type`."""
    schema = {
        "type": "object",
        "required": ["type"],
        "properties": {"type": {"type": "string", "enum": [geojson_type]}},
    }
    return {200: {"description": description, "content": {GEOJSON: {"schema": schema}}}}


FEATURE_COLLECTION = geojson_answer("FeatureCollection", "A GeoJSON FeatureCollection.")
FEATURE = geojson_answer("Feature", "A GeoJSON Feature.")
CSV = "text/csv; charset=utf-8"
CSV_ANSWER: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "One row per case.",
        "content": {"text/csv": {"schema": {"type": "string"}}},
    }
}


def read_session(principal: CaseReader, session: SessionDep) -> Session:
    apply_scope(session, principal)
    return session


@contextmanager
def write_transaction(request: Request, principal: Principal) -> Iterator[Session]:
    """A transaction that takes SQLite's write lock up front: a read-then-write transaction
    would otherwise fail with 'database is locked' when another writer commits in between.
    Committed when the block ends, rolled back if it raises.

    The caller's scope is attached before the transaction begins, so that the transaction
    begins in it (`rls.set_scope_on_begin`) instead of beginning in none and being set again."""
    with request.app.state.session_factory() as session:
        apply_scope(session, principal)
        with session.begin():
            session.connection(execution_options=SQLITE_IMMEDIATE)
            yield session


def write_session(request: Request, principal: CaseWriter) -> Iterator[Session]:
    with write_transaction(request, principal) as session:
        yield session


ReadSession = Annotated[Session, Depends(read_session)]
WriteSession = Annotated[Session, Depends(write_session, scope="function")]


def case_filter(
    bbox: Annotated[str | None, Query(description="minx,miny,maxx,maxy in lon/lat.")] = None,
    interval: Annotated[
        str | None,
        Query(
            alias="datetime",
            description="Seen within: an instant, or start/end with '..' for open ends (RFC 3339).",
        ),
    ] = None,
    status: Annotated[list[CaseStatus] | None, Query()] = None,
    type: Annotated[list[ChangeType] | None, Query(description="Change type.")] = None,
    source: Annotated[list[DetectionSource] | None, Query()] = None,
    confidence_level: Annotated[list[ConfidenceLevel] | None, Query()] = None,
    jurisdiction: Annotated[list[str] | None, Query(description="Jurisdiction code.")] = None,
    priority_min: Annotated[int | None, Query(ge=0, le=100)] = None,
    priority_max: Annotated[int | None, Query(ge=0, le=100)] = None,
    escalated: Annotated[bool | None, Query(description="Escalated cases only, or none.")] = None,
) -> CaseFilter:
    start, end = parse_interval(interval) if interval else (None, None)
    return CaseFilter(
        bbox=parse_bbox(bbox) if bbox else None,
        statuses=frozenset(status or ()),
        change_types=frozenset(str(t) for t in type or ()),
        sources=frozenset(str(s) for s in source or ()),
        confidence_levels=frozenset(confidence_level or ()),
        jurisdiction_codes=frozenset(jurisdiction or ()),
        priority_min=priority_min,
        priority_max=priority_max,
        seen_from=start,
        seen_to=end,
        escalated=escalated,
    )


Filters = Annotated[CaseFilter, Depends(case_filter)]
Limit = Annotated[int, Query(ge=1, le=1000, description="Items per page.")]
Cursor = Annotated[str | None, Query(max_length=200, description="From the previous page.")]


@router.get("/v1/cases", response_model=CasePage, responses=READ_PROBLEMS | FEATURE_COLLECTION)
def list_cases(
    request: Request,
    principal: CaseReader,
    session: ReadSession,
    filters: Filters,
    limit: Limit = 100,
    cursor: Cursor = None,
    f: Annotated[str, Query(pattern="^(json|geojson)$", description="json or geojson")] = "json",
) -> Any:
    """Cases in your jurisdictions, most recently seen first, one page at a time."""
    page = queries.list_cases(principal, filters, session=session, limit=limit, cursor=cursor)
    reads = queries.case_reads(page.cases, session=session)
    links = _page_links(request, page.next_cursor)
    if f == "geojson":
        features = [case_feature(r, c.geom) for r, c in zip(reads, page.cases, strict=True)]
        return JSONResponse(feature_collection(features, links=links), media_type=GEOJSON)
    return CasePage(items=reads, next_cursor=page.next_cursor, links=links)


@router.get("/v1/cases/statistics", response_model=CaseStatisticsRead, responses=READ_PROBLEMS)
def case_statistics(principal: CaseReader, session: ReadSession, filters: Filters) -> Any:
    """Counts by status, type, jurisdiction and month; time in each state; outcome shares."""
    return queries.case_statistics(principal, filters, session=session)


@router.get("/v1/cases/export.csv", response_class=Response, responses=READ_PROBLEMS | CSV_ANSWER)
def export_csv(principal: CaseReader, session: ReadSession, filters: Filters) -> Response:
    """Every matching case as CSV (UTF-8, one row per case, centroid lon/lat)."""
    cases = queries.all_cases(principal, filters, session=session, max_rows=EXPORT_MAX_ROWS)
    reads = queries.case_reads(cases, session=session)
    body = cases_csv(reads, [c.geom.representative_point() for c in cases])
    headers = {"Content-Disposition": 'attachment; filename="cases.csv"'}
    return Response(body, media_type=CSV, headers=headers)


@router.get(
    "/v1/cases/export.geojson",
    response_class=Response,
    responses=READ_PROBLEMS | FEATURE_COLLECTION,
)
def export_geojson(principal: CaseReader, session: ReadSession, filters: Filters) -> Response:
    """Every matching case as one GeoJSON FeatureCollection (RFC 7946)."""
    cases = queries.all_cases(principal, filters, session=session, max_rows=EXPORT_MAX_ROWS)
    reads = queries.case_reads(cases, session=session)
    features = [case_feature(r, c.geom) for r, c in zip(reads, cases, strict=True)]
    headers = {"Content-Disposition": 'attachment; filename="cases.geojson"'}
    return JSONResponse(feature_collection(features), media_type=GEOJSON, headers=headers)


@router.get("/v1/cases/{case_id}", response_model=CaseDetailRead, responses=READ_PROBLEMS)
def get_case(
    case_id: CaseId, principal: CaseReader, session: ReadSession, response: Response
) -> Any:
    """One case with its detections, layer hits, evidence and history; ETag is its version."""
    case = queries.get_case_or_raise(case_id, principal, session=session)
    response.headers["ETag"] = etag(case.version)
    return queries.case_detail(case, session=session)


@router.post("/v1/cases/{case_id}/transitions", response_model=CaseRead, responses=WRITE_PROBLEMS)
async def post_transition(
    case_id: CaseId,
    request: Request,
    principal: CaseWriter,
    change: Annotated[TransitionCreate, Body()],
    if_match: Annotated[str | None, Header(alias="If-Match")] = None,
) -> Any:
    """Move a case to another status and/or assign it; needs `If-Match` with its ETag.

    Inspectors may not name an assignee; a dismissal needs `reason_code`."""
    # The busiest write of the API. On PostgreSQL it runs on the event loop through the
    # driver (`transitions_pg`); otherwise, and for what that path leaves to the session,
    # everything that touches the database runs in one thread-pool hop (`_transition`).
    # Either way the answer goes out as the bytes it was serialised to, instead of being
    # validated and serialised again against CaseRead.
    version = expected_version(if_match)
    own = _revalidate(input_model_for(principal.role), change)
    pool = request.app.state.transition_pool
    if pool is not None:  # PostgreSQL: on the event loop, through the driver
        answer = await transitions_pg.transition(
            pool, case_id, own, principal=principal, version=version,
            settings=request.app.state.settings, request_id=_request_id(request),
        )  # fmt: skip
        if answer is not None:
            return Response(answer.body, media_type=JSON, headers={"ETag": etag(answer.version)})
    body, new_version = await run_in_threadpool(
        _transition, request, case_id, own, principal, version
    )
    return Response(body, media_type=JSON, headers={"ETag": etag(new_version)})


def _transition(
    request: Request,
    case_id: int,
    change: InspectorTransitionCreate,
    principal: Principal,
    version: int,
) -> tuple[bytes, int]:
    """The transition committed through the session, as (CaseRead JSON, new version)."""
    with write_transaction(request, principal) as session:
        case = apply_transition(
            case_id, change, session=session, settings=request.app.state.settings,
            principal=principal, version=version, request_id=_request_id(request),
        )  # fmt: skip
        read = queries.case_reads([case], session=session)[0]
    return read.model_dump_json().encode(), read.version


@router.post(
    "/v1/cases/{case_id}/comments",
    status_code=201,
    response_model=CaseEventRead,
    responses=READ_PROBLEMS,
)
def post_comment(
    case_id: CaseId,
    request: Request,
    principal: CaseWriter,
    session: WriteSession,
    comment: CommentCreate,
) -> Any:
    """Add a comment to the case's history (no If-Match needed: the case does not change)."""
    event = add_comment(
        case_id, comment, session=session, principal=principal, request_id=_request_id(request)
    )
    return CaseEventRead.model_validate(event, from_attributes=True)


# --- OGC API – Features (Part 1: Core, GeoJSON) -------------------------------------------

CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
]
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"


@router.get("/conformance", tags=["ogc"])
def conformance() -> dict[str, list[str]]:
    return {"conformsTo": CONFORMANCE}


@router.get("/collections", tags=["ogc"], responses=READ_PROBLEMS)
def collections(request: Request, principal: CaseReader, session: ReadSession) -> Any:
    """The collections served: one, `cases`, limited to your jurisdictions."""
    return {
        "collections": [_collection(request, principal, session)],
        "links": [_link(request.url, "self", "application/json")],
    }


@router.get("/collections/cases", tags=["ogc"], responses=READ_PROBLEMS)
def cases_collection(request: Request, principal: CaseReader, session: ReadSession) -> Any:
    return _collection(request, principal, session)


@router.get(
    "/collections/cases/items",
    tags=["ogc"],
    response_class=Response,
    responses=READ_PROBLEMS | FEATURE_COLLECTION,
)
def collection_items(
    request: Request,
    principal: CaseReader,
    session: ReadSession,
    filters: Filters,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> JSONResponse:
    """Cases as a GeoJSON FeatureCollection, paged with the `next` link."""
    page = queries.list_cases(principal, filters, session=session, limit=limit, cursor=cursor)
    reads = queries.case_reads(page.cases, session=session)
    features = [case_feature(r, c.geom) for r, c in zip(reads, page.cases, strict=True)]
    body = feature_collection(
        features,
        links=_page_links(request, page.next_cursor, media_type=GEOJSON),
        numberReturned=len(features),
        timeStamp=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    )
    return JSONResponse(body, media_type=GEOJSON)


@router.get(
    "/collections/cases/items/{case_id}",
    tags=["ogc"],
    response_class=Response,
    responses=READ_PROBLEMS | FEATURE,
)
def collection_item(
    case_id: CaseId, request: Request, principal: CaseReader, session: ReadSession
) -> JSONResponse:
    case = queries.get_case_or_raise(case_id, principal, session=session)
    feature = case_feature(queries.case_reads([case], session=session)[0], case.geom)
    collection_url = str(request.url_for("cases_collection"))
    feature["links"] = [
        _link(request.url, "self", GEOJSON),
        {"href": collection_url, "rel": "collection", "type": "application/json"},
    ]
    return JSONResponse(feature, media_type=GEOJSON, headers={"ETag": etag(case.version)})


def _collection(request: Request, principal: Principal, session: Session) -> dict[str, Any]:
    bbox, span = queries.visible_extent(principal, session=session)
    return {
        "id": "cases",
        "title": "Suspected farmland-occupation cases",
        "description": "One case per place, whichever sensor found it; your jurisdictions only.",
        "itemType": "feature",
        "crs": [CRS84],
        "extent": {"spatial": {"bbox": [bbox], "crs": CRS84}, "temporal": {"interval": [span]}},
        "links": [
            {"href": str(request.url_for("cases_collection")), "rel": "self",
             "type": "application/json"},
            {"href": str(request.url_for("collection_items")), "rel": "items", "type": GEOJSON},
        ],
    }  # fmt: skip


# --- helpers --------------------------------------------------------------------------------


def _page_links(
    request: Request, next_cursor: str | None, *, media_type: str = "application/json"
) -> list[dict[str, str]]:
    links = [_link(request.url, "self", media_type)]
    if next_cursor:
        links.append(
            _link(request.url.include_query_params(cursor=next_cursor), "next", media_type)
        )
    return links


def _link(url: object, rel: str, media_type: str) -> dict[str, str]:
    return {"href": str(url), "rel": rel, "type": media_type}


def _request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def _revalidate(model: type[TransitionCreate] | type[Any], change: TransitionCreate) -> Any:
    """Re-read the body with the caller's own input model (property-level authorization)."""
    try:
        return model.model_validate(change.model_dump(exclude_unset=True))
    except ValidationError as error:
        errors = error.errors(include_url=False)
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from error


def parse_bbox(text: str) -> BBox:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 4:
        raise InvalidInputError(
            f"bbox {text!r} is not four numbers minx,miny,maxx,maxy in lon/lat degrees, "
            "e.g. bbox=120.0,30.0,120.5,30.4"
        )
    try:
        return BBox(*values)
    except ValueError as error:
        raise InvalidInputError(str(error)) from error


def parse_interval(text: str) -> tuple[datetime | None, datetime | None]:
    """An RFC 3339 instant or `start/end` interval ('..' or empty for an open end); UTC if
    no offset is given; a bare end date includes that whole day."""
    start_text, slash, end_text = text.partition("/")
    if not slash:
        end_text = start_text
    start = _instant(start_text, end=False)
    end = _instant(end_text, end=True)
    if start and end and start > end:
        raise InvalidInputError(f"datetime {text!r} ends before it starts: swap the two times")
    return start, end


def _instant(text: str, *, end: bool) -> datetime | None:
    text = text.strip()
    if text in ("", ".."):
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError as error:
        raise InvalidInputError(
            f"datetime {text!r} is not RFC 3339: use e.g. 2024-06-01T00:00:00Z, 2024-06-01, "
            "or an interval 2024-06-01/2024-06-30"
        ) from error
    if len(text) == 10 and end:  # a date alone: the whole day
        when = datetime.combine(when.date(), time.max)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


CSV_COLUMNS = (
    "id", "code", "status", "priority", "confidence", "confidence_level", "change_types",
    "sources", "jurisdiction", "assignee", "area_m2", "area_mu", "first_seen_at",
    "last_seen_at", "due_at", "overdue", "escalated", "reopen_count", "dismissal_reason",
    "lon", "lat",
)  # fmt: skip


def cases_csv(reads: list[CaseRead], points: list[Any]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for read, point in zip(reads, points, strict=True):
        row = read.model_dump(mode="json")
        row["change_types"] = ";".join(read.change_types)
        row["sources"] = ";".join(read.sources)
        row["lon"], row["lat"] = round(point.x, 7), round(point.y, 7)
        writer.writerow([_cell(row[c]) for c in CSV_COLUMNS])
    return buffer.getvalue()


def _cell(value: Any) -> Any:
    # Spreadsheets run cells starting with these as formulas.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return "" if value is None else value
