"""CAP 1.2 (OASIS Common Alerting Protocol) messages for cases, and an Atom feed of them.

The first alert of a case is a CAP `Alert`; later alerts (outline grown, confidence raised,
reopened) are `Update`s and a closure or dismissal is a `Cancel`, each referencing the first
alert as `sender,identifier,sent`. CAP polygons are "lat,lon" pairs separated by spaces, the
reverse of GeoJSON's [lon, lat]; CAP has no holes, so a polygon's holes are left out (the
alert area then covers them, which errs on the side of looking).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from xml.etree import ElementTree as ET

from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import AlertEvent, Case, Jurisdiction
from models.case import CaseStatus, ConfidenceLevel
from service.auth import Principal
from service.cases.queries import get_case_or_raise
from service.errors import InvalidInputError, NotFoundError

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
ATOM_NS = "http://www.w3.org/2005/Atom"
CAP_MEDIA_TYPE = "application/cap+xml"
ATOM_MEDIA_TYPE = "application/atom+xml"
COORDINATE_DECIMALS = 6  # about 0.1 m: finer than any detection outline
CLOSING_TYPES = frozenset({"case_closed", "case_dismissed"})
CLOSED_STATUSES = frozenset({CaseStatus.closed, CaseStatus.dismissed})
_CERTAINTY = {
    ConfidenceLevel.highest: "Observed",
    ConfidenceLevel.high: "Likely",
    ConfidenceLevel.nominal: "Possible",
}

# In the Atom feed, which mixes two vocabularies, each is written with its usual prefix.
ET.register_namespace("cap", CAP_NS)
ET.register_namespace("atom", ATOM_NS)


def cap_time(value: datetime) -> str:
    """CAP dateTime: seconds, explicit offset, and UTC written "-00:00" (never "Z")."""
    utc = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S") + "-00:00"


def cap_polygon(ring: Sequence[Sequence[float]]) -> str:
    """A GeoJSON ring of [lon, lat] positions as a CAP polygon: "lat,lon lat,lon ...", closed."""
    points = [(float(p[0]), float(p[1])) for p in ring]
    if points and points[0] != points[-1]:
        points.append(points[0])
    if len(points) < 4:
        raise InvalidInputError(
            f"a CAP polygon needs at least 3 distinct corners, got {len(set(points))}"
        )
    digits = COORDINATE_DECIMALS
    return " ".join(f"{_number(lat, digits)},{_number(lon, digits)}" for lon, lat in points)


def ring_from_cap_polygon(text: str) -> list[tuple[float, float]]:
    """A CAP polygon as a GeoJSON-ordered ring of (lon, lat) positions."""
    ring = []
    for pair in text.split():
        lat_text, sep, lon_text = pair.partition(",")
        try:
            lat, lon = float(lat_text), float(lon_text)
        except ValueError:
            sep = ""
        if not sep or not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise InvalidInputError(
                f"CAP polygon point {pair!r} is not 'lat,lon' in WGS 84 degrees"
            )
        ring.append((lon, lat))
    if len(ring) < 4 or ring[0] != ring[-1]:
        raise InvalidInputError(
            "a CAP polygon needs four or more points with the first repeated as the last"
        )
    return ring


def cap_polygons(geom: BaseGeometry) -> list[str]:
    """One CAP polygon per part of a (Multi)Polygon in lon/lat; holes are left out."""
    if isinstance(geom, Polygon):
        parts = [geom]
    elif isinstance(geom, MultiPolygon):
        parts = list(geom.geoms)
    else:
        raise InvalidInputError(f"CAP areas are polygons; got a {geom.geom_type}")
    return [cap_polygon(list(part.exterior.coords)) for part in parts if not part.is_empty]


def geometry_from_cap_polygons(polygons: Iterable[str]) -> MultiPolygon:
    return MultiPolygon([Polygon(ring_from_cap_polygon(text)) for text in polygons])


def _number(value: float, digits: int) -> str:
    text = f"{value:.{digits}f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


@dataclass(frozen=True)
class CapMessage:
    """Who sent which message, as CAP references name it."""

    identifier: str
    sent: datetime

    def reference(self, sender: str) -> str:
        return f"{sender},{self.identifier},{cap_time(self.sent)}"


def message_of(event: AlertEvent) -> CapMessage:
    return CapMessage(f"tianxun-alert-{event.id}", event.created_at)


def cancel_message(case: Case) -> CapMessage:
    return CapMessage(f"tianxun-case-{case.id}-v{case.version}-cancel", case.updated_at)


def msg_type(event: AlertEvent, first: AlertEvent) -> str:
    if event.event_type in CLOSING_TYPES:
        return "Cancel"
    return "Alert" if event.id == first.id else "Update"


@dataclass(frozen=True)
class CaseArea:
    """What the CAP `<area>` of a case says: a description and the outline."""

    description: str
    geom: BaseGeometry


def cap_alert(
    case: Case,
    area: CaseArea,
    *,
    message: CapMessage,
    kind: str,
    first: CapMessage,
    sender: str,
    reason: str,
) -> ET.Element:
    """The `<alert>` element of one CAP 1.2 message about `case`."""
    alert = ET.Element(_cap("alert"))
    _add(alert, "identifier", message.identifier)
    _add(alert, "sender", sender)
    _add(alert, "sent", cap_time(message.sent))
    _add(alert, "status", "Actual")
    _add(alert, "msgType", kind)
    _add(alert, "scope", "Restricted")
    _add(alert, "restriction", "Farmland-protection monitoring centres and field chiefs")
    if kind != "Alert":
        _add(alert, "references", first.reference(sender))
    _add(alert, "incidents", case.code)
    alert.append(_info(case, area, kind=kind, reason=reason))
    return alert


def _info(case: Case, area: CaseArea, *, kind: str, reason: str) -> ET.Element:
    info = ET.Element(_cap("info"))
    _add(info, "language", "en-US")
    _add(info, "category", "Env")
    _add(info, "event", "Suspected illegal occupation of farmland")
    _add(info, "responseType", "AllClear" if kind == "Cancel" else "Assess")
    _add(info, "urgency", "Past" if kind == "Cancel" else _urgency(case.priority))
    _add(info, "severity", _severity(case.priority))
    _add(info, "certainty", _CERTAINTY.get(case.confidence_level, "Unknown"))
    _add(info, "senderName", "Tianxun farmland protection")
    kinds = ", ".join(case.change_types) or "change"
    _add(info, "headline", f"{case.code}: suspected {kinds} on farmland ({case.status})")
    _add(info, "description", reason)
    _add(info, "instruction", "Check on site within the deadline and report through the API.")
    for name, value in _parameters(case):
        parameter = ET.SubElement(info, _cap("parameter"))
        _add(parameter, "valueName", name)
        _add(parameter, "value", value)
    area_element = ET.SubElement(info, _cap("area"))
    _add(area_element, "areaDesc", area.description)
    for polygon in cap_polygons(area.geom):
        _add(area_element, "polygon", polygon)
    return info


def _parameters(case: Case) -> list[tuple[str, str]]:
    return [
        ("caseId", str(case.id)),
        ("caseVersion", str(case.version)),
        ("status", str(case.status)),
        ("priority", str(case.priority)),
        ("confidence", f"{case.confidence:.4f}"),
        ("areaSquareMetres", f"{case.area_m2:.2f}"),
        ("sources", ",".join(case.sources)),
        ("escalated", "true" if case.escalated else "false"),
    ]


def _urgency(priority: int) -> str:
    return "Immediate" if priority >= 70 else "Expected" if priority >= 40 else "Future"


def _severity(priority: int) -> str:
    return "Severe" if priority >= 70 else "Moderate" if priority >= 40 else "Minor"


def _cap(tag: str) -> str:
    return f"{{{CAP_NS}}}{tag}"


def _add(parent: ET.Element, tag: str, text: str) -> ET.Element:
    element = ET.SubElement(parent, _cap(tag))
    element.text = text
    return element


def to_xml(element: ET.Element) -> bytes:
    return ET.tostring(element, encoding="utf-8", xml_declaration=True, default_namespace=CAP_NS)


@dataclass(frozen=True)
class AtomEntry:
    event: AlertEvent
    alert: ET.Element
    title: str
    cap_url: str


def atom_feed(entries: Sequence[AtomEntry], *, feed_url: str, updated: datetime) -> bytes:
    """An Atom feed whose entries carry one CAP message each, inline and by link."""
    feed = ET.Element(f"{{{ATOM_NS}}}feed")
    _atom(feed, "id", feed_url)
    _atom(feed, "title", "Tianxun farmland-protection alerts (CAP 1.2)")
    _atom(feed, "updated", updated.astimezone(UTC).isoformat())
    ET.SubElement(feed, f"{{{ATOM_NS}}}link", rel="self", href=feed_url)
    author = ET.SubElement(feed, f"{{{ATOM_NS}}}author")
    _atom(author, "name", "Tianxun")
    for entry in entries:
        feed.append(_atom_entry(entry))
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True)


def _atom_entry(entry: AtomEntry) -> ET.Element:
    element = ET.Element(f"{{{ATOM_NS}}}entry")
    _atom(element, "id", f"urn:tianxun:alert:{entry.event.id}")
    _atom(element, "title", entry.title)
    _atom(element, "updated", entry.event.created_at.astimezone(UTC).isoformat())
    ET.SubElement(
        element, f"{{{ATOM_NS}}}link", rel="alternate", type=CAP_MEDIA_TYPE, href=entry.cap_url
    )
    content = ET.SubElement(element, f"{{{ATOM_NS}}}content", type=CAP_MEDIA_TYPE)
    content.append(entry.alert)
    return element


def _atom(parent: ET.Element, tag: str, text: str) -> ET.Element:
    element = ET.SubElement(parent, f"{{{ATOM_NS}}}{tag}")
    element.text = text
    return element


def case_cap_document(
    case_id: int, principal: Principal, *, session: Session, sender: str
) -> bytes:
    """The current CAP message of a case the caller may see: Alert, Update or Cancel."""
    case = get_case_or_raise(case_id, principal, session=session)
    events = list(
        session.scalars(
            select(AlertEvent).where(AlertEvent.case_id == case.id).order_by(AlertEvent.id)
        )
    )
    if not events:
        raise NotFoundError(f"case {case.code} has raised no alert yet, so it has no CAP message")
    first, latest = events[0], events[-1]
    if case.status in CLOSED_STATUSES and latest.event_type not in CLOSING_TYPES:
        message, kind = cancel_message(case), "Cancel"
        reason = f"case {case.status}" + (
            f": {case.dismissal_reason}" if case.dismissal_reason else ""
        )
    else:
        message, kind = message_of(latest), msg_type(latest, first)
        reason = str(latest.payload.get("reason", latest.event_type))
    alert = cap_alert(
        case, _case_area(case, session), message=message, kind=kind,
        first=message_of(first), sender=sender, reason=reason,
    )  # fmt: skip
    return to_xml(alert)


def feed_entries(
    principal: Principal, *, session: Session, sender: str, base_url: str, limit: int
) -> list[AtomEntry]:
    """The newest `limit` case alerts the caller may see (backfill excluded), newest first."""
    statement = select(AlertEvent).where(AlertEvent.case_id.is_not(None), ~AlertEvent.backfill)
    if not principal.sees_everything:
        statement = statement.where(
            AlertEvent.jurisdiction_id.in_(sorted(principal.jurisdiction_ids))
        )
    events = list(session.scalars(statement.order_by(AlertEvent.id.desc()).limit(limit)))
    case_ids = sorted({e.case_id for e in events if e.case_id is not None})
    cases = {c.id: c for c in session.scalars(select(Case).where(Case.id.in_(case_ids)))}
    first_ids = dict(
        session.execute(
            select(AlertEvent.case_id, func.min(AlertEvent.id))
            .where(AlertEvent.case_id.in_(case_ids))
            .group_by(AlertEvent.case_id)
        ).all()
    )
    firsts = {
        e.id: e
        for e in session.scalars(
            select(AlertEvent).where(AlertEvent.id.in_(list(first_ids.values())))
        )
    }
    entries = []
    for event in events:
        case = cases[event.case_id]  # type: ignore[index]
        first = firsts[first_ids[case.id]]
        kind = msg_type(event, first)
        alert = cap_alert(
            case, _case_area(case, session), message=message_of(event), kind=kind,
            first=message_of(first), sender=sender,
            reason=str(event.payload.get("reason", event.event_type)),
        )  # fmt: skip
        title = f"{case.code} {kind}: {event.event_type}"
        entries.append(AtomEntry(event, alert, title, f"{base_url}/v1/cases/{case.id}.cap"))
    return entries


def _case_area(case: Case, session: Session) -> CaseArea:
    name = None
    if case.jurisdiction_id is not None:
        name = session.scalar(
            select(Jurisdiction.name).where(Jurisdiction.id == case.jurisdiction_id)
        )
    description = f"Case {case.code}" + (f", {name}" if name else "")
    return CaseArea(description, case.geom)
