"""Large GeoTIFFs read window by window give what reading them whole gives."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from rasterio.env import get_gdal_config

from detection import rs_tiles
from detection.errors import InvalidRasterError
from detection.io import ReadLimits, read_raster, windowed
from detection.io.windowed import WindowedRaster, open_raster
from detection.rs_params import RasterDetectorParams
from detection.rs_tiles import BufferedValid
from scripts.detect import run_detect
from tests.detection.rs_scenes import CRS, ROLES, ROOF, TRANSFORM, field_scene, paint

#: Forces every GeoTIFF onto the windowed path.
TINY = ReadLimits(max_decoded_bytes=1)


def write_geotiff(path: Path, image: np.ndarray, dtype: str = "uint16", **extra: object) -> Path:
    profile = {
        "driver": "GTiff",
        "width": image.shape[1],
        "height": image.shape[0],
        "count": image.shape[2],
        "dtype": dtype,
        "crs": CRS,
        "transform": TRANSFORM,
        "tiled": True,
        "blockxsize": 64,
        "blockysize": 64,
        "compress": "deflate",
        **extra,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.moveaxis(image, -1, 0).astype(dtype))
        if image.shape[2] == len(ROLES):
            for band, role in enumerate(ROLES, start=1):
                dst.set_band_description(band, role)
    return path


@pytest.mark.parametrize(
    "key",
    [
        (slice(None), slice(None)),
        (slice(10, 90), slice(33, 200)),
        (slice(None, None, 7), slice(None, None, 7)),
        (slice(3, 190, 5), slice(2, 150, 3)),
        (slice(150, 150), slice(0, 10)),
    ],
)
def test_windows_equal_the_whole_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: tuple[slice, slice]
) -> None:
    monkeypatch.setattr(windowed, "STRIP_ROWS", 16)  # strided reads span several strips
    image = field_scene(200, 230)
    image[5:9, 40:44, 1] = 9999
    path = write_geotiff(tmp_path / "scene.tif", image, nodata=9999)
    whole = read_raster(path)
    lazy = open_raster(path, limits=TINY)
    assert isinstance(lazy, WindowedRaster)
    assert lazy.shape == whole.shape and lazy.band_roles == whole.band_roles
    assert lazy.transform == whole.transform and lazy.crs == whole.crs
    assert lazy.nodata is not None and whole.nodata.any()
    np.testing.assert_array_equal(lazy.array[key], whole.array[key])
    np.testing.assert_array_equal(lazy.nodata[key], whole.nodata[key])


def test_nan_in_float_windows_is_nodata(tmp_path: Path) -> None:
    image = field_scene(64, 64)
    image[10, 20, 2] = np.nan
    path = write_geotiff(tmp_path / "f.tif", image, dtype="float32")
    lazy = open_raster(path, limits=TINY)
    assert isinstance(lazy, WindowedRaster) and lazy.nodata is not None
    assert np.argwhere(lazy.nodata[:, :]).tolist() == [[10, 20]]
    assert lazy.array[10:11, 20:21].tolist() == [[[0.0] * 4]]


def test_a_sampling_read_holds_a_bounded_block_cache_and_gives_the_setting_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every block of a read is decoded once, so GDAL's default cache (5 % of RAM) would only
    # hold memory: a sampling read of a 20000² image kept 1.2 GB of blocks.
    lazy = open_raster(write_geotiff(tmp_path / "u.tif", field_scene(64, 64)), limits=TINY)
    assert isinstance(lazy, WindowedRaster)
    seen: list[int] = []
    read_block = windowed.WindowedArray._read_block

    def spy(self: windowed.WindowedArray, *args: Any) -> Any:
        seen.append(get_gdal_config("GDAL_CACHEMAX"))
        return read_block(self, *args)

    monkeypatch.setattr(windowed.WindowedArray, "_read_block", spy)
    default = 512 * 1024**2
    with rasterio.Env(GDAL_CACHEMAX=default):
        lazy.array[::3, ::3]
        after = get_gdal_config("GDAL_CACHEMAX")
        lazy.array[10:20, 10:20]  # a plain window, as the tiles are read on threads

    assert len(seen) >= 2
    assert all(cache == windowed.MIN_BLOCK_CACHE_BYTES for cache in seen[:-1])
    assert seen[-1] == default
    assert after == default


def test_integer_files_without_nodata_need_no_mask(tmp_path: Path) -> None:
    lazy = open_raster(write_geotiff(tmp_path / "u.tif", field_scene(64, 64)), limits=TINY)
    assert isinstance(lazy, WindowedRaster) and lazy.nodata is None


def test_small_files_are_still_read_whole(tmp_path: Path) -> None:
    assert not isinstance(
        open_raster(write_geotiff(tmp_path / "u.tif", field_scene(64, 64))), WindowedRaster
    )


def test_a_corrupt_large_file_is_reported_when_its_window_is_read(tmp_path: Path) -> None:
    path = write_geotiff(tmp_path / "scene.tif", field_scene(256, 256, seed=3))
    damaged = bytearray(path.read_bytes())
    middle = len(damaged) // 2
    damaged[middle : middle + 20_000] = bytes(20_000)  # tile data lost, header intact
    path.write_bytes(bytes(damaged))
    lazy = open_raster(path, limits=TINY)
    with pytest.raises(InvalidRasterError, match="copy the complete file again"):
        lazy.array[:, :]


def test_a_declared_size_over_the_windowed_limit_is_refused(tmp_path: Path) -> None:
    huge = tmp_path / "huge.tif"
    with rasterio.open(
        huge, "w", driver="GTiff", width=100_000, height=100_000, count=4, dtype="uint16",
        crs=CRS, transform=TRANSFORM, tiled=True, compress="deflate", sparse_ok=True,
    ):  # fmt: skip
        pass
    with pytest.raises(InvalidRasterError, match="100000 × 100000 pixels × 4 bands"):
        open_raster(huge)


def outputs(tmp_path: Path, name: str, pair: tuple[Path, Path], **options: Any) -> tuple:
    out = tmp_path / name / "result.tif"
    summary = run_detect(*pair, out, model=None, farmland=None, params=RasterDetectorParams(),
                         **options)  # fmt: skip
    with rasterio.open(out) as mask:
        pixels = mask.read(1)
    return pixels, json.loads(out.with_suffix(".geojson").read_text()), summary


@pytest.mark.parametrize("with_gaps", [False, True])
def test_detection_read_window_by_window_equals_reading_whole(
    tmp_path: Path, with_gaps: bool
) -> None:
    before = field_scene(300, 260, seed=1)
    after = paint(field_scene(300, 260, seed=2), slice(100, 130), slice(60, 100), ROOF)
    after = paint(after, slice(250, 270), slice(200, 240), ROOF)
    clouds: dict[str, Path | None] = {"before_cloud": None, "after_cloud": None}
    extra: dict[str, Any] = {}
    if with_gaps:
        before[10:40, 10:50] = 0  # nodata
        extra["nodata"] = 0
        cloud = np.zeros((300, 260, 1))
        cloud[240:280, 190:250] = 1  # hides the second roof
        clouds["after_cloud"] = write_geotiff(tmp_path / "cloud.tif", cloud, dtype="uint8")
    pair = (
        write_geotiff(tmp_path / "before.tif", before, **extra),
        write_geotiff(tmp_path / "after.tif", after, **extra),
    )
    mask, objects, summary = outputs(tmp_path, "whole", pair, **clouds)
    lazy_mask, lazy_objects, lazy_summary = outputs(tmp_path, "lazy", pair, limits=TINY, **clouds)
    assert mask[100:130, 60:100].mean() > 0.9
    assert mask[250:270, 200:240].any() != with_gaps
    np.testing.assert_array_equal(lazy_mask, mask)
    assert lazy_objects == objects
    assert {k: v for k, v in lazy_summary.items() if k not in ("mask", "objects")} == {
        k: v for k, v in summary.items() if k not in ("mask", "objects")
    }


def test_a_sample_lattice_of_a_grown_mask_is_read_strip_by_strip_exactly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mask = np.random.default_rng(4).random((400, 300)) > 0.002
    whole = BufferedValid(mask, 3)[:, :]
    monkeypatch.setattr(rs_tiles, "SAMPLE_STRIP_ROWS", 40)
    for key in ((slice(None, None, 7), slice(None, None, 5)), (slice(5, 390, 11), slice(1, 299))):
        np.testing.assert_array_equal(BufferedValid(mask, 3)[key], whole[key])
