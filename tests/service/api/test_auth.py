"""API keys: only a hash is stored, a visible prefix, rotation, deactivation, header forms."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import select

from models import ApiClient
from models.client import Role
from service.auth import PrincipalCache, authenticate, descendant_ids, split_key
from service.clients import create_client, deactivate_client, rotate_key
from service.db import transaction
from service.errors import ConflictError, InvalidInputError
from tests.service.api.conftest import World


def new_inspector(world: World) -> tuple[str, str]:
    """A fresh inspector of township A1; returns (name, key)."""
    name = f"inspector-{uuid.uuid4().hex[:8]}"
    with transaction(world.factory) as session:
        issued = create_client(
            name, session=session, role=Role.inspector, jurisdiction_codes=[world.codes["A1"]]
        )
    world.names[name] = name  # cleaned up with the world
    return name, issued.key


def status(world: World, headers: dict[str, str]) -> int:
    return world.http.get("/v1/cases", headers=headers).status_code


def test_a_key_shows_its_prefix_and_only_a_hash_of_its_secret_is_stored(world: World) -> None:
    name, key = new_inspector(world)
    prefix, secret = split_key(key) or ("", "")
    assert key.startswith(f"tx_{prefix}_") and len(secret) >= 43  # 256 random bits
    with transaction(world.factory) as session:
        row = session.scalars(select(ApiClient).where(ApiClient.name == name)).one()
        stored = (row.key_prefix, row.key_hash)
    assert stored == (prefix, "sha256:" + hashlib.sha256(secret.encode()).hexdigest())
    assert secret not in stored[1]


def test_bearer_and_x_api_key_headers_both_authenticate(world: World) -> None:
    _, key = new_inspector(world)
    assert status(world, {"Authorization": f"Bearer {key}"}) == 200
    assert status(world, {"X-API-Key": key}) == 200


@pytest.mark.parametrize(
    ("headers", "fragment"),
    [
        ({}, "needs an API key"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "Bearer"),
        ({"X-API-Key": "not-a-key"}, "malformed"),
        ({"X-API-Key": "tx_0000000000_" + "A" * 43}, "not valid"),
    ],
)
def test_missing_or_wrong_keys_are_401_with_a_hint(
    world: World, headers: dict[str, str], fragment: str
) -> None:
    response = world.http.get("/v1/cases", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert fragment in response.json()["detail"]


def test_a_right_prefix_with_a_wrong_secret_is_refused(world: World) -> None:
    _, key = new_inspector(world)
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    assert status(world, {"X-API-Key": forged}) == 401


class ManualClock:
    """The principal cache's clock, moved by the test instead of waiting."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@contextmanager
def principal_cache(world: World, cache: PrincipalCache) -> Iterator[PrincipalCache]:
    """The world's app with `cache` for the duration (app.state is not monkeypatch-safe)."""
    state = world.http.app.state  # type: ignore[attr-defined]
    previous = state.principal_cache
    state.principal_cache = cache
    try:
        yield cache
    finally:
        state.principal_cache = previous


def test_without_the_cache_rotation_and_deactivation_act_at_once(world: World) -> None:
    with principal_cache(world, PrincipalCache(0)):
        _rotation_and_deactivation_act_at_once(world)


def _rotation_and_deactivation_act_at_once(world: World) -> None:
    name, old = new_inspector(world)
    assert status(world, {"X-API-Key": old}) == 200
    with transaction(world.factory) as session:
        new = rotate_key(name, session=session).key
    assert status(world, {"X-API-Key": old}) == 401
    assert status(world, {"X-API-Key": new}) == 200
    with transaction(world.factory) as session:
        deactivate_client(name, session=session)
    assert status(world, {"X-API-Key": new}) == 401


def test_a_cached_key_keeps_working_until_the_cache_time_runs_out(world: World) -> None:
    clock = ManualClock()
    with principal_cache(world, PrincipalCache(5.0, timer=clock)):
        _cached_key_expires(world, clock)


def _cached_key_expires(world: World, clock: ManualClock) -> None:
    name, old = new_inspector(world)
    assert status(world, {"X-API-Key": old}) == 200
    with transaction(world.factory) as session:
        new = rotate_key(name, session=session).key
    assert status(world, {"X-API-Key": old}) == 200  # the documented grace of up to 5 s
    assert status(world, {"X-API-Key": new}) == 200
    clock.now += 5.0
    assert status(world, {"X-API-Key": old}) == 401
    assert status(world, {"X-API-Key": new}) == 200  # looked up again: cached until 10 s
    with transaction(world.factory) as session:
        deactivate_client(name, session=session)
    assert status(world, {"X-API-Key": new}) == 200
    clock.now += 5.0
    assert status(world, {"X-API-Key": new}) == 401


def test_unknown_keys_are_not_cached(world: World) -> None:
    _, key = new_inspector(world)
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    with principal_cache(world, PrincipalCache(60.0)) as cache:
        assert status(world, {"X-API-Key": forged}) == 401
        assert cache.get(forged) is None
        assert status(world, {"X-API-Key": key}) == 200
        assert cache.get(key) is not None


def test_the_ingest_role_cannot_read_cases(world: World) -> None:
    response = world.http.get("/v1/cases", headers=world.auth("ingest"))
    assert response.status_code == 403
    assert "role ingest may not" in response.json()["detail"]


def test_clients_need_known_jurisdictions_and_unique_names(world: World) -> None:
    with transaction(world.factory) as session:
        with pytest.raises(InvalidInputError, match="unknown jurisdiction code"):
            create_client("x", session=session, role=Role.inspector, jurisdiction_codes=["NOPE"])
        with pytest.raises(InvalidInputError, match="at least one jurisdiction"):
            create_client("x", session=session, role=Role.monitor, jurisdiction_codes=[])
        with pytest.raises(ConflictError, match="exists"):
            create_client(
                world.names["admin"], session=session, role=Role.admin, jurisdiction_codes=[]
            )


def test_a_principal_reaches_every_descendant_of_its_jurisdictions(world: World) -> None:
    with transaction(world.factory) as session:
        city = descendant_ids([world.ids["city"]], session=session)
        monitor = authenticate(world.keys["monitor"], session=session)
    assert {world.ids[a] for a in ("city", "A", "A1", "B")} <= city
    assert monitor.jurisdiction_ids == {world.ids["A"], world.ids["A1"]}
