"""API keys, the authenticated caller (`Principal`) and the role checks routers depend on.

A key looks like ``tx_<prefix>_<secret>``. The prefix is stored in clear so a key can be
recognised in logs and found in one indexed lookup; of the secret only a SHA-256 digest is
stored. A slow password KDF (scrypt, argon2) protects *guessable* secrets; these secrets are
256 random bits, which no dictionary covers, so a single SHA-256 is as strong as the secret and
keeps authentication at a few microseconds per request. Digests are compared with
`hmac.compare_digest` so that the comparison time says nothing about the stored digest.

Who holds a key is remembered for a few seconds (`PrincipalCache`, `TIANXUN_AUTH_CACHE_SECONDS`),
so a busy client is not looked up again on every request. Within that time a key rotated or
deactivated, or a jurisdiction reassigned, keeps its old rights in processes that already
knew it; after it, every process asks the database again.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Annotated

from cachetools import TTLCache
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from models import ApiClient, ClientJurisdiction, Jurisdiction
from models.client import Role
from service.errors import AuthenticationError, PermissionDeniedError

KEY_SCHEME = "tx"
HASH_SCHEME = "sha256"
PREFIX_BYTES = 5  # 10 hex characters, shown in lists and logs
SECRET_BYTES = 32  # 256 random bits
API_KEY_HEADER = "X-API-Key"
_MISSING_KEY = (
    "this endpoint needs an API key: send 'Authorization: Bearer tx_…' or 'X-API-Key: tx_…' "
    "(an administrator creates one with `tianxun clients create`)"
)
_UNKNOWN_KEY = (
    "the API key is not valid: it was mistyped, rotated or deactivated; ask an administrator "
    "for the current key"
)


@dataclass(frozen=True)
class NewKey:
    """A freshly generated key: `key` is shown once and never stored."""

    key: str
    prefix: str
    key_hash: str


def generate_key() -> NewKey:
    prefix = secrets.token_hex(PREFIX_BYTES)
    secret = secrets.token_urlsafe(SECRET_BYTES)
    return NewKey(f"{KEY_SCHEME}_{prefix}_{secret}", prefix, hash_secret(secret))


def hash_secret(secret: str) -> str:
    return f"{HASH_SCHEME}:{hashlib.sha256(secret.encode('utf-8')).hexdigest()}"


def split_key(key: str) -> tuple[str, str] | None:
    """(prefix, secret) of a well-formed key, else None. Secrets may contain '_'."""
    scheme, _, rest = key.partition("_")
    prefix, _, secret = rest.partition("_")
    if scheme != KEY_SCHEME or not prefix or not secret or len(prefix) > 16:
        return None
    return prefix, secret


@dataclass(frozen=True)
class Principal:
    """Who is calling: the client, its role and every jurisdiction it may see.

    `jurisdiction_ids` already includes all descendants of the client's jurisdictions.
    Administrators see every case, including those outside any jurisdiction.
    """

    client_id: int
    name: str
    role: Role
    jurisdiction_ids: frozenset[int]

    @property
    def sees_everything(self) -> bool:
        return self.role == Role.admin


def descendant_ids(root_ids: Iterable[int], *, session: Session) -> frozenset[int]:
    """The given jurisdictions and everything below them (UNION stops on a cyclic tree)."""
    roots = list(root_ids)
    if not roots:
        return frozenset()
    tree = select(Jurisdiction.id).where(Jurisdiction.id.in_(roots)).cte(recursive=True)
    tree = tree.union(select(Jurisdiction.id).where(Jurisdiction.parent_id == tree.c.id))
    return frozenset(session.scalars(select(tree.c.id)))


def principal_for(client: ApiClient, *, session: Session) -> Principal:
    roots = session.scalars(
        select(ClientJurisdiction.jurisdiction_id).where(ClientJurisdiction.client_id == client.id)
    )
    return Principal(client.id, client.name, client.role, descendant_ids(roots, session=session))


def authenticate(key: str, *, session: Session) -> Principal:
    """The principal holding `key`; AuthenticationError if it is unknown or inactive."""
    parts = split_key(key.strip())
    if parts is None:
        raise AuthenticationError(
            "the API key is malformed: keys look like tx_<prefix>_<secret>; "
            "copy the whole key printed by `tianxun clients create`"
        )
    prefix, secret = parts
    client = session.scalars(select(ApiClient).where(ApiClient.key_prefix == prefix)).first()
    if client is None or not client.active:
        raise AuthenticationError(_UNKNOWN_KEY)
    if not hmac.compare_digest(client.key_hash, hash_secret(secret)):
        raise AuthenticationError(_UNKNOWN_KEY)
    return principal_for(client, session=session)


class PrincipalCache:
    """Callers recently authenticated, by the SHA-256 of their whole key, for `ttl_seconds`.

    It spares a busy client the key lookup and the jurisdiction expansion (a transaction and
    two or three queries) on each request. Only keys that authenticated are kept, so unknown
    keys cannot fill it, and it holds at most `max_entries`. A `ttl_seconds` of 0 turns it off.
    The lock is for callers in other threads (commands, tests); requests use it on the loop.
    """

    def __init__(
        self,
        ttl_seconds: float,
        *,
        max_entries: int = 4096,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._entries: TTLCache[bytes, Principal] | None = (
            TTLCache(max_entries, ttl_seconds, timer=timer) if ttl_seconds > 0 else None
        )
        self._lock = threading.Lock()

    def get(self, key: str) -> Principal | None:
        if self._entries is None:
            return None
        with self._lock:
            return self._entries.get(_digest(key))

    def put(self, key: str, principal: Principal) -> None:
        if self._entries is None:
            return
        with self._lock:
            self._entries[_digest(key)] = principal

    def clear(self) -> None:
        if self._entries is not None:
            with self._lock:
                self._entries.clear()


def _digest(key: str) -> bytes:
    # The key itself is not kept in memory longer than the request that carried it.
    return hashlib.sha256(key.encode("utf-8")).digest()


def key_from_headers(request: Request) -> str | None:
    authorization = request.headers.get("Authorization")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationError("send the key as 'Authorization: Bearer tx_…'")
        return token.strip()
    return request.headers.get(API_KEY_HEADER) or None


# Only so that the OpenAPI document names both ways to send a key: `key_from_headers` reads
# them itself, to answer a malformed header with a message that says what is wrong.
_BEARER = HTTPBearer(scheme_name="bearer", auto_error=False, description="tx_… API key")
_API_KEY = APIKeyHeader(name=API_KEY_HEADER, scheme_name="apiKey", auto_error=False)


async def current_client(
    request: Request,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)] = None,
    _api_key: Annotated[str | None, Depends(_API_KEY)] = None,
) -> Principal:
    """FastAPI dependency: the authenticated caller, from the app's `PrincipalCache` if there.

    A cached caller is answered on the event loop; only a lookup goes to the thread pool, in
    its own short transaction, so that the endpoint's own transaction can still choose how it
    begins (a transition takes the SQLite write lock up front).
    """
    key = key_from_headers(request)
    if key is None:
        raise AuthenticationError(_MISSING_KEY)
    cache: PrincipalCache = request.app.state.principal_cache
    principal = cache.get(key)
    if principal is None:
        principal = await run_in_threadpool(
            _authenticate_in_own_session, request.app.state.session_factory, key
        )
        cache.put(key, principal)
    request.state.principal = principal
    return principal


def _authenticate_in_own_session(factory: sessionmaker[Session], key: str) -> Principal:
    with factory() as session:
        return authenticate(key, session=session)


def require_roles(*roles: Role) -> Callable[..., Awaitable[Principal]]:
    """A dependency that lets only `roles` through (403 for the others).

    Asynchronous because it only compares: a synchronous dependency costs a thread-pool hop."""
    allowed = frozenset(roles)

    async def check(principal: Annotated[Principal, Depends(current_client)]) -> Principal:
        if principal.role not in allowed:
            names = ", ".join(sorted(allowed))
            raise PermissionDeniedError(
                f"role {principal.role} may not do this; it needs one of: {names}"
            )
        return principal

    return check


CurrentClient = Annotated[Principal, Depends(current_client)]
CaseReader = Annotated[
    Principal, Depends(require_roles(Role.admin, Role.monitor, Role.inspector, Role.analyst))
]
CaseWriter = Annotated[Principal, Depends(require_roles(Role.admin, Role.monitor, Role.inspector))]
Ingester = Annotated[Principal, Depends(require_roles(Role.admin, Role.ingest))]
Admin = Annotated[Principal, Depends(require_roles(Role.admin))]
