"""The one-map page at `/`, its static files, basemap tiles and the page's read-only overlays."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import shapely
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, JSONResponse
from starlette.staticfiles import StaticFiles

from models.layer import LayerKind
from service.auth import CaseReader
from service.cases import queries
from service.cases.router import (
    FEATURE_COLLECTION,
    GEOJSON,
    READ_PROBLEMS,
    CaseId,
    ReadSession,
    parse_bbox,
)
from service.deps import SettingsDep
from service.web import case_layer, chips, overlays, tiles

STATIC_DIR = Path(__file__).resolve().parent / "static"
# The page and the library change with each release; revalidate rather than cache for long.
PAGE_CACHE = "no-cache"
MOSAIC_CACHE = "private, max-age=300"  # a new scene changes the mosaic (and its ETag)
SCENE_CACHE = "private, max-age=86400"  # one stored scene never changes
PNG = "image/png"
PNG_RESPONSES: dict[int | str, dict[str, Any]] = {200: {"content": {PNG: {}}}}
TILE_RESPONSES = PNG_RESPONSES | {304: {"description": "Not modified."}} | READ_PROBLEMS
GEOJSON_RESPONSES = READ_PROBLEMS | FEATURE_COLLECTION

router = APIRouter()
_static = StaticFiles(directory=STATIC_DIR)


@router.get("/", include_in_schema=False)
def page() -> FileResponse:
    """The one-map page; it asks for an API key and then calls the API like any client."""
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": PAGE_CACHE})


@router.get("/cases/{case_id}/report", include_in_schema=False)
def case_report_page(case_id: CaseId) -> FileResponse:
    """The printable evidence sheet of one case; like the map, it reads the case via the API."""
    return FileResponse(STATIC_DIR / "report.html", headers={"Cache-Control": PAGE_CACHE})


@router.get("/static/{path:path}", include_in_schema=False)
async def static_file(path: str, request: Request) -> Response:
    # StaticFiles resolves the path inside the folder (no traversal) and answers
    # If-None-Match / If-Modified-Since with 304.
    response = await _static.get_response(path, request.scope)
    response.headers.setdefault("Cache-Control", PAGE_CACHE)
    return response


TileZ = Annotated[int, PathParam(ge=0, le=tiles.MAX_ZOOM)]
TileXY = Annotated[int, PathParam(ge=0, le=2**tiles.MAX_ZOOM - 1)]


@router.get(
    "/v1/tiles/{z}/{x}/{y}.png",
    tags=["map"],
    response_class=Response,
    responses=TILE_RESPONSES,
)
def imagery_tile(
    z: TileZ,
    x: TileXY,
    y: TileXY,
    principal: CaseReader,
    session: ReadSession,
    settings: SettingsDep,
    scene: Annotated[
        int | None,
        Query(ge=1, le=2**63 - 1, description="One scene id; without it, the latest mosaic."),
    ] = None,
    if_none_match: Annotated[str | None, Header(alias="If-None-Match")] = None,
) -> Response:
    """A 256×256 Web Mercator PNG of the ingested imagery, transparent where there is none."""
    tiles.check_tile(z, x, y)
    sources = tiles.tile_sources(
        z, x, y, session=session, data_dir=settings.data_dir, scene_id=scene
    )
    etag = tiles.tile_etag(z, x, y, sources)
    headers = {"ETag": etag, "Cache-Control": SCENE_CACHE if scene else MOSAIC_CACHE}
    if if_none_match and etag in {tag.strip() for tag in if_none_match.split(",")}:
        return Response(status_code=304, headers=headers)
    body = tiles.render_tile_png(z, x, y, sources) if sources else tiles.empty_tile_png()
    return Response(body, media_type=PNG, headers=headers)


def _geojson(overlay: overlays.Overlay) -> JSONResponse:
    return JSONResponse(overlay.collection(), media_type=GEOJSON)


@router.get("/v1/map/me", tags=["map"], responses=READ_PROBLEMS)
def who_am_i(principal: CaseReader, session: ReadSession) -> dict[str, Any]:
    """The signed-in client, the status moves its role may ask for, where the map opens, and
    the box the imagery basemap covers."""
    summary = overlays.caller_summary(principal)
    extent = overlays.data_extent(principal, session=session)
    return summary | {"extent": extent, "imagery_extent": tiles.imagery_extent(session=session)}


@router.get(
    "/v1/map/cases.geojson", tags=["map"], response_class=Response, responses=GEOJSON_RESPONSES
)
def map_cases(
    principal: CaseReader,
    session: ReadSession,
    bbox: Annotated[str | None, Query(description="minx,miny,maxx,maxy in lon/lat.")] = None,
) -> Response:
    """Your cases for drawing: id, code, status and priority with the outline (lean GeoJSON)."""
    box = parse_bbox(bbox) if bbox is not None else None  # an empty bbox is a mistake
    body = case_layer.case_layer_json(principal, session=session, bbox=box)
    return Response(body, media_type=GEOJSON)


@router.get(
    "/v1/map/case-points.geojson",
    tags=["map"],
    response_class=Response,
    responses=GEOJSON_RESPONSES,
)
def map_case_points(principal: CaseReader, session: ReadSession) -> Response:
    """Your cases as points for the zoomed-out map: id, status and priority at the bbox centre."""
    return Response(case_layer.case_points_json(principal, session=session), media_type=GEOJSON)


@router.get("/v1/map/layers", tags=["map"], responses=READ_PROBLEMS)
def legal_layers(principal: CaseReader, session: ReadSession) -> list[dict[str, Any]]:
    """The legal layers with a version valid now."""
    return overlays.list_layers(session=session)


@router.get(
    "/v1/map/layers/{kind}.geojson",
    tags=["map"],
    response_class=Response,
    responses=GEOJSON_RESPONSES,
)
def legal_layer_features(
    kind: LayerKind,
    principal: CaseReader,
    session: ReadSession,
    bbox: Annotated[str | None, Query(description="minx,miny,maxx,maxy in lon/lat.")] = None,
) -> JSONResponse:
    """The current version's polygons within the caller's area (at most 20,000)."""
    box = parse_bbox(bbox) if bbox is not None else None  # an empty bbox is a mistake
    return _geojson(overlays.layer_features(kind, principal, session=session, bbox=box))


@router.get(
    "/v1/map/cameras.geojson", tags=["map"], response_class=Response, responses=GEOJSON_RESPONSES
)
def cameras(principal: CaseReader, session: ReadSession) -> JSONResponse:
    """Towers (points) and preset viewsheds (polygons) with health, in the caller's area."""
    return _geojson(overlays.camera_features(principal, session=session))


