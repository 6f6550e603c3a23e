"""Content-addressed object storage: files named by their sha256 under `data_dir/objects`.

Bytes are streamed into a temporary file in the same file system, hashed and size-checked
as they arrive, fsynced, then renamed into place and the directory fsynced, so a half-written
object is never visible and an accepted object survives a crash. A client's file name is
never used as a path.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import AsyncIterable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import anyio.to_thread

from service.errors import (
    InvalidInputError,
    PayloadTooLargeError,
    PermissionDeniedError,
    UnsupportedMediaTypeError,
)

OBJECTS = "objects"
STAGING = "staging"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class MediaKind:
    """What an upload must be: its media type and the magic bytes it may start with."""

    media_type: str
    magics: tuple[bytes, ...]
    description: str

    def matches(self, head: bytes) -> bool:
        return any(head.startswith(magic) for magic in self.magics)


JPEG = MediaKind("image/jpeg", (b"\xff\xd8\xff",), "a JPEG image (starting with FF D8 FF)")
TIFF = MediaKind(
    "image/tiff; application=geotiff",
    (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"),
    "a (Big)TIFF / GeoTIFF file (starting with II*, MM*, II+ or MM+)",
)
_MAGIC_LENGTH = 4


@dataclass(frozen=True)
class StagedObject:
    """Bytes received completely, fsynced, not yet visible under their content name."""

    path: Path
    sha256: str
    size_bytes: int
    media_type: str


@dataclass(frozen=True)
class StoredObject:
    sha256: str
    size_bytes: int
    media_type: str
    storage_uri: str  # relative to data_dir: objects/ab/cd/<sha256>


def object_key(sha256: str) -> str:
    if not _SHA256.fullmatch(sha256):
        raise ValueError(f"{sha256!r} is not a lowercase hex sha256 digest")
    return f"{OBJECTS}/{sha256[:2]}/{sha256[2:4]}/{sha256}"


def object_path(data_dir: Path, storage_uri: str) -> Path:
    """The local file of a stored object; the URI must be one this module made."""
    parts = storage_uri.split("/")
    if len(parts) != 4 or storage_uri != object_key(parts[-1]):
        raise ValueError(f"{storage_uri!r} is not a content-addressed object key")
    return data_dir / storage_uri


class ObjectWriter:
    """Streams one upload into staging, enforcing the size limit and the magic bytes early.

    Use as a context manager; anything not finished is removed on exit.
    """

    def __init__(self, data_dir: Path, *, kind: MediaKind, max_bytes: int) -> None:
        staging = data_dir / STAGING
        staging.mkdir(parents=True, exist_ok=True)
        self.kind = kind
        self.max_bytes = max_bytes
        self._path = staging / f"{uuid.uuid4().hex}.part"
        self._file = open(self._path, "xb")  # noqa: SIM115 (closed in finish/abort)
        self._hash = hashlib.sha256()
        self._size = 0
        self._head = b""
        self._staged: StagedObject | None = None

    def write(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > self.max_bytes:
            raise PayloadTooLargeError(
                f"upload exceeds the limit of {self.max_bytes} bytes for {self.kind.description}; "
                "send a smaller file or ask an operator to raise the limit"
            )
        if len(self._head) < _MAGIC_LENGTH:
            self._head += chunk[: _MAGIC_LENGTH - len(self._head)]
            if len(self._head) >= _MAGIC_LENGTH:
                self._check_magic()
        self._hash.update(chunk)
        self._file.write(chunk)

    def _check_magic(self) -> None:
        if not self.kind.matches(self._head):
            raise UnsupportedMediaTypeError(
                f"the body does not look like {self.kind.description}: it starts with "
                f"{self._head.hex(' ')}; send the raw file bytes, not multipart or base64"
            )

    def finish(self) -> StagedObject:
        if self._size == 0:
            raise InvalidInputError(f"the body is empty: send {self.kind.description}")
        self._check_magic()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._staged = StagedObject(
            self._path, self._hash.hexdigest(), self._size, self.kind.media_type
        )
        return self._staged

    def __enter__(self) -> ObjectWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._staged is None:
            self._file.close()
            self._path.unlink(missing_ok=True)


def stage_chunks(
    chunks: Iterable[bytes], data_dir: Path, *, kind: MediaKind, max_bytes: int
) -> StagedObject:
    with ObjectWriter(data_dir, kind=kind, max_bytes=max_bytes) as writer:
        for chunk in chunks:
            writer.write(chunk)
        return writer.finish()


async def stage_async_chunks(
    chunks: AsyncIterable[bytes], data_dir: Path, *, kind: MediaKind, max_bytes: int
) -> StagedObject:
    """`stage_chunks` for a request body streamed by the server."""
    with ObjectWriter(data_dir, kind=kind, max_bytes=max_bytes) as writer:
        async for chunk in chunks:
            writer.write(chunk)
        return await anyio.to_thread.run_sync(writer.finish)


async def stage_upload(
    content_length: str | None,
    chunks: AsyncIterable[bytes],
    data_dir: Path,
    *,
    kind: MediaKind,
    max_bytes: int,
) -> StagedObject:
    """An uploaded body staged: refused at once when its declared length is over the limit,
    otherwise streamed to disk and counted as it comes."""
    check_declared_length(content_length, kind=kind, max_bytes=max_bytes)
    return await stage_async_chunks(chunks, data_dir, kind=kind, max_bytes=max_bytes)


def check_declared_length(content_length: str | None, *, kind: MediaKind, max_bytes: int) -> None:
    """Refuse up front a body whose declared length is over the limit (it is also counted)."""
    if content_length is not None and content_length.isdigit() and int(content_length) > max_bytes:
        raise PayloadTooLargeError(
            f"Content-Length {content_length} exceeds the limit of {max_bytes} bytes for "
            f"{kind.description}; send a smaller file or ask an operator to raise the limit"
        )


def read_chunks(path: Path) -> Iterable[bytes]:
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK):
            yield chunk


def stage_file(path: Path, data_dir: Path, *, kind: MediaKind, max_bytes: int) -> StagedObject:
    """Stage a local file (its bytes, not its name) as an upload."""
    if not path.is_file():
        raise InvalidInputError(f"{path} is not a regular file: give the path of one image file")
    return stage_chunks(read_chunks(path), data_dir, kind=kind, max_bytes=max_bytes)


def resolve_allowed_path(path: str, roots: Iterable[Path]) -> Path:
    """`path` resolved (symlinks too) if it lies under one of the allow-listed roots."""
    resolved_roots = [root.resolve() for root in roots]
    if not resolved_roots:
        raise PermissionDeniedError(
            "path ingest is disabled: no TIANXUN_INGEST_ROOTS are configured; upload the bytes "
            "instead or ask an operator to allow-list a directory"
        )
    if "\x00" in path or not os.path.isabs(path):
        raise InvalidInputError(f"path {path!r} must be an absolute path without NUL bytes")
    try:
        resolved = Path(path).resolve()
        inside = any(resolved.is_relative_to(root) for root in resolved_roots)
        is_file = inside and resolved.is_file()
    except OSError as error:  # e.g. a name too long or a symlink loop
        raise InvalidInputError(f"path {path!r} cannot be resolved: {error.strerror}") from error
    if not inside:
        raise PermissionDeniedError(
            f"path {path!r} is outside the allow-listed ingest roots "
            f"({', '.join(map(str, resolved_roots))}); copy the file under one of them"
        )
    if not is_file:
        raise InvalidInputError(f"path {path!r} is not an existing regular file")
    return resolved


def commit_object(staged: StagedObject, data_dir: Path) -> StoredObject:
    """Move a staged upload under its content name; a copy already there wins (same bytes)."""
    key = object_key(staged.sha256)
    target = data_dir / key
    new_folder = not target.parent.exists()
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        staged.path.unlink(missing_ok=True)
    else:
        os.replace(staged.path, target)
        _fsync_directory(target.parent)
        if new_folder:  # objects/ab/cd may be new: their own entries must reach the disk too
            _fsync_directory(target.parent.parent)
            _fsync_directory(target.parent.parent.parent)
    return StoredObject(staged.sha256, staged.size_bytes, staged.media_type, key)


def discard(staged: StagedObject) -> None:
    staged.path.unlink(missing_ok=True)


def _fsync_directory(directory: Path) -> None:
    # The rename is durable only once the directory entry itself reaches the disk.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
