"""`tianxun detect` on files: outputs on the before grid, and refusals of bad files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from typer.testing import CliRunner

from scripts.cli import app
from tests.detection.rs_scenes import CRS, ROLES, ROOF, TRANSFORM, field_scene, paint

runner = CliRunner()


def write_geotiff(path: Path, image: np.ndarray, **extra: object) -> Path:
    profile = {
        "driver": "GTiff",
        "width": image.shape[1],
        "height": image.shape[0],
        "count": image.shape[2],
        "dtype": "uint16",
        "crs": CRS,
        "transform": TRANSFORM,
        "compress": "deflate",
        **extra,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.moveaxis(image, -1, 0).astype(np.uint16))
        if image.shape[2] == len(ROLES):
            for band, role in enumerate(ROLES, start=1):
                dst.set_band_description(band, role)
    return path


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    before = field_scene(128, 128)
    after = paint(before, slice(30, 45), slice(40, 60), ROOF)
    return (
        write_geotiff(tmp_path / "before.tif", before),
        write_geotiff(tmp_path / "after.tif", after),
    )


def test_detect_writes_a_georeferenced_mask_and_objects(
    pair: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out" / "result"
    outcome = runner.invoke(app, ["detect", str(pair[0]), str(pair[1]), "-o", str(out)])
    assert outcome.exit_code == 0, outcome.output
    with rasterio.open(tmp_path / "out" / "result.tif") as mask:
        assert mask.transform == TRANSFORM and mask.crs == CRS
        changed = mask.read(1) > 0
    assert changed[30:45, 40:60].mean() > 0.9 and changed.sum() < 400
    collection = json.loads((tmp_path / "out" / "result.geojson").read_text())
    [feature] = collection["features"]
    assert feature["properties"]["change_type"] in {"building", "hardening"}
    assert feature["properties"]["area_m2"] == pytest.approx(1200, rel=0.15)
    lon, lat = feature["geometry"]["coordinates"][0][0]
    assert 116.9 < lon < 117.1 and 30.1 < lat < 30.3  # RFC 7946 lon/lat, UTM 50N


def test_the_mask_written_on_two_threads_is_the_one_thread_file(
    pair: tuple[Path, Path], tmp_path: Path
) -> None:
    written = []
    for threads in ("1", "2"):
        out = tmp_path / f"threads{threads}"
        args = ["detect", str(pair[0]), str(pair[1]), "-o", str(out), "--threads", threads]
        outcome = runner.invoke(app, args)
        assert outcome.exit_code == 0, outcome.output
        written.append(out.with_suffix(".tif").read_bytes())
    assert written[0] == written[1]


def test_an_all_clear_cloud_mask_gives_the_same_result_as_none(
    pair: tuple[Path, Path], tmp_path: Path
) -> None:
    # Without nodata or clouds the detector is given no validity masks at all.
    clear = write_geotiff(tmp_path / "clear.tif", np.zeros((128, 128, 1), dtype=np.uint16))
    masks = []
    for name, extra in (("plain", []), ("clear", ["--before-cloud", str(clear)])):
        out = tmp_path / name / "result.tif"
        outcome = runner.invoke(app, ["detect", *map(str, pair), "-o", str(out), *extra])
        assert outcome.exit_code == 0, outcome.output
        with rasterio.open(out) as mask:
            masks.append(mask.read(1))
    assert masks[0].any()
    np.testing.assert_array_equal(masks[0], masks[1])


def test_detect_on_plain_png_writes_a_png_mask(tmp_path: Path) -> None:
    before = np.clip(field_scene(96, 96)[:, :, :3] / 12, 0, 255).astype(np.uint8)
    after = before.copy()
    after[20:40, 20:40] = 250
    Image.fromarray(before).save(tmp_path / "a.png")
    Image.fromarray(after).save(tmp_path / "b.png")
    outcome = runner.invoke(
        app, ["detect", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-o", str(tmp_path / "m")]
    )
    assert outcome.exit_code == 0, outcome.output
    mask = np.asarray(Image.open(tmp_path / "m.png")) > 0
    assert mask[22:38, 22:38].all() and mask.sum() < 600


def test_an_oscd_style_band_folder_is_accepted(tmp_path: Path) -> None:
    before = field_scene(96, 96)
    after = paint(before, slice(30, 45), slice(40, 60), ROOF)
    for name, image in (("A", before), ("B", after)):
        (tmp_path / name).mkdir()
        for band, code in enumerate(("B02", "B03", "B04", "B08")):
            write_geotiff(tmp_path / name / f"{code}.tif", image[:, :, band : band + 1])
    outcome = runner.invoke(
        app, ["detect", str(tmp_path / "A"), str(tmp_path / "B"), "-o", str(tmp_path / "out.tif")]
    )
    assert outcome.exit_code == 0, outcome.output
    assert json.loads(outcome.output)["objects_found"] == 1


def refused(tmp_path: Path, before: Path, after: Path) -> str:
    outcome = runner.invoke(app, ["detect", str(before), str(after), "-o", str(tmp_path / "o")])
    assert outcome.exit_code == 2
    assert not (tmp_path / "o.tif").exists()
    return outcome.output


def test_a_huge_declared_size_is_refused_before_reading(
    pair: tuple[Path, Path], tmp_path: Path
) -> None:
    huge = tmp_path / "huge.tif"
    with rasterio.open(
        huge,
        "w",
        driver="GTiff",
        width=100_000,
        height=100_000,
        count=4,
        dtype="uint16",
        crs=CRS,
        transform=TRANSFORM,
        tiled=True,
        compress="deflate",
        sparse_ok=True,
    ):
        pass
    assert huge.stat().st_size < 50_000_000
    assert "100000 × 100000 pixels × 4 bands" in refused(tmp_path, huge, pair[1])


def test_a_vrt_renamed_tif_is_refused(pair: tuple[Path, Path], tmp_path: Path) -> None:
    fake = tmp_path / "fake.tif"
    fake.write_text(
        f'<VRTDataset rasterXSize="128" rasterYSize="128"><VRTRasterBand '
        f'dataType="UInt16" band="1"><SimpleSource><SourceFilename>{pair[0]}'
        "</SourceFilename></SimpleSource></VRTRasterBand></VRTDataset>"
    )
    assert "VRT" in refused(tmp_path, fake, pair[1])


def test_a_truncated_file_is_refused(pair: tuple[Path, Path], tmp_path: Path) -> None:
    cut = tmp_path / "cut.tif"
    cut.write_bytes(pair[0].read_bytes()[: pair[0].stat().st_size // 2])
    assert "copy the complete file again" in refused(tmp_path, cut, pair[1]) or "re-export" in (
        refused(tmp_path, cut, pair[1])
    )


def test_float64_files_are_refused(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    path = tmp_path / "f64.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=64,
        height=64,
        count=4,
        dtype="float64",
        crs=CRS,
        transform=TRANSFORM,
    ) as dst:
        dst.write(np.ones((4, 64, 64)))
    assert "float64" in refused(tmp_path, path, pair[1])


def test_a_crs_missing_on_one_side_is_refused(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    bare = tmp_path / "nocrs.tif"
    write_geotiff(bare, field_scene(128, 128), crs=None)
    assert "no CRS" in refused(tmp_path, pair[0], bare)
