"""The same seed gives the same files, byte for byte; another seed gives another world."""

from __future__ import annotations

from pathlib import Path

from simulator import generate_world
from tests.simulator.worlds import TINY


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_same_seed_gives_identical_files_with_any_worker_count(
    tiny_world_dir: Path, tmp_path: Path
) -> None:
    again = tmp_path / "again"
    generate_world(TINY, again, workers=2)

    first, second = _files(tiny_world_dir), _files(again)

    assert sorted(first) == sorted(second)
    assert [name for name in first if first[name] != second[name]] == []


def test_another_seed_gives_another_world(tiny_world_dir: Path, tmp_path: Path) -> None:
    from dataclasses import replace

    other = tmp_path / "other"
    generate_world(replace(TINY, seed=TINY.seed + 1), other, workers=1)

    first, second = _files(tiny_world_dir), _files(other)
    tiles = [n for n in first if n.startswith("tiles/") and not n.endswith(".cloud.tif")]
    assert tiles
    assert all(first[name] != second[name] for name in tiles)
    assert first["truth/violations.geojson"] != second["truth/violations.geojson"]
