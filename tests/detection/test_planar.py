"""GeoTIFFs kept as stored band planes give the detector exactly what float32 arrays give."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from detection.io import read_raster
from detection.io.planar import PlanarArray, StoredRaster
from detection.io.windowed import open_raster
from detection.raster_pair import detect_changes
from detection.rs_params import RasterDetectorParams
from tests.detection.rs_scenes import CRS, ROLES, ROOF, TRANSFORM, field_scene, paint
from tests.detection.test_windowed import write_geotiff


@pytest.mark.parametrize(
    "key",
    [
        (slice(None), slice(None)),
        (slice(10, 90), slice(33, 200)),
        (slice(None, None, 7), slice(3, None, 5)),
    ],
)
def test_planar_windows_equal_the_float32_read(tmp_path: Path, key: tuple[slice, slice]) -> None:
    image = field_scene(120, 210, seed=3)
    image[5:9, 40:60] = 0  # the declared nodata value
    path = write_geotiff(tmp_path / "u.tif", image, nodata=0)
    whole = read_raster(path)
    planar = open_raster(path, planar=True)
    assert isinstance(planar, StoredRaster)
    np.testing.assert_array_equal(planar.nodata, whole.nodata)
    assert planar.array.shape == whole.array.shape
    window = planar.array[key]
    assert window.dtype == np.float32 and window.flags.c_contiguous
    np.testing.assert_array_equal(window, whole.array[key])
    np.testing.assert_array_equal(planar.array.planes(key[:2]), np.moveaxis(whole.array[key], 2, 0))


def uint16_pair(seed: int, bands: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """(bands, rows, cols) uint16 dates: a gain, a roof and a dark patch; a slight shift."""
    rng = np.random.default_rng(seed)
    before = field_scene(230, 210, seed=seed)
    after = paint(before, slice(40, 80), slice(50, 95), ROOF)
    # More bands: rescaled copies of the four, each with grain of its own.
    copies = -(-bands // 4)
    scales = np.repeat(np.linspace(1.0, 0.6, copies), 4)[:bands]
    before = np.concatenate([before] * copies, axis=2)[:, :, :bands] * scales
    after = np.concatenate([after] * copies, axis=2)[:, :, :bands] * scales
    before += rng.normal(0, 5, before.shape)
    after = after * 1.07 + 15 + rng.normal(0, 5, after.shape)
    after[150:170, 20:60] = 80
    after = np.stack(
        [ndimage.shift(after[:, :, b], (0.9, -0.6), order=1, mode="nearest") for b in range(bands)]
    )
    return np.moveaxis(before, 2, 0).round().astype(np.uint16), after.round().astype(np.uint16)


@pytest.mark.parametrize(("seed", "bands", "tile"), [(1, 4, 64), (2, 4, 4096), (3, 9, 96)])
def test_planar_input_gives_the_same_result_as_float32_arrays(
    seed: int, bands: int, tile: int
) -> None:
    before, after = uint16_pair(seed, bands)
    valid = np.ones(before.shape[1:], dtype=bool)
    valid[:30, -40:] = False
    params = RasterDetectorParams(tile_px=tile, min_shift_px=0.1)
    common = {
        "params": params,
        "transform": TRANSFORM,
        "crs": CRS,
        "band_roles": ROLES if bands == 4 else None,
        "after_valid": valid,
    }
    # Band-major memory behind (rows, cols, bands) views: a transpose of them is contiguous.
    first = np.moveaxis(before, 0, -1).astype(np.float32)
    second = np.moveaxis(after, 0, -1).astype(np.float32)
    arrays = detect_changes(first, second, **common)
    planar = detect_changes(PlanarArray(before), PlanarArray(after), **common)
    # The detector never writes into its inputs.
    np.testing.assert_array_equal(first, np.moveaxis(before, 0, -1))
    np.testing.assert_array_equal(second, np.moveaxis(after, 0, -1))
    assert arrays.mask.any() and arrays.shift_px != (0.0, 0.0)
    np.testing.assert_array_equal(planar.score, arrays.score)
    np.testing.assert_array_equal(planar.mask, arrays.mask)
    assert planar.threshold == arrays.threshold
    assert [(o.area_m2, o.change_type, o.confidence) for o in planar.objects] == [
        (o.area_m2, o.change_type, o.confidence) for o in arrays.objects
    ]
