"""API clients: create, rotate and deactivate them (domain functions: flush, never commit)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import ApiClient, ClientJurisdiction, Jurisdiction
from models.base import utcnow
from models.client import Role
from service.auth import generate_key
from service.errors import ConflictError, InvalidInputError, NotFoundError

# Roles whose reach is bounded by jurisdictions: without one they could see nothing.
SCOPED_ROLES = frozenset({Role.monitor, Role.inspector, Role.analyst})


@dataclass(frozen=True)
class IssuedKey:
    """A client and its new key; the key is shown to the operator once and never stored."""

    client_id: int
    name: str
    role: Role
    key: str
    prefix: str


def get_client(name: str, *, session: Session) -> ApiClient | None:
    return session.scalars(select(ApiClient).where(ApiClient.name == name)).first()


def get_client_or_raise(name: str, *, session: Session) -> ApiClient:
    client = get_client(name, session=session)
    if client is None:
        raise NotFoundError(f"no API client named {name!r}: list names with the database")
    return client


def create_client(
    name: str, *, session: Session, role: Role, jurisdiction_codes: list[str]
) -> IssuedKey:
    """A new active client with a fresh key, bound to the named jurisdictions."""
    name = name.strip()
    if not name:
        raise InvalidInputError("a client needs a non-empty name, e.g. 'xihu-inspector-7'")
    if get_client(name, session=session) is not None:
        raise ConflictError(f"a client named {name!r} exists: rotate its key instead")
    if role in SCOPED_ROLES and not jurisdiction_codes:
        raise InvalidInputError(
            f"a {role} client needs at least one jurisdiction (--jurisdiction CODE)"
        )
    jurisdictions = _jurisdictions(jurisdiction_codes, session=session)
    new = generate_key()
    client = ApiClient(name=name, role=role, key_prefix=new.prefix, key_hash=new.key_hash)
    session.add(client)
    session.flush()
    for jurisdiction in jurisdictions:
        session.add(ClientJurisdiction(client_id=client.id, jurisdiction_id=jurisdiction.id))
    session.flush()
    return IssuedKey(client.id, client.name, client.role, new.key, new.prefix)


def rotate_key(name: str, *, session: Session) -> IssuedKey:
    """Replace a client's key: the old key stops working when the transaction commits."""
    client = get_client_or_raise(name, session=session)
    new = generate_key()
    client.key_prefix = new.prefix
    client.key_hash = new.key_hash
    client.rotated_at = utcnow()
    client.active = True
    session.flush()
    return IssuedKey(client.id, client.name, client.role, new.key, new.prefix)


def deactivate_client(name: str, *, session: Session) -> ApiClient:
    client = get_client_or_raise(name, session=session)
    client.active = False
    session.flush()
    return client


def _jurisdictions(codes: list[str], *, session: Session) -> list[Jurisdiction]:
    wanted = sorted(set(codes))
    found = list(session.scalars(select(Jurisdiction).where(Jurisdiction.code.in_(wanted))))
    missing = sorted(set(wanted) - {j.code for j in found})
    if missing:
        raise InvalidInputError(
            f"unknown jurisdiction code(s): {', '.join(missing)}; "
            "import jurisdictions first (`tianxun jurisdictions import`)"
        )
    return found
