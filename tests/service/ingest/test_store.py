"""Content-addressed storage: names from the bytes, limits while streaming, no partial files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from service.errors import (
    InvalidInputError,
    PayloadTooLargeError,
    PermissionDeniedError,
    UnsupportedMediaTypeError,
)
from service.ingest.store import (
    JPEG,
    TIFF,
    commit_object,
    object_path,
    resolve_allowed_path,
    stage_chunks,
)
from tests.service.ingest.conftest import jpeg_bytes


def chunks_of(data: bytes, size: int = 1000) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def leftovers(data_dir: Path) -> list[Path]:
    return [p for p in (data_dir / "staging").rglob("*") if p.is_file()]


def test_object_is_stored_under_its_sha256(tmp_path: Path) -> None:
    data = jpeg_bytes(1)
    staged = stage_chunks(chunks_of(data), tmp_path, kind=JPEG, max_bytes=10**6)
    stored = commit_object(staged, tmp_path)
    digest = hashlib.sha256(data).hexdigest()
    assert stored.storage_uri == f"objects/{digest[:2]}/{digest[2:4]}/{digest}"
    assert object_path(tmp_path, stored.storage_uri).read_bytes() == data
    assert leftovers(tmp_path) == []


def test_same_bytes_twice_make_one_object(tmp_path: Path) -> None:
    data = jpeg_bytes(2)
    first = commit_object(stage_chunks([data], tmp_path, kind=JPEG, max_bytes=10**6), tmp_path)
    second = commit_object(stage_chunks([data], tmp_path, kind=JPEG, max_bytes=10**6), tmp_path)
    assert first == second
    assert len([p for p in (tmp_path / "objects").rglob("*") if p.is_file()]) == 1
    assert leftovers(tmp_path) == []


def test_size_limit_stops_the_stream_before_it_ends(tmp_path: Path) -> None:
    data = jpeg_bytes(3)
    consumed: list[int] = []

    def stream() -> object:
        for index, chunk in enumerate(chunks_of(data, 100)):
            consumed.append(index)
            yield chunk

    with pytest.raises(PayloadTooLargeError, match="limit of 250 bytes"):
        stage_chunks(stream(), tmp_path, kind=JPEG, max_bytes=250)  # type: ignore[arg-type]
    assert len(consumed) == 3  # refused at the third chunk, not after reading everything
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (b"\x89PNG\r\n\x1a\n....", JPEG),
        (b"--boundary\r\nContent-Disposition: form-data", JPEG),
        (b"\xff\xd8\xff\xe0 a jpeg, not a tiff", TIFF),
        (b"<VRTDataset rasterXSize='1'>", TIFF),
    ],
)
def test_bytes_that_are_not_what_they_claim_are_refused(
    tmp_path: Path, body: bytes, kind: object
) -> None:
    with pytest.raises(UnsupportedMediaTypeError, match="does not look like"):
        stage_chunks([body], tmp_path, kind=kind, max_bytes=10**6)  # type: ignore[arg-type]
    assert leftovers(tmp_path) == []


def test_magic_split_over_chunks_is_recognised(tmp_path: Path) -> None:
    data = jpeg_bytes(4)
    staged = stage_chunks([data[:1], data[1:2], data[2:]], tmp_path, kind=JPEG, max_bytes=10**6)
    assert staged.sha256 == hashlib.sha256(data).hexdigest()


def test_empty_body_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="empty"):
        stage_chunks([], tmp_path, kind=JPEG, max_bytes=10**6)


@pytest.mark.parametrize("uri", ["../etc/passwd", "objects/ab/cd/../../../x", "objects/zz"])
def test_object_path_refuses_anything_but_an_object_key(tmp_path: Path, uri: str) -> None:
    with pytest.raises(ValueError, match="not a content-addressed"):
        object_path(tmp_path, uri)


def test_path_ingest_only_under_allow_listed_roots(tmp_path: Path) -> None:
    root = tmp_path / "incoming"
    root.mkdir()
    inside = root / "tile.tif"
    inside.write_bytes(b"II*\x00")
    outside = tmp_path / "secret.tif"
    outside.write_bytes(b"II*\x00")
    (root / "escape.tif").symlink_to(outside)
    assert resolve_allowed_path(str(inside), [root]) == inside.resolve()
    for sneaky in (str(outside), str(root / ".." / "secret.tif"), str(root / "escape.tif")):
        with pytest.raises(PermissionDeniedError, match="outside the allow-listed"):
            resolve_allowed_path(sneaky, [root])
    with pytest.raises(InvalidInputError, match="absolute"):
        resolve_allowed_path("incoming/tile.tif", [root])
    with pytest.raises(PermissionDeniedError, match="disabled"):
        resolve_allowed_path(str(inside), [])
