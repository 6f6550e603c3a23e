"""CAP 1.2 output: valid against the schema, Alert → Update → Cancel, lat/lon polygons."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from lxml import etree
from shapely.geometry import MultiPolygon, Polygon, mapping
from sqlalchemy.orm import Session

from models import Case
from models.case import CaseStatus, ConfidenceLevel
from models.client import Role
from service.alerts.cap import (
    CAP_NS,
    atom_feed,
    cap_polygon,
    cap_polygons,
    case_cap_document,
    feed_entries,
    geometry_from_cap_polygons,
    ring_from_cap_polygon,
)
from service.alerts.outbox import AlertType, record_alert
from service.auth import Principal
from service.errors import InvalidInputError, NotFoundError

# The official OASIS schema (docs.oasis-open.org/emergency/cap/v1.2/CAP-v1.2.xsd), unchanged.
SCHEMA = etree.XMLSchema(etree.parse(str(Path(__file__).with_name("CAP-v1.2.xsd"))))
NS = {"cap": CAP_NS, "atom": "http://www.w3.org/2005/Atom"}
ADMIN = Principal(client_id=0, name="centre", role=Role.admin, jurisdiction_ids=frozenset())
SENDER = "alerts@tianxun.example"
# Two plots near Hangzhou, in GeoJSON order (lon, lat).
PLOT = Polygon([(120.1, 30.2), (120.101, 30.2), (120.101, 30.2008), (120.1, 30.2008)])
SHED = Polygon([(120.2, 30.3), (120.2005, 30.3), (120.2005, 30.3004)])


def validated(document: bytes) -> etree._Element:
    root = etree.fromstring(document)
    SCHEMA.assertValid(root)
    return root


def text(root: etree._Element, path: str) -> str:
    found = root.findtext(path, namespaces=NS)
    assert found is not None, path
    return found


@pytest.fixture
def case(db_session: Session) -> Case:
    seen = datetime(2024, 6, 1, 8, 30, tzinfo=UTC)
    case = Case(
        code="TX-2024-000042", status=CaseStatus.new, priority=80, confidence=0.91,
        confidence_level=ConfidenceLevel.highest, change_types=["building"],
        sources=["camera", "remote_sensing"], area_m2=1234.5, first_seen_at=seen,
        last_seen_at=seen, geom=MultiPolygon([PLOT, SHED]),
    )  # fmt: skip
    db_session.add(case)
    db_session.flush()
    record_alert(case, session=db_session, event_type=AlertType.case_created, reason="new")
    return case


def test_a_new_case_is_a_valid_cap_alert_with_its_outline_in_lat_lon(
    db_session: Session, case: Case
) -> None:
    root = validated(case_cap_document(case.id, ADMIN, session=db_session, sender=SENDER))
    assert text(root, "cap:msgType") == "Alert"
    assert root.find("cap:references", NS) is None
    assert text(root, "cap:sent").endswith("-00:00")
    assert text(root, "cap:info/cap:certainty") == "Observed"
    assert text(root, "cap:info/cap:urgency") == "Immediate"
    polygons = [p.text for p in root.iterfind("cap:info/cap:area/cap:polygon", NS)]
    assert polygons[0].split()[0] == "30.2,120.1"  # latitude first
    assert geometry_from_cap_polygons(polygons).equals(case.geom)


def test_updates_and_the_closure_reference_the_first_alert(db_session: Session, case: Case) -> None:
    first = validated(case_cap_document(case.id, ADMIN, session=db_session, sender=SENDER))
    first_ref = f"{SENDER},{text(first, 'cap:identifier')},{text(first, 'cap:sent')}"

    case.version += 1
    record_alert(
        case, session=db_session, event_type=AlertType.case_updated, reason="outline_grown"
    )
    update = validated(case_cap_document(case.id, ADMIN, session=db_session, sender=SENDER))
    assert text(update, "cap:msgType") == "Update"
    assert text(update, "cap:references") == first_ref
    assert text(update, "cap:info/cap:description") == "outline_grown"

    case.status, case.version = CaseStatus.closed, case.version + 1
    db_session.flush()
    cancel = validated(case_cap_document(case.id, ADMIN, session=db_session, sender=SENDER))
    assert text(cancel, "cap:msgType") == "Cancel"
    assert text(cancel, "cap:references") == first_ref
    assert text(cancel, "cap:info/cap:urgency") == "Past"
    assert text(cancel, "cap:identifier") != text(update, "cap:identifier")


def test_the_atom_feed_carries_valid_cap_messages_newest_first(
    db_session: Session, case: Case
) -> None:
    record_alert(case, session=db_session, event_type=AlertType.case_updated, reason="grown")
    entries = feed_entries(ADMIN, session=db_session, sender=SENDER, base_url="http://x", limit=2)
    feed = etree.fromstring(atom_feed(entries, feed_url="http://x/feed", updated=datetime.now(UTC)))
    alerts = feed.findall("atom:entry/atom:content/cap:alert", NS)
    assert [text(a, "cap:msgType") for a in alerts] == ["Update", "Alert"]
    for alert in alerts:
        SCHEMA.assertValid(alert)
    link = feed.find("atom:entry/atom:link", NS)
    assert link is not None and link.get("href") == f"http://x/v1/cases/{case.id}.cap"


def test_a_case_outside_the_callers_jurisdictions_has_no_cap(
    db_session: Session, case: Case
) -> None:
    outsider = Principal(client_id=0, name="w", role=Role.monitor, jurisdiction_ids=frozenset({9}))
    with pytest.raises(NotFoundError):
        case_cap_document(case.id, outsider, session=db_session, sender=SENDER)


def test_cap_polygons_are_lat_lon_and_round_trip_with_geojson() -> None:
    ring = mapping(PLOT)["coordinates"][0]  # GeoJSON: [lon, lat]
    text_polygon = cap_polygon(ring)
    assert text_polygon == "30.2,120.1 30.2,120.101 30.2008,120.101 30.2008,120.1 30.2,120.1"
    assert ring_from_cap_polygon(text_polygon) == [tuple(p) for p in ring]
    assert cap_polygon(ring_from_cap_polygon(text_polygon)) == text_polygon
    # An open ring is closed, as CAP requires.
    assert cap_polygon(ring[:-1]) == text_polygon


def test_a_swapped_or_broken_cap_polygon_is_refused_with_the_expected_order() -> None:
    with pytest.raises(InvalidInputError, match="lat,lon"):
        ring_from_cap_polygon("120.1,30.2 120.2,30.2 120.2,30.3 120.1,30.2")  # lon first
    with pytest.raises(InvalidInputError, match="first repeated"):
        ring_from_cap_polygon("30.2,120.1 30.2,120.2 30.3,120.2 30.4,120.1")


def test_holes_are_left_out_so_the_cap_area_covers_the_whole_outline() -> None:
    outer = [(120.0, 30.0), (120.01, 30.0), (120.01, 30.01), (120.0, 30.01)]
    hole = [(120.004, 30.004), (120.006, 30.004), (120.006, 30.006)]
    [polygon] = cap_polygons(Polygon(outer, [hole]))
    assert geometry_from_cap_polygons([polygon]).equals(MultiPolygon([Polygon(outer)]))


def test_the_schema_refuses_what_cap_forbids(db_session: Session, case: Case) -> None:
    document = case_cap_document(case.id, ADMIN, session=db_session, sender=SENDER).decode()
    sent = etree.fromstring(document.encode()).findtext("cap:sent", namespaces=NS)
    assert sent is not None
    for broken in (
        document.replace(sent, sent.replace("-00:00", "Z")),  # "Z" is not allowed in CAP
        document.replace("<msgType>Alert", "<msgType>Warning"),
        document.replace("<category>Env", "<category>Farmland"),
    ):
        assert not SCHEMA.validate(etree.fromstring(broken.encode()))
