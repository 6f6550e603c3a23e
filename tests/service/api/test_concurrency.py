"""Two inspectors change one case with the same ETag at the same moment: one wins, one gets 412."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from models import Case, CaseEvent
from models.case import CaseStatus
from service.auth import authenticate
from service.cases import transitions
from service.cases.events import verify_chain
from service.cases.schemas import InspectorTransitionCreate
from service.db import transaction
from service.errors import PreconditionFailedError
from service.main import create_app
from tests.service.api.conftest import World

VERDICTS = {
    "inspector_a": {"to": "confirmed"},
    "inspector_a2": {"to": "dismissed", "reason_code": "pre_existing"},
}
ROUNDS = 5


def test_two_inspectors_with_one_etag_exactly_one_wins_and_nothing_is_lost(world: World) -> None:
    # Two app instances on one database, like two uvicorn workers.
    apps = [create_app(world.settings), create_app(world.settings)]
    with TestClient(apps[0]) as first, TestClient(apps[1]) as second, ThreadPoolExecutor(2) as pool:
        for _ in range(ROUNDS):
            case_id = world.add_case(status=CaseStatus.verifying)
            results = _race(world, pool, [first, second], case_id)
            codes = sorted(response.status_code for _, response in results)
            assert codes == [200, 412], [r.text for _, r in results]
            winner = next(who for who, response in results if response.status_code == 200)
            _assert_only_the_winner_is_recorded(world, case_id, winner)


def _race(
    world: World, pool: ThreadPoolExecutor, clients: list[TestClient], case_id: int
) -> list[tuple[str, Any]]:
    """Both inspectors post their verdict with ETag "1", released together by a barrier."""
    start = threading.Barrier(len(clients))

    def post(http: TestClient, who: str) -> tuple[str, Any]:
        start.wait()
        response = http.post(
            f"/v1/cases/{case_id}/transitions",
            json=VERDICTS[who],
            headers=world.auth(who) | {"If-Match": '"1"'},
        )
        return who, response

    return list(pool.map(post, clients, list(VERDICTS), timeout=60))


def _assert_only_the_winner_is_recorded(world: World, case_id: int, winner: str) -> None:
    with transaction(world.factory) as session:
        case = session.get(Case, case_id)
        assert case is not None
        assert case.version == 2
        assert case.status == VERDICTS[winner]["to"]
        events = list(
            session.scalars(
                select(CaseEvent).where(CaseEvent.case_id == case_id).order_by(CaseEvent.seq)
            )
        )
        assert [e.action for e in events] == ["opened", "transition"]
        assert events[-1].actor == world.names[winner]
        assert verify_chain(session, case_id).ok


def test_the_guarded_update_refuses_a_version_that_changed_after_the_check(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even if the early version check passed, the UPDATE ... WHERE version=:v does not."""
    case_id = world.add_case(status=CaseStatus.verifying)
    with transaction(world.factory) as session:  # someone else's change, committed
        session.execute(update(Case).where(Case.id == case_id).values(version=2))
    monkeypatch.setattr(transitions, "_check_version", lambda case, version: None)
    stale = pytest.raises(PreconditionFailedError, match="at the same moment")
    with stale, transaction(world.factory) as session:
        principal = authenticate(world.keys["inspector_a"], session=session)
        transitions.apply_transition(
            case_id,
            InspectorTransitionCreate(to=CaseStatus.confirmed),
            session=session,
            settings=world.settings,
            principal=principal,
            version=1,
        )
    with transaction(world.factory) as session:
        case = session.get(Case, case_id)
        assert case is not None and case.status == CaseStatus.verifying and case.version == 2