@router.get(
    "/v1/map/jurisdictions.geojson",
    tags=["map"],
    response_class=Response,
    responses=GEOJSON_RESPONSES,
)
def jurisdictions(principal: CaseReader, session: ReadSession) -> JSONResponse:
    """The caller's jurisdictions and everything below them."""
    return _geojson(overlays.jurisdiction_features(principal, session=session))


@router.get(
    "/v1/map/scenes.geojson", tags=["map"], response_class=Response, responses=GEOJSON_RESPONSES
)
def scenes(principal: CaseReader, session: ReadSession) -> JSONResponse:
    """Footprints and dates of the imagery behind the basemap, newest first."""
    return _geojson(overlays.scene_features(principal, session=session))


@router.get(
    "/v1/map/unobserved.geojson", tags=["map"], response_class=Response, responses=GEOJSON_RESPONSES
)
def unobserved(
    principal: CaseReader,
    session: ReadSession,
    days: Annotated[float, Query(gt=0, le=3650, description="Older than this is stale.")] = 30,
) -> JSONResponse:
    """Ground whose newest imagery is older than `days`, with the date it was last observed."""
    return _geojson(overlays.unobserved_features(principal, session=session, days=days))


@router.get("/v1/map/cases/{case_id}/imagery", tags=["map"], responses=READ_PROBLEMS)
def case_imagery(case_id: CaseId, principal: CaseReader, session: ReadSession) -> dict[str, Any]:
    """The scenes to compare for a case: the newest before the change, and the newest of all."""
    case = queries.get_case_or_raise(case_id, principal, session=session)
    return asdict(chips.imagery_pair(case, session=session))


@router.get(
    "/v1/map/cases/{case_id}/chip.png",
    tags=["map"],
    response_class=Response,
    responses=PNG_RESPONSES | READ_PROBLEMS,
)
def case_chip(
    case_id: CaseId,
    principal: CaseReader,
    session: ReadSession,
    settings: SettingsDep,
    scene: Annotated[int, Query(ge=1, le=2**63 - 1, description="A scene covering the case.")],
) -> Response:
    """The imagery of one scene around the case, its outline in yellow (PNG, 384 px a side)."""
    case = queries.get_case_or_raise(case_id, principal, session=session)
    source = chips.chip_source(case, scene, session=session, data_dir=settings.data_dir)
    body = chips.render_chip_png(source, shapely.to_wkb(case.geom))
    return Response(body, media_type=PNG, headers={"Cache-Control": "private, max-age=300"})
